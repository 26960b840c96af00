"""Training: tiny-preset steps/s on this CPU, checkpoint save/restore through S3, and the time
from a SIGKILLed GPU worker to resumed training on a new one.

Run: `python -m bench.training [--smoke]`. It starts its own Temporal, PostgreSQL and S3 servers
(`devstack.servers`, temporary directory, free ports), a CPU and a GPU worker process, and stops everything.
In-process it trains the `tiny` and `tiny-long` presets and restores a checkpoint; then a
`train_only` job (`tiny-long`) runs through the workers, whose GPU worker is SIGKILLed at step 120
and replaced. `--smoke` (the CI size, a test runs it) trains `tiny` only and runs the job with the
`tiny` preset to the end without the kill: the heartbeat timeout alone would add 30 s.
"""

import argparse
import asyncio
import io
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image
from skimage import data
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowHandle

import gpu_worker.training.lora as lora
from bench._common import Stack, local_stack, log_tails, machine, median, out, quiet_logging, start_worker, table
from core import repo
from core.capabilities import live_capabilities
from core.storage import ObjectStore
from devstack.process import Service
from gpu_worker.media.speech import VoiceParams
from gpu_worker.media.voices import synthesize
from schemas import names
from schemas.capabilities import CapabilitiesManifest
from schemas.tasks import JobRequest, PipelineInput, TrainLoraInput
from workflows.planner import plan

logger = logging.getLogger("bench.training")

USER = "bench"
KILL_AT_STEP = 120  # of `tiny-long` (checkpoint every 50): the new worker resumes from step 100
Rows = list[tuple[str, str]]


class Recorder:
    """Collects heartbeats with their times (the `Heartbeats` protocol the trainer takes)."""

    def __init__(self) -> None:
        self.beats: list[tuple[float, dict[str, Any]]] = []

    def update(self, stage: str, percent: float, **extra: Any) -> None:
        self.beats.append((time.perf_counter(), {"stage": stage, "percent": percent, **extra}))

    def cancelled(self) -> bool:
        return False

    def checkpoints(self) -> list[str]:
        """The checkpoint URIs the trainer reported, in order."""
        uris = [b["checkpoint_uri"] for _, b in self.beats if b.get("checkpoint_uri")]
        return list(dict.fromkeys(uris))


@contextmanager
def timed(module: Any, name: str, sink: list[float]) -> Iterator[None]:
    """Time every call of `module.name` into `sink` inside the block; the original is put back after."""
    original = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            sink.append(time.perf_counter() - started)

    setattr(module, name, wrapper)
    try:
        yield
    finally:
        setattr(module, name, original)


def astronaut(store: ObjectStore, key: str, fmt: str) -> str:
    """A face photo uploaded to the uploads bucket; its URI."""
    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, fmt)  # type: ignore[no-untyped-call]
    return store.put_bytes(names.UPLOADS_BUCKET, key, buf.getvalue(), f"image/{fmt.lower()}")


