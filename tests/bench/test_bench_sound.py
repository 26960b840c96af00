"""The sound benchmark at its smoke size, so it keeps running as the soundtrack and the render path change."""

import pytest

from bench.sound import main


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _rows(printed: str, heading: str) -> list[dict[str, str]]:
    """The rows of the table under `heading`, as header → cell."""
    lines = printed.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    block = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        block.append(line)
    header = _cells(block[0])
    return [dict(zip(header, _cells(line), strict=True)) for line in block[2:]]


def test_smoke_run_prints_loudness_soundtrack_and_ducking_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--smoke"]) == 0
    printed = capsys.readouterr().out

    loudness = _rows(printed, "## Loudness of the delivered mp4")
    assert [(r["variant"], r["music"], r["volume"]) for r in loudness] == [
        ("svd", bed, "0.25") for bed in ("none", "calm", "upbeat", "uploaded")
    ]
    for row in loudness:
        for column in ("LUFS (pyloudnorm)", "dBTP (4×)", "LUFS (ebur128)", "dBTP (ebur128)", "soundtrack s"):
            float(row[column])  # a measurement, not n/a or nan
        assert row["result (−14 ± 1 LUFS, ≤ −1 dBTP)"].startswith(("PASS", "FAIL")), row

    step = _rows(printed, "## Soundtrack step")
    assert [r["music"] for r in step] == ["none", "calm", "upbeat", "uploaded"]

    ducking = _rows(printed, "## Ducking on the stems")
    assert [(r["narration"], r["music"], r["volume"]) for r in ducking] == [
        ("5 s", bed, volume) for bed in ("calm", "upbeat", "uploaded") for volume in ("0.25", "1.00")
    ]
    for row in ducking:
        float(row["under speech (spans)"])
        float(row["under speech (voiced 20 ms)"])
        assert row["result (≤ −10 dB)"].startswith(("PASS", "FAIL")), row
