"""The speech benchmark at its smoke size, so it keeps running as the render path changes."""

import pytest

from bench.speech import main


def test_smoke_run_prints_every_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--smoke"]) == 0
    printed = capsys.readouterr().out
    for source in ("svd mp4", "svd mp4 + calm music", "Piper direct", "eSpeak NG"):
        assert f"| {source}" in printed, source
    assert "| svd mp4 + calm music ÷ svd mp4 " in printed  # the ratio with music against the same video without
    for heading in ("## Intelligibility", "## Voice pace", "## Duration"):
        assert heading in printed, heading
    assert "Harvard list 1" in printed
    assert "topic: how volcanoes form" in printed
