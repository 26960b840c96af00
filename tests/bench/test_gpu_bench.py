"""The GPU benchmark at its smoke size: every stage runs (toy architectures), and a CPU run says it is reduced."""

import sys

import pytest
import torch

from bench.gpu import STAGES, main


def _table(printed: str) -> list[dict[str, str]]:
    lines = [line for line in printed.splitlines() if line.startswith("| ")]
    header, *body = ([cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines)
    return [dict(zip(header, row, strict=True)) for row in body]


def test_smoke_run_times_every_stage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--smoke"]) == 0
    printed = capsys.readouterr().out
    rows = _table(printed)
    for stage in STAGES:
        timed = [row for row in rows if row["stage"].split()[0] == stage]
        assert timed, f"no row for {stage}:\n{printed}"
        for row in timed:
            assert float(row["s"]) > 0, row
    assert "lora r4" in {row["stage"] for row in rows}
    assert "Whole-render estimate" in printed and "Incomplete" not in printed
    if not torch.cuda.is_available():
        assert all(row["size"].startswith("reduced size: CPU") for row in rows), rows
        assert "reduced size: CPU" in printed.splitlines()[0]
        assert "not a full-size estimate" in printed


def test_a_missing_library_skips_its_stage(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # As on a machine without diffusers and coqui-tts: `None` in `sys.modules` makes their import fail.
    monkeypatch.setitem(sys.modules, "diffusers", None)
    monkeypatch.setitem(sys.modules, "TTS", None)
    assert main(["--smoke", "--stages", "sd,esrgan,xtts"]) == 0
    printed = capsys.readouterr().out
    rows = {row["stage"]: row for row in _table(printed)}
    assert rows["sd"]["model"] == "skipped: diffusers not installed"
    assert float(rows["esrgan"]["s"]) > 0
    assert "approximation: GPT-2 at XTTS-v2's GPT sizes" in rows["xtts"]["model"] and float(rows["xtts"]["s"]) > 0
    assert "Incomplete: without sd, svd, musetalk" in printed
