"""The status benchmark at its smoke size, so it keeps running as the API, its keys and status folding change."""

import pytest

from bench.status import main


def test_smoke_run_prints_every_pass_and_the_parts_of_a_read(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--smoke"]) == 0
    printed = capsys.readouterr().out
    assert "## `GET /api/status/{jobId}` with 3 jobs running" in printed
    for label in ("1 client, sequential", "2 concurrent clients", "open loop, 20 req/s"):
        assert f"| {label} " in printed, label
    for part in ("job row (Postgres)", "fetch_history", "describe", "fold_status", "rest (HTTP, FastAPI, JSON)"):
        assert f"| {part} " in printed, part
