"""The ComfyUI scene backend against `httpx.MockTransport` emulating ComfyUI's HTTP API."""

import io
import json
import time
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from temporalio.exceptions import ApplicationError

from gpu_worker.backends.base import SceneRequest
from gpu_worker.backends.comfyui import ComfyUiScene
from gpu_worker.media.pipeline import RenderCancelled


class FakeComfy:
    """ComfyUI's `/prompt`, `/history/{id}`, `/view`, `/queue`, `/interrupt`, `/system_stats`, as the server answers."""

    def __init__(self, polls_before_done: int = 2, outcome: str = "success") -> None:
        self.polls_before_done = polls_before_done
        self.outcome = outcome
        self.graphs: list[dict[str, Any]] = []
        self.calls: list[str] = []
        self.running: str | None = None

    def _png(self, width: int, height: int) -> bytes:
        pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "PNG")
        return buf.getvalue()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls.append(f"{request.method} {path}")
        if path == "/system_stats":
            return httpx.Response(200, json={"system": {"os": "posix"}, "devices": []})
        if path == "/prompt" and request.method == "POST":
            body = json.loads(request.content)
            graph = body["prompt"]
            if graph["4"]["inputs"]["ckpt_name"] == "missing.safetensors":
                return httpx.Response(
                    400,
                    json={
                        "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation"},
                        "node_errors": {"4": {"errors": [{"message": "Value not in list", "details": "ckpt_name: 'missing.safetensors' not in []"}]}},
                    },
                )  # fmt: skip
            self.graphs.append(graph)
            self.running = "p-1"
            return httpx.Response(200, json={"prompt_id": "p-1", "number": 0, "node_errors": {}})
        if path == "/history/p-1":
            if self.polls_before_done > 0:
                self.polls_before_done -= 1
                return httpx.Response(200, json={})
            self.running = None
            latent = self.graphs[-1]["5"]["inputs"]
            if self.outcome == "error":
                status = {"status_str": "error", "completed": False, "messages": [
                    ["execution_start", {"prompt_id": "p-1"}],
                    ["execution_error", {"prompt_id": "p-1", "node_type": "KSampler", "exception_message": "CUDA out of memory\n"}],
                ]}  # fmt: skip
                return httpx.Response(200, json={"p-1": {"prompt": [], "outputs": {}, "status": status}})
            outputs = {"9": {"images": [{"filename": f"myspinbot_{latent['width']}x{latent['height']}_.png", "subfolder": "", "type": "output"}]}}  # fmt: skip
            status = {"status_str": "success", "completed": True, "messages": []}
            return httpx.Response(200, json={"p-1": {"prompt": [], "outputs": outputs, "status": status}})
        if path == "/view":
            assert request.url.params["type"] == "output" and request.url.params["subfolder"] == ""
            width, height = request.url.params["filename"].split("_")[1].split("x")
            return httpx.Response(
                200, content=self._png(int(width), int(height)), headers={"content-type": "image/png"}
            )
        if path == "/queue" and request.method == "GET":
            running = [[0, self.running, {}, {}, []]] if self.running else []
            return httpx.Response(200, json={"queue_running": running, "queue_pending": []})
        if path in ("/queue", "/interrupt") and request.method == "POST":
            return httpx.Response(200)
        return httpx.Response(404)


def backend(fake: FakeComfy, **kwargs: Any) -> ComfyUiScene:
    options: dict[str, Any] = {"resolution": 512, "steps": 20, "poll_interval": 0.01, "negative_prompt": "blurry"}
    return ComfyUiScene("http://comfy:8188/", transport=httpx.MockTransport(fake), **options | kwargs)


def test_queues_the_graph_polls_history_and_fetches_the_image() -> None:
    fake = FakeComfy()
    beats: list[float] = []
    image = backend(fake).generate(SceneRequest("a quiet library", (1280, 720), seed=7), beats.append)
    assert image.size == (912, 512) and image.mode == "RGB"
    graph = fake.graphs[0]
    assert graph["5"]["inputs"] == {"width": 912, "height": 512, "batch_size": 1}
    assert graph["6"]["inputs"]["text"] == "a quiet library" and graph["7"]["inputs"]["text"] == "blurry"
    assert graph["3"]["inputs"]["seed"] == 7 and graph["3"]["inputs"]["steps"] == 20
    assert graph["4"]["inputs"]["ckpt_name"] == "v1-5-pruned-emaonly.safetensors"
    assert graph["9"]["class_type"] == "SaveImage"
    assert fake.calls == ["POST /prompt", "GET /history/p-1", "GET /history/p-1", "GET /history/p-1", "GET /view"]
    assert len(beats) == 2


def test_a_rejected_graph_is_not_retried() -> None:
    with pytest.raises(ApplicationError) as info:
        backend(FakeComfy(), checkpoint="missing.safetensors").generate(SceneRequest("x", (64, 64), 0), lambda _f: None)
    assert info.value.type == "BackendFailed" and info.value.non_retryable
    assert "Prompt outputs failed validation" in info.value.message and "missing.safetensors" in info.value.message


def test_an_execution_error_names_the_node() -> None:
    with pytest.raises(ApplicationError) as info:
        backend(FakeComfy(outcome="error")).generate(SceneRequest("x", (64, 64), 0), lambda _f: None)
    assert info.value.type == "BackendFailed" and not info.value.non_retryable
    assert "KSampler: CUDA out of memory" in info.value.message


def test_our_timeout_stops_waiting_and_interrupts_our_prompt() -> None:
    fake = FakeComfy(polls_before_done=10_000)
    started = time.monotonic()
    with pytest.raises(ApplicationError) as info:
        backend(fake, timeout=0.2).generate(SceneRequest("x", (64, 64), 0), lambda _f: None)
    assert time.monotonic() - started < 5
    assert info.value.type == "BackendTimeout" and "did not finish prompt p-1" in info.value.message
    assert fake.calls[-3:] == ["POST /queue", "GET /queue", "POST /interrupt"]


def test_cancellation_interrupts_our_prompt() -> None:
    fake = FakeComfy(polls_before_done=10_000)

    def progress(_fraction: float) -> None:
        raise RenderCancelled("cancelled")

    with pytest.raises(RenderCancelled):
        backend(fake).generate(SceneRequest("x", (64, 64), 0), progress)
    assert fake.calls[-3:] == ["POST /queue", "GET /queue", "POST /interrupt"]


def test_another_clients_running_prompt_is_not_interrupted() -> None:
    fake = FakeComfy(polls_before_done=10_000)
    comfy = backend(fake, timeout=0.05)
    fake.running = None
    original = fake.__call__

    def someone_else_runs(request: httpx.Request) -> httpx.Response:
        fake.running = "someone-else"
        return original(request)

    comfy._transport = httpx.MockTransport(someone_else_runs)
    with pytest.raises(ApplicationError):
        comfy.generate(SceneRequest("x", (64, 64), 0), lambda _f: None)
    assert "POST /interrupt" not in fake.calls and "POST /queue" in fake.calls


def test_available_probes_the_server() -> None:
    assert backend(FakeComfy()).available()

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    assert not ComfyUiScene("http://comfy:8188", transport=httpx.MockTransport(refuse)).available()
