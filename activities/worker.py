"""The CPU worker: `PipelineWorkflow`, `BatchWorkflow` and the control-plane activities on the CPU queue."""

import asyncio
import logging
import os
import socket
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.worker import Worker

from activities.callbacks import CallbackActivities
from activities.control import ControlActivities
from activities.jobs import request_cancel
from activities.retention import RetentionActivities
from activities.script_writer import OfflineScriptWriter, OllamaScriptWriter, ScriptWriter
from core.capabilities import publish, publish_forever
from core.services import open_services
from core.settings import Settings, get_settings
from core.shutdown import run_until_signalled
from core.telemetry import (
    StageMetricsInterceptor,
    configure_logging,
    setup_telemetry,
    start_metrics_server,
    temporal_runtime,
)
from schemas import names
from schemas.capabilities import ANY_LANGUAGE, WorkerManifest
from schemas.tasks import ExpireInput
from workflows.batch import BatchWorkflow
from workflows.pipeline import PipelineWorkflow
from workflows.retention import RetentionWorkflow
from workflows.sandbox import workflow_runner

logger = logging.getLogger(__name__)


def script_writer(settings: Settings) -> ScriptWriter:
    """Ollama when a host is configured, else the offline writer."""
    llm = settings.llm
    if llm.ollama_host:
        return OllamaScriptWriter(llm.ollama_host, llm.model, llm.timeout_seconds)
    return OfflineScriptWriter()


def manifest(settings: Settings, writer: ScriptWriter, worker_id: str) -> WorkerManifest:
    """What this CPU worker advertises: its tasks, and the languages its script writer writes."""
    llm = writer.source.startswith("ollama")
    return WorkerManifest(
        worker_id=worker_id,
        plane="cpu",
        task_queue=settings.temporal.cpu_task_queue,
        tasks=list(names.CPU_TASKS),
        # An LLM writes whatever language it is asked for; the offline writer's sentences are English.
        languages=[ANY_LANGUAGE] if llm else ["en"],
        llm_mode="ollama" if llm else "offline",
    )


def build_worker(
    client: Client, settings: Settings, control: ControlActivities, retention: RetentionActivities | None = None
) -> Worker:
    """The worker polling the CPU queue for workflow and activity tasks (the retention sweep included)."""
    retention = retention or RetentionActivities(control.sessions, control.store)
    return Worker(
        client,
        task_queue=settings.temporal.cpu_task_queue,
        workflows=[PipelineWorkflow, BatchWorkflow, RetentionWorkflow],
        activities=[
            retention.expire_uploads,
            control.generate_script,
            control.resolve_or_create_profile,
            control.load_existing_profile,
            control.select_render_plan,
            control.register_outputs,
            CallbackActivities(settings.callbacks).notify,
            request_cancel,
        ],
        workflow_runner=workflow_runner(),
        interceptors=[StageMetricsInterceptor()],
    )


def retention_schedule(settings: Settings) -> Schedule:
    """Every `sweep_every_minutes`, one `RetentionWorkflow` on the CPU queue (a sweep still running is not doubled)."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            RetentionWorkflow.run,
            ExpireInput(retention_hours=settings.retention.upload_hours),
            id="upload-retention",
            task_queue=settings.temporal.cpu_task_queue,
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(minutes=settings.retention.sweep_every_minutes))]
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_retention_schedule(
    client: Client, settings: Settings, schedule_id: str = names.RETENTION_SCHEDULE_ID
) -> None:
    """Create the retention schedule, or bring an existing one to these settings (idempotent)."""
    schedule = retention_schedule(settings)
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:

        def update(_current: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(schedule_id).update(update)


async def main() -> None:
    """Migrate, connect, advertise, and poll until stopped."""
    configure_logging()
    settings = get_settings()
    setup_telemetry(settings.telemetry)
    start_metrics_server(settings.telemetry)
    writer = script_writer(settings)
    worker_id = f"cpu-{socket.gethostname()}-{os.getpid()}"
    async with open_services(settings, runtime=temporal_runtime(settings.telemetry)) as services:
        sessions, client = services.sessions, services.temporal
        await publish(sessions, manifest(settings, writer, worker_id))
        await ensure_retention_schedule(client, settings)
        advertiser = asyncio.create_task(publish_forever(sessions, lambda: manifest(settings, writer, worker_id)))
        logger.info(
            "CPU worker %s polling %s (script writer: %s)", worker_id, settings.temporal.cpu_task_queue, writer.source
        )
        try:
            await run_until_signalled(
                build_worker(client, settings, ControlActivities(sessions, services.store, writer))
            )
        finally:
            advertiser.cancel()


def run() -> None:
    """Console entry point."""
    asyncio.run(main())


if __name__ == "__main__":
    run()
