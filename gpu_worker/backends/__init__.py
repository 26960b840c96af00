"""Model backends for the render stages, each used (and advertised) only when its weights or service are configured.

`build_backends(settings)` runs once per worker: it checks every configured path (a broken
one raises `ApplicationError(type="MissingWeights")` naming it) but loads no model; models
load on first use. See `README.md` in this folder for pointing each one at real weights.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gpu_worker.backends.base import (
    ImageToVideoBackend,
    LipSyncBackend,
    SceneBackend,
    SpeechBackend,
    TalkingHeadBackend,
    Upscaler,
)
from gpu_worker.backends.errors import missing_weights
from gpu_worker.models import catalogue as models
from gpu_worker.models.errors import ModelsError
from gpu_worker.models.presence import enabled_weights

if TYPE_CHECKING:
    from core.settings import Settings
    from gpu_worker.backends.render import LoraStore, RenderBackends

logger = logging.getLogger(__name__)


@dataclass
class Backends:
    """The worker's model backends per stage; an empty one means embedded runtimes only."""

    speech: SpeechBackend | None = None
    scenes: list[SceneBackend] = field(default_factory=list)  # in order of preference
    image_to_video: ImageToVideoBackend | None = None
    lipsync: LipSyncBackend | None = None
    talking_head: TalkingHeadBackend | None = None
    upscaler: Upscaler | None = None

    @property
    def scene(self) -> SceneBackend | None:
        """The preferred scene backend that is available now (a local model before a service)."""
        return next((backend for backend in self.scenes if backend.available()), None)

    @property
    def configured(self) -> bool:
        """Whether any backend is configured."""
        stages = (self.speech, self.image_to_video, self.lipsync, self.talking_head, self.upscaler)
        return bool(self.scenes) or any(stage is not None for stage in stages)

    def available(self) -> dict[str, list[str]]:
        """Runtime names per stage of the backends usable now (e.g. `{"scene": ["diffusers-sd"]}`)."""
        found = {
            "scene": [backend.name for backend in self.scenes if backend.available()],
            "image_to_video": [self.image_to_video.name] if self.image_to_video else [],
            "lipsync": [self.lipsync.name] if self.lipsync else [],
            "talking_head": [self.talking_head.name] if self.talking_head else [],
            "upscale": [self.upscaler.name] if self.upscaler else [],
        }
        return {stage: names for stage, names in found.items() if names}

    def runtimes(self, embedded: Mapping[str, Mapping[str, list[str]]]) -> dict[str, dict[str, list[str]]]:
        """The manifest's runtimes per variant: available backends first, then each stage's embedded runtime."""
        used_by = {
            "svd": ("scene", "image_to_video", "lipsync", "upscale"),
            "sadtalker": ("talking_head", "upscale"),
        }
        merged: dict[str, dict[str, list[str]]] = {}
        for variant, stages in embedded.items():
            merged[variant] = {stage: list(names) for stage, names in stages.items()}
            for stage, names in self.available().items():
                if stage in used_by.get(variant, ()):
                    merged[variant][stage] = names + [n for n in merged[variant].get(stage, []) if n not in names]
        return merged

    def bind(self, store: LoraStore, lora_id: str | None) -> RenderBackends:
        """These backends for one render (stages without one run on their embedded runtime)."""
        from gpu_worker.backends.render import RenderBackends

        return RenderBackends(self, store, lora_id)


