"""`BatchWorkflow` replay: its golden history replays with the current code; a changed workflow does not.

`tests/histories/batch.json` is a real run of `test_capture_a_batch_and_replay_it` (three jobs,
one running at a time, the third cancelled before it started). Recapture it, after a deliberate
change guarded by `workflow.patched()`, with

    RECAPTURE_HISTORIES=1 python -m pytest tests/workflows/test_batch.py -k capture

`tests/workflows/test_replay.py` replays every file in `tests/histories/` (this one included).
"""

import os
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory

from ops import replay
from schemas import names
from schemas.tasks import BatchInput, BatchResult
from workflows.batch import BatchWorkflow

GOLDEN = Path(__file__).parent.parent / "histories" / "batch.json"


@workflow.defn(name=names.BATCH_WORKFLOW)
class AllAtOnceBatchWorkflow(BatchWorkflow):
    """A deliberately incompatible change: every job started at once, whatever `max_running` says."""

    @workflow.run
    async def run(self, batch: BatchInput) -> BatchResult:
        """Start every job without waiting for a slot."""
        for item in batch.items:
            await self._start(item)
        return BatchResult(started=self._started)


def golden() -> WorkflowHistory:
    return WorkflowHistory.from_json("batch", GOLDEN.read_text())


async def test_the_golden_batch_history_replays_and_a_changed_workflow_does_not() -> None:
    assert GOLDEN.exists(), "capture it: see this module's docstring"
    await replay._replayer([BatchWorkflow]).replay_workflow(golden())
    with pytest.raises(workflow.NondeterminismError):
        await replay._replayer([AllAtOnceBatchWorkflow]).replay_workflow(golden())


@pytest.mark.integration
async def test_capture_a_batch_and_replay_it(stack_factory, object_store, capsys) -> None:
    # Imported here: the sandbox re-imports this module to validate the workflow class above.
    from tests.api.test_batches import SHORT, eventually, status_of, submit, timed_render
    from tests.conftest import wait_for_status

    async with stack_factory(api_limits={"max_concurrent_jobs": 1}, gpu_activities=[timed_render(1.0, object_store)]) as stack:  # fmt: skip
        accepted = await submit(stack.api, {"topics": ["tides", "moss", "ferns"], "common": SHORT})
        batch_id, (first, second, third) = accepted["batchId"], accepted["jobIds"]

        async def first_running() -> bool:
            return await status_of(stack.api, first) == "running"

        await eventually(first_running)
        assert (await stack.api.post(f"/api/jobs/{third}/cancel")).status_code == 202
        result = await stack.client.get_workflow_handle(batch_id, result_type=BatchResult).result()
        assert result == BatchResult(started=[first, second], skipped=[third])
        assert (await wait_for_status(stack.api, second))["status"] == "completed"
        assert (await wait_for_status(stack.api, third))["status"] == "cancelled"

        history = await stack.client.get_workflow_handle(batch_id).fetch_history()
        if os.environ.get("RECAPTURE_HISTORIES") == "1":
            GOLDEN.write_text(history.to_json())
        assert await replay.run(["--job", batch_id]) == 0
        assert capsys.readouterr().out.startswith(f"ok {batch_id} run ")
