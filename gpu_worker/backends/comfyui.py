"""`scene` from a ComfyUI server over HTTP: `POST /prompt`, poll `/history/{id}`, fetch the image from `/view`."""

from __future__ import annotations

import io
import logging
import threading
import time
import uuid
from typing import Any

import httpx
from PIL import Image

from gpu_worker.backends.base import Progress, SceneRequest, model_size
from gpu_worker.backends.errors import backend_failed, backend_timeout

logger = logging.getLogger(__name__)

_SAVE_NODE = "9"
_PROBE_TTL = 30.0  # seconds a reachability check stays valid (the manifest is re-published every 30 s)


def txt2img_workflow(
    prompt: str, negative: str, width: int, height: int, seed: int, steps: int, cfg: float, checkpoint: str
) -> dict[str, Any]:
    """ComfyUI's default text-to-image graph in API format (checkpoint → CLIP text → KSampler → VAE → SaveImage)."""
    return {
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": "euler", "scheduler": "normal",
                "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        _SAVE_NODE: {"class_type": "SaveImage", "inputs": {"filename_prefix": "myspinbot", "images": ["8", 0]}},
    }  # fmt: skip


class ComfyUiScene:
    """A ComfyUI server painting the scene with the checkpoint named `checkpoint` (in its `models/checkpoints`)."""

    name = "comfyui"
    uses_lora = False  # LoRAs live in the server's own `models/loras`; its API cannot take our file

    def __init__(
        self,
        url: str,
        checkpoint: str = "v1-5-pruned-emaonly.safetensors",
        steps: int = 30,
        guidance_scale: float = 7.5,
        resolution: int = 512,
        negative_prompt: str = "",
        timeout: float = 1800,
        poll_interval: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.checkpoint = checkpoint
        self.steps = steps
        self.guidance_scale = guidance_scale
        self.resolution = resolution
        self.negative_prompt = negative_prompt
        self.timeout = timeout
        self.poll_interval = poll_interval
        self._transport = transport
        self._client_id = uuid.uuid4().hex
        self._probed: tuple[float, bool] | None = None  # (when, reachable)
        self._probing = threading.Event()

    def _client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout, transport=self._transport)

    def available(self) -> bool:
        """Whether the server answered `GET /system_stats` lately.

        The first call probes at once; later calls return the last answer and, once it is older
        than 30 s, refresh it in the background, so the manifest publisher never waits on the network.
        """
        if self._probed is None:
            self._probe()
        elif time.monotonic() - self._probed[0] > _PROBE_TTL and not self._probing.is_set():
            self._probing.set()
            threading.Thread(target=self._probe, name="comfyui-probe", daemon=True).start()
        assert self._probed is not None
        return self._probed[1]

    def _probe(self) -> None:
        try:
            with self._client(timeout=3.0) as http:
                ok = http.get("/system_stats").is_success
        except httpx.HTTPError as err:
            logger.warning("ComfyUI at %s is not reachable: %s", self.url, err)
            ok = False
        self._probed = (time.monotonic(), ok)
        self._probing.clear()

    def generate(self, request: SceneRequest, progress: Progress) -> Image.Image:
        """Queue the text-to-image graph, wait for it, and download the image it saved.

        Args:
            request: Description, aspect ratio and seed.
            progress: Elapsed-time estimate while waiting; may raise to cancel (the prompt is then interrupted).

        Returns:
            The image, short side about `resolution`.

        Raises:
            ApplicationError: `BackendFailed` (non-retryable when the server rejects the graph, e.g. an unknown
                checkpoint) or `BackendTimeout` after our own timeout.
        """
        width, height = model_size(request.size, self.resolution, 8)
        graph = txt2img_workflow(
            request.description, self.negative_prompt, width, height, request.seed, self.steps,
            self.guidance_scale, self.checkpoint,
        )  # fmt: skip
        try:
            with self._client() as http:
                prompt_id = self._queue(http, graph)
                done = False
                try:
                    outputs = self._wait(http, prompt_id, progress)
                    done = True
                finally:
                    if not done:
                        self._interrupt(http, prompt_id)
                image = self._fetch(http, outputs)
        except httpx.HTTPError as err:
            raise backend_failed(f"ComfyUI at {self.url} failed: {err!r}") from err
        logger.info("scene %dx%d from ComfyUI prompt %s", image.width, image.height, prompt_id)
        return image

    def _queue(self, http: httpx.Client, graph: dict[str, Any]) -> str:
        response = http.post("/prompt", json={"prompt": graph, "client_id": self._client_id})
        if response.status_code == 400:  # validation: unknown checkpoint or node, bad input; the same next time
            body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
            error = body.get("error", {}) if isinstance(body, dict) else {}
            detail = error.get("message", response.text) if isinstance(error, dict) else response.text
            raise backend_failed(
                f"ComfyUI at {self.url} rejected the graph: {detail} {body.get('node_errors', '')}".strip(),
                non_retryable=True,
            )
        response.raise_for_status()
        return str(response.json()["prompt_id"])

    def _wait(self, http: httpx.Client, prompt_id: str, progress: Progress) -> dict[str, Any]:
        started = time.monotonic()
        while True:
            entry = http.get(f"/history/{prompt_id}").raise_for_status().json().get(prompt_id)
            if entry:
                status = entry.get("status", {})
                if status.get("status_str") == "error":
                    raise backend_failed(f"ComfyUI prompt {prompt_id} failed: {_execution_error(status)}")
                if status.get("completed", True):
                    return dict(entry.get("outputs", {}))
            elapsed = time.monotonic() - started
            if elapsed > self.timeout:
                raise backend_timeout(
                    f"ComfyUI at {self.url} did not finish prompt {prompt_id} in {self.timeout:.0f} s"
                )
            progress(min(0.95, elapsed / 30.0))
            time.sleep(self.poll_interval)

    def _interrupt(self, http: httpx.Client, prompt_id: str) -> None:
        """Stop our prompt on the server (cancelled or timed out): drop it from the queue, interrupt if running.

        `/interrupt` stops whatever runs, so it is sent only while the running prompt is ours.
        """
        try:
            http.post("/queue", json={"delete": [prompt_id]})
            running = http.get("/queue").raise_for_status().json().get("queue_running", [])
            if any(len(item) > 1 and item[1] == prompt_id for item in running):
                http.post("/interrupt", json={"prompt_id": prompt_id})
        except (httpx.HTTPError, ValueError) as err:
            logger.warning("could not interrupt ComfyUI prompt %s: %s", prompt_id, err)

    def _fetch(self, http: httpx.Client, outputs: dict[str, Any]) -> Image.Image:
        images = outputs.get(_SAVE_NODE, {}).get("images") or [
            image for node in outputs.values() for image in node.get("images", [])
        ]
        if not images:
            raise backend_failed(f"ComfyUI at {self.url} finished without an image", non_retryable=True)
        ref = images[0]
        params = {"filename": ref["filename"], "subfolder": ref.get("subfolder", ""), "type": ref.get("type", "output")}
        data = http.get("/view", params=params).raise_for_status().content
        with Image.open(io.BytesIO(data)) as img:
            return img.convert("RGB")


def _execution_error(status: dict[str, Any]) -> str:
    for message in status.get("messages", []):
        if isinstance(message, list) and len(message) == 2 and message[0] == "execution_error":
            data = message[1]
            return f"{data.get('node_type', '?')}: {data.get('exception_message', '').strip()}"
    return "execution error"
