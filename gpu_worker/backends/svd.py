"""`image_to_video` with diffusers Stable Video Diffusion from a local folder."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from gpu_worker.backends.base import Progress, model_size
from gpu_worker.backends.diffusers_common import load_pipeline, local_model_dir, step_callback
from gpu_worker.backends.errors import missing_weights

logger = logging.getLogger(__name__)

SVD_SUBDIR = "stable-video-diffusion"
SVD_PARTS = ("unet", "vae", "image_encoder", "scheduler", "feature_extractor")


def find_svd(models_dir: Path | None) -> Path | None:
    """`<models_dir>/stable-video-diffusion` when it is a complete model (None when absent; error when broken)."""
    return local_model_dir(models_dir, SVD_SUBDIR, SVD_PARTS, "Stable Video Diffusion model")


class DiffusersImageToVideo:
    """`StableVideoDiffusionPipeline` loaded once (on first use) from `model_dir`."""

    name = "diffusers-svd"

    def __init__(
        self,
        model_dir: Path,
        num_frames: int = 14,
        fps: int = 7,
        motion_bucket_id: int = 127,
        decode_chunk_size: int = 8,
        steps: int = 25,
        resolution: int = 576,
        multiple: int = 64,
        offload: bool = False,
    ) -> None:
        self.model_dir = model_dir
        self.num_frames = num_frames
        self.fps = fps
        self.motion_bucket_id = motion_bucket_id
        self.decode_chunk_size = decode_chunk_size
        self.steps = steps
        self.resolution = resolution
        self.multiple = multiple
        self._offload = offload
        self._pipe: Any = None
        self._lock = threading.Lock()

    def _pipeline(self) -> Any:
        if self._pipe is None:
            from diffusers import StableVideoDiffusionPipeline

            if not self.model_dir.is_dir():
                raise missing_weights(f"Stable Video Diffusion model folder {self.model_dir} is gone")
            self._pipe = load_pipeline(
                StableVideoDiffusionPipeline, self.model_dir, "Stable Video Diffusion model", self._offload
            )
        return self._pipe

    def generate(self, image: Image.Image, seed: int, progress: Progress) -> list[Image.Image]:
        """Animate a still into `num_frames` frames (played at `fps`) at the image's aspect ratio.

        Args:
            image: The conditioning frame (the composed scene).
            seed: Noise seed.
            progress: Called after every denoising step.

        Returns:
            The frames, short side about `resolution`.

        Raises:
            ApplicationError: `MissingWeights` when the model cannot be loaded.
        """
        import torch

        width, height = model_size(image.size, self.resolution, self.multiple)
        # Crop rather than let the pipeline stretch the still, so positions in it map onto the clip by `cover_box`.
        still = ImageOps.fit(image.convert("RGB"), (width, height), Image.Resampling.LANCZOS)
        with self._lock:
            pipe = self._pipeline()
            frames: list[Image.Image] = pipe(
                still,
                height=height,
                width=width,
                num_frames=self.num_frames,
                num_inference_steps=self.steps,
                fps=self.fps,
                motion_bucket_id=self.motion_bucket_id,
                decode_chunk_size=self.decode_chunk_size,
                generator=torch.Generator("cpu").manual_seed(seed),
                output_type="pil",
                callback_on_step_end=step_callback(progress, self.steps),
            ).frames[0]
        logger.info("clip of %d frames %dx%d from Stable Video Diffusion", len(frames), width, height)
        return frames
