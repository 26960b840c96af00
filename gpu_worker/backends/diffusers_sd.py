"""`scene` with diffusers Stable Diffusion from a local folder, with the profile's LoRA when it fits."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from PIL import Image

from gpu_worker.backends.base import LORA_APPLIED, LoraWeights, Progress, SceneRequest, model_size
from gpu_worker.backends.diffusers_common import load_pipeline, local_model_dir, step_callback
from gpu_worker.backends.errors import missing_weights
from gpu_worker.training.components import SD_SUBDIR, TINY_SOURCE

logger = logging.getLogger(__name__)

SD_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
_ADAPTER = "profile"


def find_sd(models_dir: Path | None) -> Path | None:
    """`<models_dir>/stable-diffusion` when it is a complete diffusers model (None when absent; error when broken)."""
    return local_model_dir(models_dir, SD_SUBDIR, SD_PARTS, "Stable Diffusion model")


def lora_mismatch(lora: LoraWeights, model_dir: Path) -> str | None:
    """Why a LoRA cannot go on this model (None when it can).

    Training records its base model's folder in `lora.json`; weights trained on another base
    (or on the built-in random tiny model) would load into the wrong layers or not at all.
    """
    if not lora.base_model:
        return "its lora.json names no base model"
    if lora.base_model == TINY_SOURCE:
        return "it was trained on the built-in tiny model"
    if Path(lora.base_model).resolve() != model_dir.resolve():
        return f"it was trained on {lora.base_model}, not on {model_dir}"
    return None


class DiffusersScene:
    """`StableDiffusionPipeline` loaded once (on first use) from `model_dir`."""

    name = "diffusers-sd"
    uses_lora = True

    def __init__(
        self,
        model_dir: Path,
        steps: int = 30,
        guidance_scale: float = 7.5,
        resolution: int = 512,
        negative_prompt: str = "",
        offload: bool = False,
    ) -> None:
        self.model_dir = model_dir
        self.steps = steps
        self.guidance_scale = guidance_scale
        self.resolution = resolution
        self.negative_prompt = negative_prompt
        self._offload = offload
        self._pipe: Any = None
        self._lock = threading.Lock()  # one generation at a time: LoRA loading changes the shared UNet

    def available(self) -> bool:
        """A local model is always available once its folder checked out."""
        return True

    def _pipeline(self) -> Any:
        if self._pipe is None:
            from diffusers import StableDiffusionPipeline

            if not self.model_dir.is_dir():
                raise missing_weights(f"Stable Diffusion model folder {self.model_dir} is gone")
            self._pipe = load_pipeline(
                StableDiffusionPipeline,
                self.model_dir,
                "Stable Diffusion model",
                self._offload,
                safety_checker=None,
                requires_safety_checker=False,
            )
        return self._pipe

    def _load_lora(self, pipe: Any, lora: LoraWeights | None) -> bool:
        """Load the profile's LoRA if it fits this model; a LoRA that does not is skipped with a warning."""
        if lora is None:
            return False
        reason = lora_mismatch(lora, self.model_dir)
        if reason is not None:
            logger.warning("not using LoRA %s: %s", lora.path, reason)
            return False
        try:
            pipe.load_lora_weights(
                str(lora.path.parent), weight_name=lora.path.name, adapter_name=_ADAPTER, local_files_only=True
            )
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            logger.warning("not using LoRA %s: it does not load into %s: %s", lora.path, self.model_dir, err)
            pipe.unload_lora_weights()
            return False
        logger.info("LoRA %s loaded", lora.path)
        return True

    def generate(self, request: SceneRequest, progress: Progress) -> Image.Image:
        """Paint the stage description (plus the LoRA's instance prompt) at the request's aspect ratio.

        Args:
            request: Description, aspect ratio, seed and optional LoRA.
            progress: Called after every denoising step.

        Returns:
            The image, short side about `resolution`, both sides multiples of 8.

        Raises:
            ApplicationError: `MissingWeights` when the model cannot be loaded.
        """
        import torch

        width, height = model_size(request.size, self.resolution, 8)
        with self._lock:
            pipe = self._pipeline()
            with_lora = self._load_lora(pipe, request.lora)
            prompt = request.description
            if with_lora and request.lora is not None and request.lora.instance_prompt:
                prompt = f"{request.lora.instance_prompt}, {prompt}"
            try:
                image: Image.Image = pipe(
                    prompt=prompt,
                    negative_prompt=self.negative_prompt or None,
                    height=height,
                    width=width,
                    num_inference_steps=self.steps,
                    guidance_scale=self.guidance_scale,
                    generator=torch.Generator("cpu").manual_seed(request.seed),
                    callback_on_step_end=step_callback(progress, self.steps),
                ).images[0]
            finally:
                if with_lora:
                    pipe.unload_lora_weights()
        logger.info("scene %dx%d from Stable Diffusion (LoRA: %s)", width, height, with_lora)
        image.info[LORA_APPLIED] = with_lora
        return image
