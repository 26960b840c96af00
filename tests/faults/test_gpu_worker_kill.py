"""SIGKILL the real GPU worker mid-render: a new worker picks the render up and the job completes."""

import asyncio
import signal

import httpx
import pytest

from tests.conftest import wait_for_status
from tests.faults.conftest import artifact_rows, node, start_gpu_worker_process

pytestmark = pytest.mark.integration


async def test_render_survives_a_sigkilled_gpu_worker(stack_factory, tmp_path) -> None:
    log = tmp_path / "gpu-worker.log"
    async with stack_factory(gpu=False) as stack:
        worker = start_gpu_worker_process(stack, log)
        try:
            body = {"topic": "how tides work", "variant": "sadtalker",
                    "options": {"durationSeconds": 20, "resolution": "480p"}}  # fmt: skip
            response = await stack.api.post("/api/generate", json=body)
            assert response.status_code == 202, response.text
            job_id = response.json()["jobId"]

            # Kill only once the render runs and has heartbeated from inside the frame loop.
            for _ in range(1200):
                render = await node(stack, job_id, "render")
                if render["state"] == "running" and (render["progress"] or {}).get("stage") == "animate":
                    break
                assert render["state"] != "completed", "the render finished before the worker could be killed"
                await asyncio.sleep(0.1)
            else:
                pytest.fail(f"render never heartbeated; worker log:\n{log.read_text()[-3000:]}")
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            assert (await node(stack, job_id, "render"))["attempt"] == 1

            worker = start_gpu_worker_process(stack, log)  # warms up while the heartbeat timeout (30 s) runs out
            status = await wait_for_status(stack.api, job_id, timeout=150)
            assert status["status"] == "completed", status
            nodes = {n["id"]: n for n in status["nodes"]}
            assert nodes["render"]["attempt"] == 2, nodes["render"]
            assert all(n["state"] == "completed" for n in nodes.values()), nodes

            rows = await artifact_rows(stack.sessions, job_id)
            videos = [r for r in rows if r["kind"] == "video"]
            assert len(videos) == 1, rows
            assert not any(r["partial"] for r in rows), rows
            assert all(stack.store.exists(r["uri"]) for r in rows), rows
            record = (await stack.api.get(f"/api/jobs/{job_id}")).json()
            assert record["video"]["uri"] == videos[0]["uri"]
            async with httpx.AsyncClient() as http:
                mp4 = (await http.get(record["video"]["url"])).raise_for_status().content
            assert mp4[4:8] == b"ftyp"
        finally:
            worker.kill()
            worker.wait(timeout=10)