def build_backends(settings: Settings) -> Backends:
    """Build the backends the settings configure (checking their paths; no model is loaded yet).

    A catalogued backend (`gpu_worker.models`) is used when `APP_GPU__BACKENDS` enables it (unset:
    when its files are in the models folder, or its own path setting points at them) and its
    files have the sizes `models.lock` records. Nothing is hashed or downloaded here.

    Args:
        settings: The worker's settings (`settings.gpu`).

    Returns:
        The backends; stages with nothing configured have none.

    Raises:
        ApplicationError: `MissingWeights` naming a configured path that is missing or incomplete, a
            backend `APP_GPU__BACKENDS` names without its files, or pulled files whose sizes changed.
    """
    from gpu_worker.backends.comfyui import ComfyUiScene
    from gpu_worker.backends.diffusers_sd import DiffusersScene, find_sd
    from gpu_worker.backends.musetalk import MuseTalk, find_musetalk
    from gpu_worker.backends.sadtalker import SadTalker
    from gpu_worker.backends.svd import DiffusersImageToVideo, find_svd
    from gpu_worker.backends.wav2lip import Wav2Lip
    from gpu_worker.backends.xtts import speech_backend, xtts_backend

    gpu = settings.gpu
    weights = _enabled_weights(settings)
    backends = Backends()
    coqui_dir = _path(weights, models.COQUI_VITS, gpu.coqui_model_dir)
    xtts_dir = _path(weights, models.XTTS, gpu.xtts_model_dir)
    if xtts_dir is not None:
        if coqui_dir is not None:
            logger.info(
                "XTTS v2 (%s) and a Coqui model (%s) are both configured: speech uses XTTS v2", xtts_dir, coqui_dir
            )
        backends.speech = xtts_backend(xtts_dir)
    elif coqui_dir is not None:
        backends.speech = speech_backend(coqui_dir, gpu.coqui_speaker)  # XTTS v2 or VITS, by its config
    sd_dir = find_sd(gpu.models_dir) if models.SD15 in weights else None
    if sd_dir is not None:
        backends.scenes.append(
            DiffusersScene(
                sd_dir, gpu.sd_steps, gpu.sd_guidance_scale, gpu.sd_resolution, gpu.sd_negative_prompt,
                gpu.model_cpu_offload,
            )
        )  # fmt: skip
    if gpu.comfyui_url:
        backends.scenes.append(
            ComfyUiScene(
                gpu.comfyui_url, gpu.comfyui_checkpoint, gpu.sd_steps, gpu.sd_guidance_scale, gpu.sd_resolution,
                gpu.sd_negative_prompt, gpu.backend_timeout_seconds,
            )
        )  # fmt: skip
    svd_dir = find_svd(gpu.models_dir) if models.SVD_XT in weights else None
    if svd_dir is not None:
        backends.image_to_video = DiffusersImageToVideo(
            svd_dir, gpu.svd_num_frames, gpu.svd_fps, gpu.svd_motion_bucket_id, gpu.svd_decode_chunk_size,
            gpu.svd_steps, gpu.svd_resolution, offload=gpu.model_cpu_offload,
        )  # fmt: skip
    wav2lip_dir = _checkout(settings, weights, models.WAV2LIP, gpu.wav2lip_dir, "APP_GPU__WAV2LIP_DIR")
    if wav2lip_dir is not None:
        backends.lipsync = Wav2Lip(
            wav2lip_dir, _path(weights, models.WAV2LIP, gpu.wav2lip_checkpoint, "wav2lip_gan.pth"),
            gpu.wav2lip_python, gpu.wav2lip_args, gpu.backend_timeout_seconds,
        )  # fmt: skip
    musetalk = find_musetalk(gpu.musetalk_dir, gpu.models_dir) if models.MUSETALK in weights else None
    if musetalk is not None:
        if backends.lipsync is not None:
            logger.info("MuseTalk and Wav2Lip are both configured: lip-sync uses MuseTalk")
        backends.lipsync = MuseTalk(musetalk, gpu.musetalk_batch_size)
    sadtalker_dir = _checkout(settings, weights, models.SADTALKER, gpu.sadtalker_dir, "APP_GPU__SADTALKER_DIR")
    if sadtalker_dir is not None:
        backends.talking_head = SadTalker(
            sadtalker_dir, _path(weights, models.SADTALKER, gpu.sadtalker_checkpoint_dir, "checkpoints"),
            gpu.sadtalker_python, gpu.sadtalker_args, gpu.backend_timeout_seconds,
        )  # fmt: skip
    esrgan_weights = _path(weights, models.ESRGAN, gpu.esrgan_weights, "RealESRGAN_x4plus.pth")
    if esrgan_weights is not None:
        from gpu_worker.backends.esrgan import RealEsrgan  # imports torch

        backends.upscaler = RealEsrgan(esrgan_weights, gpu.esrgan_tile)
    logger.info("model backends: %s", backends.available() or "none (embedded runtimes only)")
    return backends


def _enabled_weights(settings: Settings) -> dict[str, Path | None]:
    """The catalogued backends to build, each with its folder in the models directory (None: its own setting only)."""
    gpu = settings.gpu
    configured = {
        models.ESRGAN: gpu.esrgan_weights is not None,
        models.WAV2LIP: gpu.wav2lip_dir is not None,
        models.SADTALKER: gpu.sadtalker_dir is not None,
        models.COQUI_VITS: gpu.coqui_model_dir is not None,
        models.XTTS: gpu.xtts_model_dir is not None,
        models.MUSETALK: gpu.musetalk_dir is not None,
    }
    try:
        return enabled_weights(gpu.models_dir, gpu.backends, configured)
    except ModelsError as err:
        raise missing_weights(str(err)) from err


def _path(weights: dict[str, Path | None], name: str, setting: Path | None, inside: str = "") -> Path | None:
    """An enabled backend's path: its own setting when given, else its place in the models folder."""
    if name not in weights:
        return None
    folder = weights[name]
    if setting is not None or folder is None:
        return setting
    return folder / inside if inside else folder


def _checkout(
    settings: Settings, weights: dict[str, Path | None], name: str, checkout: Path | None, setting: str
) -> Path | None:
    """An enabled subprocess backend's code checkout; weights alone cannot run (None, logged, or an error if asked for)."""
    if name not in weights or checkout is not None:
        return checkout if name in weights else None
    if settings.gpu.backends is not None:
        raise missing_weights(f"{name} is enabled by APP_GPU__BACKENDS but its code checkout is not set ({setting})")
    logger.info("%s weights are in %s but %s (its code checkout) is not set: not used", name, weights[name], setting)
    return None
