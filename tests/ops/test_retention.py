"""`python -m ops.retention run-now`: its arguments, and a triggered schedule that runs the sweep."""

import asyncio
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus

from activities.worker import ensure_retention_schedule
from ops import retention
from schemas import names
from schemas.tasks import ExpireResult


def test_run_now_triggers_the_workers_schedule_by_default() -> None:
    args = retention._parser().parse_args(["run-now"])
    assert (args.command, args.schedule_id) == ("run-now", names.RETENTION_SCHEDULE_ID)
    assert retention._parser().parse_args(["run-now", "--schedule-id", "other"]).schedule_id == "other"


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        retention.main([])
    assert exited.value.code == 2 and "run-now" in capsys.readouterr().err


@pytest.mark.integration
async def test_run_now_starts_a_sweep_that_completes(stack_factory: Any, capsys: pytest.CaptureFixture[str]) -> None:
    async with stack_factory(gpu=False) as stack:
        schedule_id = f"retention-{stack.user_id}"
        assert await retention.run_now(schedule_id) == 1  # not created yet
        assert schedule_id in capsys.readouterr().err
        await ensure_retention_schedule(stack.client, stack.settings, schedule_id)
        handle = stack.client.get_schedule_handle(schedule_id)
        try:
            assert await retention.run_now(schedule_id) == 0
            assert f"triggered {schedule_id}" in capsys.readouterr().out
            for _ in range(100):
                runs = (await handle.describe()).info.recent_actions
                if runs:
                    run = stack.client.get_workflow_handle(runs[0].action.workflow_id)
                    if (await run.describe()).status == WorkflowExecutionStatus.COMPLETED:
                        break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("the triggered sweep did not complete")
            assert ExpireResult.model_validate(await run.result()).deleted == []
        finally:
            await handle.delete()
