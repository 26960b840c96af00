"""Training: tiny-preset steps/s on this CPU, checkpoint save/restore through S3, and the time
from a SIGKILLed GPU worker to resumed training on a new one.

Run: `python -m bench.training`. It starts its own Temporal, PostgreSQL and S3 servers
(`core.stack`, temporary directory, free ports), two worker processes, and stops everything.
"""

import asyncio
import io
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from PIL import Image
from skimage import data

import gpu_worker.training.lora as lora
from core.capabilities import live_capabilities
from core.db import create_async_engine, migrate, session_factory
from core.settings import Settings
from core.stack import env_for, start_servers, stop_services
from core.storage import ObjectStore
from core.temporal import connect
from gpu_worker.media.speech import VoiceParams
from gpu_worker.media.voices import synthesize
from schemas import names
from schemas.tasks import JobRequest, PipelineInput, TrainLoraInput
from workflows.planner import plan


class Recorder:
    """Collects heartbeats with their times (the `Heartbeats` protocol the trainer takes)."""

    def __init__(self) -> None:
        self.beats: list[tuple[float, dict[str, Any]]] = []

    def update(self, stage: str, percent: float, **extra: Any) -> None:
        self.beats.append((time.perf_counter(), {"stage": stage, "percent": percent, **extra}))

    def cancelled(self) -> bool:
        return False


def timed(module: Any, name: str, sink: list[float]) -> None:
    original = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            sink.append(time.perf_counter() - started)

    setattr(module, name, wrapper)


def in_process(store: ObjectStore, work: Path) -> list[tuple[str, str]]:
    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, "JPEG")
    image = store.put_bytes(names.UPLOADS_BUCKET, f"local/bench-{uuid.uuid4().hex}.jpg", buf.getvalue(), "image/jpeg")
    saves: list[float] = []
    restores: list[float] = []
    timed(lora, "_save_checkpoint", saves)
    timed(lora, "_resume", restores)
    trainer = lora.LoraTrainer(lora.default_components_factory(None))
    rows = []
    for preset in ("tiny", "tiny-long"):
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
        rows.append(
            (
                f"`{preset}`: {lora.PRESETS[preset].steps} steps",
                f"{rate:.1f} steps/s, {wall:.2f} s wall (images, model, steps, checkpoints, export)",
            )
        )
    size = len(store.get_bytes(f"s3://artifacts/jobs/{inp.job_id}/train_lora/checkpoints/step-50.pt"))
    rows.append(
        (
            "checkpoint save (torch.save + S3 put)",
            f"median {1000 * statistics.median(saves):.0f} ms, {size / 1024:.0f} KiB",
        )
    )
    resume = TrainLoraInput(**{**inp.model_dump(), "job_id": inp.job_id})
    recorder = Recorder()
    restores.clear()
    trainer.train(
        resume,
        store,
        work,
        recorder,
        {"checkpoint_uri": f"s3://artifacts/jobs/{inp.job_id}/train_lora/checkpoints/step-200.pt"},
    )
    rows.append(("checkpoint restore (S3 get + load + apply)", f"{1000 * restores[0]:.0f} ms"))
    return rows


async def worker_death(
    settings: Settings, env: dict[str, str], store: ObjectStore, root: Path
) -> list[tuple[str, str]]:
    procs = {name: subprocess.Popen([sys.executable, "-m", module], env=os.environ | env, stdout=(root / f"{name}.log").open("wb"), stderr=subprocess.STDOUT)
             for name, module in (("cpu", "activities.worker"), ("gpu", "gpu_worker.worker"))}  # fmt: skip
    try:
        sessions = session_factory(create_async_engine(settings.database.url))
        client = await connect(settings.temporal)
        for _ in range(120):
            caps = await live_capabilities(sessions)
            if caps.cpu and caps.gpu:
                break
            await asyncio.sleep(0.5)
        buf = io.BytesIO()
        Image.fromarray(data.astronaut()).save(buf, "PNG")
        image = store.put_bytes(names.UPLOADS_BUCKET, "local/bench-face.png", buf.getvalue(), "image/png")
        synthesize("Hello there. This is my voice for the benchmark.", root / "clip.wav", VoiceParams())
        clip, _ = store.put_file(names.UPLOADS_BUCKET, "local/bench-clip.wav", root / "clip.wav", "audio/wav")
        request = JobRequest(
            mode="train_only",
            topic="bench",
            variant="svd",
            profile_name=f"bench-{uuid.uuid4().hex[:6]}",
            training_preset="tiny-long",
            images=[image],
            audio=[clip],
        )
        job_id = f"job-{uuid.uuid4().hex[:16]}"
        async with sessions.begin() as session:
            from core import repo

            await repo.insert_job(
                session,
                job_id=job_id,
                user_id="local",
                mode="train_only",
                variant="svd",
                topic="bench",
                request=request,
                graph=plan(request, caps),
            )
        job = PipelineInput(
            job_id=job_id,
            user_id="local",
            request=request,
            graph=plan(request, caps),
            cpu_task_queue=settings.temporal.cpu_task_queue,
            gpu_task_queue=settings.temporal.gpu_task_queue,
        )
        handle = await client.start_workflow(names.PIPELINE_WORKFLOW, job, id=job_id, task_queue=job.cpu_task_queue)

        async def lora_pending() -> Any:
            description = await handle.describe()
            return next(
                (p for p in description.raw_description.pending_activities if p.activity_id == "train_lora"), None
            )

        async def details(pending: Any) -> dict[str, Any]:
            if pending is None or not pending.heartbeat_details.payloads:
                return {}
            [value] = await client.data_converter.decode(pending.heartbeat_details.payloads, [dict])
            return value  # type: ignore[no-any-return]

        while (await details(await lora_pending())).get("step", 0) < 120:
            await asyncio.sleep(0.05)
        procs["gpu"].send_signal(signal.SIGKILL)
        killed = time.perf_counter()
        procs["gpu"].wait()
        procs["gpu"] = subprocess.Popen(
            [sys.executable, "-m", "gpu_worker.worker"],
            env=os.environ | env,
            stdout=(root / "gpu2.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        noticed = resumed = None
        while resumed is None:
            pending = await lora_pending()
            if pending is not None and pending.attempt == 2 and noticed is None:
                noticed = time.perf_counter() - killed
            beat = await details(pending)
            if pending is not None and pending.attempt == 2 and beat.get("start_step"):
                resumed = (time.perf_counter() - killed, beat["start_step"])
            await asyncio.sleep(0.05)
        await handle.result()
        return [
            ("worker killed at step ≥ 120 → retry scheduled", f"{noticed:.1f} s (heartbeat timeout 30 s)"),
            (
                "worker killed → training running again on the new worker",
                f"{resumed[0]:.1f} s, resumed at step {resumed[1]}",
            ),
        ]
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(timeout=30)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        root = Path(tmp)
        services = start_servers(root)
        try:
            env = env_for(services) | {"APP_GPU__WORK_DIR": str(root / "gpu-work")}
            os.environ.update(env)
            settings = Settings()
            migrate(settings.database.url)
            store = ObjectStore(settings.storage)
            store.ensure_buckets()
            rows = in_process(store, root / "work")
            rows += asyncio.run(worker_death(settings, env, store, root))
        finally:
            stop_services(services)
    print("| measurement | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
