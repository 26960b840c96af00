"""The lip-sync benchmark at its smoke size, so it keeps running as the mouth and the render path change."""

import re

import pytest

from bench.lipsync import LOUDNESS, VISEMES, main


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_smoke_run_prints_the_bilabial_row_for_both_mouths(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--smoke"]) == 0
    printed = capsys.readouterr().out
    assert "## Lip-sync against PocketSphinx's phone alignment" in printed
    lines = printed.splitlines()
    header = _cells(next(line for line in lines if line.startswith("| figure ")))
    assert header[2:] == ["sadtalker mp4", VISEMES, LOUDNESS]
    bilabial = dict(zip(header, _cells(next(line for line in lines if line.startswith("| bilabial "))), strict=True))
    for source in ("sadtalker mp4", VISEMES, LOUDNESS):
        found = re.fullmatch(r"\d+% of (\d+)", bilabial[source])
        assert found and int(found[1]) > 0, bilabial  # some frames were heard as P, B or M
    for row in ("| open vowels ÷ bilabials", "| rounded vs neutral", "| result "):
        assert any(line.startswith(row) for line in lines), row
    assert "| sadtalker speech WAV " in printed  # the timing table