def in_process(store: ObjectStore, work: Path, presets: list[str]) -> Rows:
    """Train each preset in this process, then resume the last one from its middle checkpoint."""
    image = astronaut(store, f"{USER}/bench-{uuid.uuid4().hex}.jpg", "JPEG")
    saves: list[float] = []
    restores: list[float] = []
    trainer = lora.LoraTrainer(lora.default_components_factory(None))
    rows = []
    with timed(lora, "_save_checkpoint", saves), timed(lora, "_resume", restores):
        for preset in presets:
            inp = TrainLoraInput(
                job_id=f"job-bench-{uuid.uuid4().hex[:8]}",
                node_id="train_lora",
                profile_id="prof-bench",
                images=[image],
                preset=preset,
            )
            recorder = Recorder()
            started = time.perf_counter()
            trainer.train(inp, store, work, recorder, None)
            wall = time.perf_counter() - started
            steps = [(t, b["step"]) for t, b in recorder.beats if b.get("step")]
            rate = (steps[-1][1] - steps[0][1]) / (steps[-1][0] - steps[0][0])
            rows.append((f"`{preset}`: {lora.PRESETS[preset].steps} steps",
                         f"{rate:.1f} steps/s, {wall:.2f} s wall (images, model, steps, checkpoints, export)"))  # fmt: skip
        checkpoints = recorder.checkpoints()
        size = len(store.get_bytes(checkpoints[0]))
        rows.append(("checkpoint save (torch.save + S3 put)", f"median {1000 * median(saves):.0f} ms, {size / 1024:.0f} KiB"))  # fmt: skip
        restores.clear()
        trainer.train(inp, store, work, Recorder(), {"checkpoint_uri": checkpoints[len(checkpoints) // 2 - 1]})
    rows.append(("checkpoint restore (S3 get + load + apply)", f"{1000 * restores[0]:.0f} ms"))
    return rows


async def workers_capabilities(
    sessions: async_sessionmaker[AsyncSession], timeout: float = 120
) -> CapabilitiesManifest:
    """The live capabilities once both a CPU and a GPU worker have published theirs."""
    deadline = time.monotonic() + timeout
    while not ((caps := await live_capabilities(sessions)).cpu and caps.gpu):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the workers did not publish their capabilities within {timeout:.0f} s")
        await asyncio.sleep(0.5)
    return caps


async def start_training_job(
    stack: Stack, sessions: async_sessionmaker[AsyncSession], client: Client, preset: str
) -> WorkflowHandle[Any, Any]:
    """Wait for both workers' manifests, then start a `train_only` job with a face and a voice clip."""
    caps = await workers_capabilities(sessions)
    image = astronaut(stack.services.store, f"{USER}/bench-face.png", "PNG")
    clip_path = stack.root / "clip.wav"
    await asyncio.to_thread(synthesize, "Hello there. This is my voice for the benchmark.", clip_path, VoiceParams())
    clip, _ = stack.services.store.put_file(names.UPLOADS_BUCKET, f"{USER}/bench-clip.wav", clip_path, "audio/wav")
    request = JobRequest(mode="train_only", topic="bench", variant="svd", profile_name=f"bench-{uuid.uuid4().hex[:6]}",
                         training_preset=preset, images=[image], audio=[clip], consent=True)  # fmt: skip
    job_id = f"job-{uuid.uuid4().hex[:16]}"
    graph = plan(request, caps)
    async with sessions.begin() as session:
        await repo.insert_job(session, job_id=job_id, user_id=USER, mode="train_only", variant="svd", topic="bench",
                              request=request, graph=graph)  # fmt: skip
    temporal = stack.settings.temporal
    job = PipelineInput(job_id=job_id, user_id=USER, request=request, graph=graph,
                        cpu_task_queue=temporal.cpu_task_queue, gpu_task_queue=temporal.gpu_task_queue)  # fmt: skip
    return await client.start_workflow(names.PIPELINE_WORKFLOW, job, id=job_id, task_queue=job.cpu_task_queue)


async def lora_attempt(client: Client, handle: WorkflowHandle[Any, Any]) -> tuple[int, dict[str, Any]]:
    """The pending `train_lora` activity's attempt and last heartbeat details; (0, {}) when none is pending."""
    description = await handle.describe()
    pending = next((p for p in description.raw_description.pending_activities if p.activity_id == "train_lora"), None)
    if pending is None:
        return 0, {}
    if not pending.heartbeat_details.payloads:
        return pending.attempt, {}
    [value] = await client.data_converter.decode(pending.heartbeat_details.payloads, [dict])
    return pending.attempt, value


async def kill_and_resume(
    stack: Stack, client: Client, handle: WorkflowHandle[Any, Any], workers: list[Service]
) -> Rows:
    """SIGKILL the GPU worker once training passed `KILL_AT_STEP`, start another, time the resume."""
    while (await lora_attempt(client, handle))[1].get("step", 0) < KILL_AT_STEP:
        await asyncio.sleep(0.05)
    gpu = workers[-1]
    os.killpg(gpu.pid or 0, signal.SIGKILL)  # the worker runs in its own session: its group is its pid
    killed = time.perf_counter()
    await asyncio.to_thread(gpu.stop)  # reaps it
    workers.append(start_worker("gpu-worker-2", "gpu_worker.worker", stack.root, stack.env))
    noticed: float | None = None
    while True:
        attempt, beat = await lora_attempt(client, handle)
        if attempt == 2 and noticed is None:
            noticed = time.perf_counter() - killed
        if attempt == 2 and beat.get("start_step"):
            resumed, start_step = time.perf_counter() - killed, beat["start_step"]
            break
        await asyncio.sleep(0.05)
    await handle.result()
    return [
        (f"worker killed at step ≥ {KILL_AT_STEP} → retry scheduled", f"{noticed:.1f} s (heartbeat timeout 30 s)"),
        ("worker killed → training running again on the new worker", f"{resumed:.1f} s, resumed at step {start_step}"),
    ]


async def through_workers(stack: Stack, preset: str, kill: bool) -> Rows:
    """A `train_only` job on worker processes; with `kill`, the GPU worker dies mid-training."""
    workers = [start_worker(f"{plane}-worker", f"{module}.worker", stack.root, stack.env)
               for plane, module in (("cpu", "activities"), ("gpu", "gpu_worker"))]  # fmt: skip
    client = stack.services.temporal
    try:
        handle = await start_training_job(stack, stack.services.sessions, client, preset)
        if kill:
            return await kill_and_resume(stack, client, handle, workers)
        started = time.perf_counter()
        await handle.result()
        return [(f"`train_only` job (`{preset}`, LoRA + voice) on the workers", f"{time.perf_counter() - started:.1f} s")]  # fmt: skip
    except BaseException:
        log_tails(logger, workers)
        raise
    finally:
        for worker in reversed(workers):
            worker.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.training", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CI size: `tiny` only, the job without the kill")
    args = parser.parse_args(argv)
    quiet_logging()
    presets = ["tiny"] if args.smoke else ["tiny", "tiny-long"]

    async def in_stack() -> Rows:
        async with local_stack("training", {"HF_HUB_OFFLINE": "1"}) as stack:
            rows = await asyncio.to_thread(in_process, stack.services.store, stack.root / "work", presets)
            return rows + await through_workers(stack, presets[-1], kill=not args.smoke)

    rows = asyncio.run(in_stack())
    out(f"## Training ({machine()})")
    out()
    out(table(["measurement", "result"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
