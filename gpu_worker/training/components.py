"""Stable Diffusion parts for LoRA training: a tiny random model built from configs, or a real local one.

The tiny model follows diffusers' own test configs (two blocks of 32/64 channels, cross-attention
width 32, a two-layer CLIP text encoder) with weights drawn from a fixed seed, so the whole
training loop runs for real on a CPU in seconds without downloading anything. Nothing here
touches the Hugging Face Hub: the tokenizer's vocabulary is built in memory and every
`from_pretrained` call is `local_files_only`.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpu_worker.training.errors import MissingWeightsError

logger = logging.getLogger(__name__)

TINY_SOURCE = "tiny-random"  # how a job record names the built-in random base model
SD_SUBDIR = "stable-diffusion"  # where the base model lives inside the models directory
_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
_BOS, _EOS = "<|startoftext|>", "<|endoftext|>"


@dataclass
class SdComponents:
    """The parts LoRA training needs; `source` says which base model they are (path or `tiny-random`)."""

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    noise_scheduler: Any
    source: str

    @property
    def is_tiny(self) -> bool:
        """True for the random tiny model (LoRA weights then only fit that model)."""
        return self.source == TINY_SOURCE


def _tiny_tokenizer() -> Any:
    """A byte-level CLIP tokenizer with one token per byte (no merges), built without any files."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    vocab = {_BOS: 0, _EOS: 1}
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    for char in alphabet:
        vocab[char] = len(vocab)
    for char in alphabet:
        vocab[char + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def build_tiny_sd(seed: int = 0) -> SdComponents:
    """Build a tiny Stable Diffusion (random weights from `seed`) for CPU training and tests.

    The global torch RNG is left as it was.

    Args:
        seed: Seed of the random weights; the same seed gives the same model.

    Returns:
        The components, `source` = `tiny-random`.
    """
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = _tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=16,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=32,
        )
        vae = AutoencoderKL(
            block_out_channels=(32, 64),
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            latent_channels=4,
            sample_size=32,
        )
        text_config = CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=32,
            intermediate_size=37,
            projection_dim=32,
            num_attention_heads=4,
            num_hidden_layers=2,
            layer_norm_eps=1e-5,
            vocab_size=len(tokenizer),
            max_position_embeddings=tokenizer.model_max_length,
        )
        text_encoder = CLIPTextModel(text_config)
    scheduler = DDPMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        clip_sample=False,
        steps_offset=1,
    )
    return SdComponents(unet, vae, text_encoder, tokenizer, scheduler, TINY_SOURCE)


def save_tiny_sd(model_dir: Path, seed: int = 0) -> Path:
    """Write the tiny model as a diffusers `StableDiffusionPipeline` directory.

    Args:
        model_dir: Target directory (created).
        seed: Seed of the random weights.

    Returns:
        `model_dir`, loadable with `load_sd` and with `StableDiffusionPipeline.from_pretrained`.
    """
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    parts = build_tiny_sd(seed)
    pipe: Any = StableDiffusionPipeline(
        vae=parts.vae,
        text_encoder=parts.text_encoder,
        tokenizer=parts.tokenizer,
        unet=parts.unet,
        # SD ships an inference scheduler; training reads its betas into a `DDPMScheduler`.
        scheduler=DDIMScheduler.from_config(parts.noise_scheduler.config, set_alpha_to_one=False),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(model_dir)
    return model_dir


TRAINING_LIBRARIES = ("torch", "diffusers", "peft", "transformers")  # what the `gpu` extra adds for training


def training_available() -> bool:
    """Whether LoRA training can run here: the `gpu` extra is installed (`make install-gpu`)."""
    return all(importlib.util.find_spec(name) is not None for name in TRAINING_LIBRARIES)


def warm_up() -> None:
    """Import the heavy libraries now (about 6 s on a cold 2-core CPU) instead of inside the first attempt.

    A GPU worker calls this at start-up, so a retried training resumes right after the
    heartbeat timeout instead of spending the import time first. Without the `gpu` extra there is
    nothing to warm up: the worker renders with its embedded runtimes and offers no LoRA training.
    """
    if not training_available():
        logger.info("LoRA training unavailable: %s not installed (the `gpu` extra)", ", ".join(TRAINING_LIBRARIES))
        return
    import diffusers
    import peft
    import transformers

    for module in (diffusers, peft, transformers):
        logger.debug("%s %s ready", module.__name__, module.__version__)
    build_tiny_sd()


def sd_model_dir(models_dir: Path | None) -> Path | None:
    """Where the base Stable Diffusion is: `<models_dir>/stable-diffusion`, or `models_dir` itself.

    Args:
        models_dir: The configured models directory (`APP_GPU__MODELS_DIR`), or None.

    Returns:
        The first candidate holding a diffusers model (`model_index.json` or `unet/config.json`), or None.
    """
    if models_dir is None:
        return None
    for candidate in (models_dir / SD_SUBDIR, models_dir):
        if (candidate / "model_index.json").is_file() or (candidate / "unet" / "config.json").is_file():
            return candidate
    return None


def load_sd(model_dir: Path) -> SdComponents:
    """Load a Stable Diffusion from a local diffusers directory (never from the Hub).

    Args:
        model_dir: A diffusers model directory, or a models directory with a `stable-diffusion` subfolder.

    Returns:
        The components, `source` = the resolved directory.

    Raises:
        MissingWeightsError: The directory is missing, incomplete or unreadable (the message names it).
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from safetensors import SafetensorError
    from transformers import CLIPTextModel, CLIPTokenizer

    resolved = sd_model_dir(model_dir)
    if resolved is None:
        raise MissingWeightsError(f"no Stable Diffusion model (diffusers layout) at {model_dir}")
    missing = [part for part in _PARTS if not (resolved / part).is_dir()]
    if missing:
        raise MissingWeightsError(f"Stable Diffusion model at {resolved} lacks {', '.join(missing)}")
    try:
        unet = UNet2DConditionModel.from_pretrained(resolved, subfolder="unet", local_files_only=True)
        vae = AutoencoderKL.from_pretrained(resolved, subfolder="vae", local_files_only=True)
        text_encoder = CLIPTextModel.from_pretrained(resolved, subfolder="text_encoder", local_files_only=True)
        tokenizer = CLIPTokenizer.from_pretrained(resolved, subfolder="tokenizer", local_files_only=True)
        scheduler = DDPMScheduler.from_pretrained(resolved, subfolder="scheduler", local_files_only=True)
    except (OSError, ValueError, KeyError, SafetensorError) as err:
        raise MissingWeightsError(f"cannot load the Stable Diffusion model at {resolved}: {err}") from err
    logger.info("loaded Stable Diffusion from %s", resolved)
    return SdComponents(unet, vae, text_encoder, tokenizer, scheduler, str(resolved))
