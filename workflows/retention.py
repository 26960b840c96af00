"""`RetentionWorkflow`: one retention sweep; a Temporal schedule starts it periodically.

Running the sweep as a scheduled workflow (rather than a cron inside some process) means one
sweep at a time across all replicas, retries, and a visible record of every run in the Web UI.
"""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from schemas import names
    from schemas.tasks import ExpireInput, ExpireResult


@workflow.defn(name=names.RETENTION_WORKFLOW)
class RetentionWorkflow:
    """Delete expired uploads."""

    @workflow.run
    async def run(self, inp: ExpireInput) -> ExpireResult:
        """Run the sweep activity on this worker's (CPU) queue."""
        result: ExpireResult = await workflow.execute_activity(
            names.EXPIRE_UPLOADS,
            inp,
            result_type=ExpireResult,
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=RetryPolicy(maximum_attempts=5, maximum_interval=timedelta(minutes=1)),
            summary="expire unused uploads",
        )
        return result
