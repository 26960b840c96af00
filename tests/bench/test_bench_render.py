"""The render benchmark at its smoke size, so it keeps running as the render path changes."""

import pytest

from bench.render import main


def test_smoke_run_prints_the_table_with_the_stage_split(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--smoke"]) == 0
    printed = capsys.readouterr().out
    assert "| speech s" in printed and "| mux s" in printed and "| frames + encode s" in printed
    assert "`music: calm`" in printed
    rows = [line for line in printed.splitlines() if line.startswith(("| svd ", "| sadtalker "))]
    assert len(rows) == 2, printed
