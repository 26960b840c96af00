"""The load benchmark at its smoke size: jobs through the real processes, none lost or duplicated."""

import argparse
import os
import re

import pytest

from bench._costs import CpuSample
from bench.load import RunSummary, main, scaling_report, worker_counts


def test_smoke_run_completes_every_job_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--smoke"]) == 0  # 1 when a job failed, was lost or was duplicated
    printed = capsys.readouterr().out
    assert "## 2 `generate` jobs at once through the HTTP API, 1 GPU worker" in printed
    assert "| jobs submitted / completed " in printed
    assert "| exactly one PipelineWorkflow run per job " in printed
    assert "| `GET /api/status` p50 / p99 / max " in printed


def test_gpu_worker_counts_parse_and_the_scaling_table_has_a_row_per_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert worker_counts("1,2,4") == [1, 2, 4] and worker_counts("3") == [3]
    with pytest.raises(argparse.ArgumentTypeError):
        worker_counts("0,2")
    runs = [
        RunSummary(n, 40, span, CpuSample(span, 120.0, 8.0, 100.0, 1.9 * span), 38.0, True)
        for n, span in ((1, 120.0), (2, 80.0), (4, 78.0))
    ]
    scaling_report(runs)
    printed = re.sub(" +", " ", capsys.readouterr().out)  # cells are padded to the column width
    cores = os.cpu_count() or 1
    assert (
        f"| 1 | 40 | 20.0 | 1.00× (1×) | 3.00 | {cores * 20:.1f} | 200 | 38.0 | 2.50 | 1.00 | 1.90 of {cores} |"
        in printed
    )
    assert "| 2 | 40 | 30.0 | 1.50× (2×) |" in printed
    assert "| 4 | 40 | 30.8 | 1.54× (4×) |" in printed
