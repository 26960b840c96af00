"""One way to build a Temporal client, so every process uses the same data converter."""

from datetime import timedelta

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime
from temporalio.service import RetryConfig

from core.settings import TemporalSettings
from core.telemetry import client_interceptors


async def connect(
    settings: TemporalSettings, runtime: Runtime | None = None, give_up_after: timedelta | None = None
) -> Client:
    """Connect with the pydantic data converter (a mismatch would only show at run time) and tracing.

    The tracing interceptor is inherited by every worker built from this client, so a job is one trace.
    `give_up_after` bounds how long one call retries an unavailable server (the API answers 503
    after it; workers keep the SDK's default and ride out restarts).
    """
    retry = None
    if give_up_after is not None:
        retry = RetryConfig(max_elapsed_time_millis=int(give_up_after.total_seconds() * 1000))
    return await Client.connect(
        settings.address,
        namespace=settings.namespace,
        data_converter=pydantic_data_converter,
        interceptors=client_interceptors(),
        runtime=runtime,
        retry_config=retry,
    )


def web_ui_url(settings: TemporalSettings, workflow_id: str, run_id: str | None = None) -> str:
    """The Temporal Web UI page of one run (or of the latest run without `run_id`)."""
    base = f"{settings.ui_url.rstrip('/')}/namespaces/{settings.namespace}/workflows/{workflow_id}"
    return f"{base}/{run_id}/history" if run_id else base
