"""A GPU worker killed mid-training: a new worker resumes from the last checkpoint and the job completes."""

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gpu_worker.media.speech import VoiceParams
from gpu_worker.media.voices import synthesize
from gpu_worker.training.checkpoints import step_of
from schemas.names import ARTIFACTS_BUCKET
from tests.conftest import astronaut_png, wait_for_status

pytestmark = pytest.mark.integration


def start_gpu_worker(stack, log: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "APP_TEMPORAL__CPU_TASK_QUEUE": stack.settings.temporal.cpu_task_queue,
        "APP_TEMPORAL__GPU_TASK_QUEUE": stack.settings.temporal.gpu_task_queue,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "gpu_worker.worker"], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


async def upload(api, path: Path) -> str:
    response = await api.post("/api/uploads", files=[("files", (path.name, path.read_bytes()))])
    assert response.status_code == 201, response.text
    return response.json()["data"][0]["uri"]


async def lora_node(api, job_id: str) -> dict:
    status = (await api.get(f"/api/status/{job_id}")).json()
    return next(n for n in status["nodes"] if n["id"] == "train_lora")


async def test_sigkilled_gpu_worker_resumes_training_from_its_checkpoint(stack_factory, tmp_path) -> None:
    log = tmp_path / "gpu-worker.log"
    async with stack_factory(gpu=False) as stack:
        worker = start_gpu_worker(stack, log)
        try:
            image = await upload(stack.api, astronaut_png(tmp_path / "face.png"))
            synthesize(
                "Hello there. This is my voice, speaking clearly for a few seconds.",
                tmp_path / "voice.wav",
                VoiceParams(),
            )
            clip = await upload(stack.api, tmp_path / "voice.wav")
            body = {
                "mode": "train_only",
                "profileName": "death-test",
                "consent": True,
                "images": [image],
                "audio": [clip],
                "trainingPreset": "tiny-long",
            }
            response = await stack.api.post("/api/train", json=body)
            assert response.status_code == 202, response.text
            job_id = response.json()["jobId"]

            for _ in range(1200):  # until a checkpoint exists and training moved past it
                node = await lora_node(stack.api, job_id)
                progress = node["progress"] or {}
                if progress.get("checkpoint_uri") and progress.get("step", 0) > step_of(progress["checkpoint_uri"]):
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail(f"no checkpoint was reported; worker log:\n{log.read_text()[-3000:]}")
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            prefix = f"jobs/{job_id}/train_lora/checkpoints/"
            newest = max(step_of(k) for k in stack.store.list_keys(ARTIFACTS_BUCKET, prefix))
            assert newest > 0

            worker = start_gpu_worker(stack, log)
            resumed: dict = {}
            for _ in range(2400):  # the server notices the dead worker by its heartbeat timeout
                node = await lora_node(stack.api, job_id)
                # Until attempt 2 heartbeats, the server still shows attempt 1's last details.
                if node["attempt"] == 2 and (node["progress"] or {}).get("start_step"):
                    resumed = node["progress"]
                    break
                if node["state"] == "completed":
                    break
                await asyncio.sleep(0.1)
            status = await wait_for_status(stack.api, job_id, timeout=240)
            assert status["status"] == "completed", status
            assert next(n for n in status["nodes"] if n["id"] == "train_lora")["attempt"] == 2
            total, start = resumed.get("total_steps", 0), resumed.get("start_step", 0)
            assert start == newest  # resumed from the newest checkpoint: at most one interval is redone
            profile = (await stack.api.get("/api/profiles")).json()["data"][0]
            assert profile["status"] == "ready" and profile["loraId"].endswith("pytorch_lora_weights.safetensors")
            assert stack.store.exists(profile["loraId"]) and stack.store.exists(profile["voiceId"])
            assert 0 < start < total
        finally:
            worker.kill()
            worker.wait(timeout=10)


async def test_sigtermed_gpu_worker_checkpoints_and_hands_training_over(stack_factory, tmp_path) -> None:
    """`docker stop`: the worker checkpoints where it is, exits, and the next worker resumes there."""
    log = tmp_path / "gpu-worker.log"
    async with stack_factory(gpu=False) as stack:
        worker = start_gpu_worker(stack, log)
        try:
            image = await upload(stack.api, astronaut_png(tmp_path / "face.png"))
            body = {"mode": "train_only", "profileName": "sigterm-test", "consent": True, "images": [image],
                    "trainingPreset": "tiny-long"}  # fmt: skip
            job_id = (await stack.api.post("/api/train", json=body)).json()["jobId"]
            for _ in range(1200):  # past the first periodic checkpoint, so a shutdown one is distinguishable
                progress = (await lora_node(stack.api, job_id))["progress"] or {}
                if progress.get("checkpoint_uri") and progress.get("step", 0) > step_of(progress["checkpoint_uri"]) + 5:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail(f"training never got going; worker log:\n{log.read_text()[-3000:]}")
            periodic = step_of(progress["checkpoint_uri"])
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=30) == 0, log.read_text()[-3000:]
            prefix = f"jobs/{job_id}/train_lora/checkpoints/"
            at_shutdown = max(step_of(k) for k in stack.store.list_keys(ARTIFACTS_BUCKET, prefix))
            assert at_shutdown > periodic  # written on the way out, not just the last periodic one

            worker = start_gpu_worker(stack, log)
            resumed: dict = {}
            for _ in range(2400):
                node = await lora_node(stack.api, job_id)
                if node["attempt"] == 2 and (node["progress"] or {}).get("start_step"):
                    resumed = node["progress"]
                    break
                await asyncio.sleep(0.1)
            assert resumed.get("start_step") == at_shutdown, (resumed, at_shutdown)
            # Handed over by the worker's own report, not by the server's heartbeat timeout.
            assert "the worker is shutting down" in (node["error"] or {}).get("message", ""), node
            status = await wait_for_status(stack.api, job_id, timeout=240)
            assert status["status"] == "completed", status
        finally:
            worker.kill()
            worker.wait(timeout=10)
