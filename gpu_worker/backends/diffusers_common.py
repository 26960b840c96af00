"""What the diffusers backends share: finding a local model directory, loading it offline, step callbacks."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpu_worker.backends.base import Progress
from gpu_worker.backends.errors import missing_weights

logger = logging.getLogger(__name__)


def local_model_dir(models_dir: Path | None, subdir: str, parts: tuple[str, ...], label: str) -> Path | None:
    """The diffusers model at `<models_dir>/<subdir>`, None when there is none, an error when it is broken.

    Args:
        models_dir: `APP_GPU__MODELS_DIR`, or None.
        subdir: The model's folder inside it.
        parts: Sub-folders a complete model has (`unet`, `vae`, ...).
        label: The model's name in messages.

    Returns:
        The directory, or None when `models_dir` is unset or has no `subdir` (the backend is then not offered).

    Raises:
        ApplicationError: `MissingWeights` when the folder exists but is not a complete diffusers model.
    """
    if models_dir is None:
        return None
    model_dir = models_dir / subdir
    if not model_dir.exists():
        return None
    if not (model_dir / "model_index.json").is_file():
        raise missing_weights(f"{label} at {model_dir} has no model_index.json (expected a diffusers model folder)")
    missing = [part for part in parts if not (model_dir / part).is_dir()]
    if missing:
        raise missing_weights(f"{label} at {model_dir} lacks {', '.join(missing)}")
    return model_dir


def device_and_dtype() -> tuple[str, Any]:
    """`("cuda", float16)` on a GPU, else `("cpu", float32)`."""
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.float16
    return "cpu", torch.float32


def load_pipeline(pipeline_cls: Any, model_dir: Path, label: str, offload: bool, **kwargs: Any) -> Any:
    """Load a diffusers pipeline from a local folder only (never the Hub) onto the best device.

    Args:
        pipeline_cls: E.g. `StableDiffusionPipeline`.
        model_dir: The model folder.
        label: The model's name in messages.
        offload: Use `enable_model_cpu_offload` (GPU only) instead of moving everything to the GPU.
        **kwargs: More `from_pretrained` arguments.

    Returns:
        The pipeline, progress bars off.

    Raises:
        ApplicationError: `MissingWeights` naming `model_dir` when it cannot be loaded.
    """
    from safetensors import SafetensorError

    device, dtype = device_and_dtype()
    started = time.perf_counter()
    try:
        if device == "cuda":  # CPU keeps the default float32 (and diffusers' renamed dtype argument out of it)
            kwargs["torch_dtype"] = dtype
        if _fp16_only(model_dir):  # a download of just the `fp16` variant files (as SVD is often fetched)
            kwargs["variant"] = "fp16"
        pipe = pipeline_cls.from_pretrained(model_dir, local_files_only=True, **kwargs)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as err:
        raise missing_weights(f"cannot load the {label} at {model_dir}: {err}") from err
    if offload and device == "cuda":
        pipe.enable_model_cpu_offload()
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    logger.info("loaded %s from %s on %s in %.1f s", label, model_dir, device, time.perf_counter() - started)
    return pipe


def _fp16_only(model_dir: Path) -> bool:
    unet = list((model_dir / "unet").glob("*.safetensors")) + list((model_dir / "unet").glob("*.bin"))
    return bool(unet) and all(".fp16." in path.name for path in unet)


def step_callback(progress: Progress, steps: int) -> Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]:
    """A `callback_on_step_end` that reports each denoising step (and so lets a cancellation stop the loop)."""

    def on_step_end(_pipe: Any, step: int, _timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        progress((step + 1) / max(1, steps))
        return tensors

    return on_step_end
