"""The load benchmark at its smoke size: jobs through the real processes, none lost or duplicated."""

import pytest

from bench.load import main


def test_smoke_run_completes_every_job_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--smoke"]) == 0  # 1 when a job failed, was lost or was duplicated
    printed = capsys.readouterr().out
    assert "## 2 `generate` jobs at once through the HTTP API, 1 GPU worker" in printed
    assert "| jobs submitted / completed " in printed
    assert "| exactly one PipelineWorkflow run per job " in printed
    assert "| `GET /api/status` p50 / p99 / max " in printed
