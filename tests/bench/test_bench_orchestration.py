"""The orchestration benchmark at its smoke size, so the hand-written baseline keeps up with the pipeline."""

import pytest

from bench.orchestration import main


def test_smoke_run_prints_all_three_variants(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--smoke"]) == 0
    printed = capsys.readouterr().out
    assert "## Orchestration overhead: train_and_generate_v1" in printed
    for variant in ("(a) PipelineWorkflow", "(b) hand-written", "(c) LangGraph in-process"):
        assert sum(line.startswith(f"| {variant}") for line in printed.splitlines()) == 2, variant
    assert "| throughput, 4 at once " in printed
