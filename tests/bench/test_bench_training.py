"""The training benchmark at its smoke size: the trainer in-process and a training job on the workers."""

import pytest

from bench.training import main


def test_smoke_run_prints_every_measurement(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--smoke"]) == 0
    printed = capsys.readouterr().out
    for row in (
        "`tiny`: 40 steps",
        "checkpoint save (torch.save + S3 put)",
        "checkpoint restore (S3 get + load + apply)",
        "`train_only` job (`tiny`, LoRA + voice) on the workers",
    ):
        assert f"| {row} " in printed, row
