"""`jobs.requestCancel`: a job asks the server to cancel itself (a rejected or timed-out script review).

A workflow cannot cancel its own execution (the server answers "not found"), and only a cancel
the server delivers ends a run `cancelled` rather than failed; so the workflow runs this on
the CPU queue with the worker's client.
"""

from temporalio import activity

from schemas import names


@activity.defn(name=names.REQUEST_CANCEL)
async def request_cancel(job_id: str) -> None:
    """Ask the server to cancel the job's workflow; a repeat (after a retry) changes nothing."""
    await activity.client().get_workflow_handle(job_id).cancel()
