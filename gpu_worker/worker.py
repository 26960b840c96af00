"""The GPU worker: training and rendering activities on the GPU queue, one at a time per GPU."""

import asyncio
import logging
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from core.capabilities import publish, publish_forever
from core.services import open_services
from core.settings import Settings, get_settings
from core.shutdown import run_until_signalled
from core.storage import ObjectStore
from core.telemetry import (
    StageMetricsInterceptor,
    configure_logging,
    setup_telemetry,
    start_metrics_server,
    temporal_runtime,
)
from gpu_worker.backends import Backends, build_backends
from gpu_worker.backends.render import EMBEDDED_RUNTIMES
from gpu_worker.backends.xtts import voice_cloner
from gpu_worker.media.voices import Narrator
from gpu_worker.rendering import RenderActivities
from gpu_worker.training.components import training_available, warm_up
from gpu_worker.training.lora import default_components_factory
from gpu_worker.training.tasks import TrainingActivities, presets_available
from schemas import names
from schemas.capabilities import WorkerManifest

logger = logging.getLogger(__name__)


def manifest(
    settings: Settings, worker_id: str, backends: Backends | None = None, narrator: Narrator | None = None
) -> WorkerManifest:
    """What this GPU worker advertises: tasks, variants, runtimes per variant and stage (preferred first), voices, limits."""
    backends = backends or Backends()
    narrator = narrator or Narrator(coqui=backends.speech)
    runtimes = backends.runtimes(EMBEDDED_RUNTIMES)
    for stages in runtimes.values():
        stages["speech"] = narrator.runtime_ids()
    return WorkerManifest(
        worker_id=worker_id,
        plane="gpu",
        task_queue=settings.temporal.gpu_task_queue,
        # LoRA training needs the `gpu` extra; voices and rendering need only `media`.
        tasks=[t for t in names.GPU_TASKS if t != names.TRAIN_LORA or training_available()],
        variants=list(runtimes),
        runtimes=runtimes,
        voices=narrator.voices(),
        training_presets=presets_available(settings.gpu.models_dir),
        resolutions=settings.gpu.resolutions,
        max_duration_seconds=settings.gpu.max_duration_seconds,
    )


def build_worker(
    client: Client,
    settings: Settings,
    store: ObjectStore,
    executor: ThreadPoolExecutor,
    backends: Backends | None = None,
    narrator: Narrator | None = None,
) -> Worker:
    """The worker polling the GPU queue; sync activities run in `executor` (backends: built from settings if None)."""
    work_dir = settings.gpu.work_dir.resolve()
    backends = backends if backends is not None else build_backends(settings)
    render = RenderActivities(store, work_dir, backends, narrator or Narrator(coqui=backends.speech))
    training = TrainingActivities(
        store, work_dir, default_components_factory(settings.gpu.models_dir), voice_cloner=voice_cloner(backends.speech)
    )
    return Worker(
        client,
        task_queue=settings.temporal.gpu_task_queue,
        activities=[training.train_lora, training.train_voice, render.render_video],
        activity_executor=executor,
        max_concurrent_activities=settings.gpu.max_concurrent_activities,
        # The SDK otherwise forwards heartbeats only every 0.8 × heartbeat timeout (24 s here):
        # progress in the status API and cancellation would lag by that much.
        max_heartbeat_throttle_interval=timedelta(seconds=settings.gpu.heartbeat_throttle_seconds),
        default_heartbeat_throttle_interval=timedelta(seconds=settings.gpu.heartbeat_throttle_seconds),
        interceptors=[StageMetricsInterceptor()],
        # On SIGTERM running activities get this long, then are cancelled (training checkpoints).
        graceful_shutdown_timeout=timedelta(seconds=settings.gpu.shutdown_grace_seconds),
    )


async def main() -> None:
    """Connect, advertise, and poll until stopped."""
    configure_logging()
    settings = get_settings()
    setup_telemetry(settings.telemetry)
    start_metrics_server(settings.telemetry)
    worker_id = f"gpu-{socket.gethostname()}-{os.getpid()}"
    # Either worker may start first: both migrate, and the migration is locked.
    async with open_services(settings, runtime=temporal_runtime(settings.telemetry)) as services:
        backends = build_backends(settings)  # a configured but broken model path stops the worker here, naming it
        # Import torch/diffusers before polling (about 6 s cold), so the first activity (often a
        # retry after a dead worker) does not pay for it. Not concurrently with polling: two
        # threads importing diffusers at once can see a half-initialised module.
        await asyncio.to_thread(warm_up)
        narrator = Narrator(coqui=backends.speech)  # one for the manifest's voices and every render
        await asyncio.to_thread(narrator.load)  # the Piper voices, so the first render does not wait for them
        await publish(services.sessions, manifest(settings, worker_id, backends, narrator))
        advertiser = asyncio.create_task(
            publish_forever(services.sessions, lambda: manifest(settings, worker_id, backends, narrator))
        )
        logger.info("GPU worker %s polling %s", worker_id, settings.temporal.gpu_task_queue)
        with ThreadPoolExecutor(max_workers=settings.gpu.max_concurrent_activities + 1) as executor:
            try:
                worker = build_worker(services.temporal, settings, services.store, executor, backends, narrator)
                await run_until_signalled(worker)
            finally:
                advertiser.cancel()


def run() -> None:
    """Console entry point."""
    asyncio.run(main())


if __name__ == "__main__":
    run()
