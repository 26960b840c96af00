"""The architectures `bench.gpu` times, at their published sizes and as toys, built with random weights.

Nothing is downloaded: each model is constructed from its config values, written out below with
the file they come from. The libraries are imported inside the builders, so a machine without
diffusers or coqui-tts can still run the stages that need neither (`ModuleNotFoundError` names
what is missing, and `bench.gpu` reports the stage as skipped).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Config = Mapping[str, Any]

# runwayml/stable-diffusion-v1-5 `unet/config.json` (diffusers' own defaults are the same values).
SD15_UNET: Config = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 768,  # CLIP ViT-L/14 text states, 77 tokens
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
# runwayml/stable-diffusion-v1-5 `vae/config.json`; MuseTalk decodes with sd-vae-ft-mse, the same architecture.
SD15_VAE: Config = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
VAE_SCALING = 0.18215  # latents ÷ this before decoding: SD 1.5's and SVD's `scaling_factor`
# stabilityai/stable-video-diffusion-img2vid-xt `unet/config.json`.
SVD_XT_UNET: Config = {
    "sample_size": 96,
    "in_channels": 8,  # noisy latents + the conditioning image's latents
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlockSpatioTemporal",) * 3 + ("DownBlockSpatioTemporal",),
    "up_block_types": ("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * 3,
    "block_out_channels": (320, 640, 1280, 1280),
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 768,  # 3 added time ids (fps, motion bucket, noise) × 256
    "layers_per_block": 2,
    "cross_attention_dim": 1024,  # one CLIP ViT-H/14 image embedding
    "transformer_layers_per_block": 1,
    "num_attention_heads": (5, 10, 20, 20),
    "num_frames": 25,
}
# stabilityai/stable-video-diffusion-img2vid-xt `vae/config.json` (`AutoencoderKLTemporalDecoder`).
SVD_XT_VAE: Config = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 768,
    "scaling_factor": 0.18215,
}
# TMElyralab/MuseTalk `models/musetalk/musetalk.json`: SD 1.5's UNet with 8 input channels (masked
# frame + reference latents) cross-attending to Whisper-tiny encoder states (384-d) instead of text.
MUSETALK_UNET: Config = {**SD15_UNET, "in_channels": 8, "cross_attention_dim": 384}
MUSETALK_AUDIO_TOKENS = 50  # Whisper feature vectors per video frame (a window around the frame)
# Real-ESRGAN `RealESRGAN_x4plus.pth`: BasicSR's RRDBNet(num_feat=64, num_block=23, num_grow_ch=32, scale=4).
ESRGAN_X4PLUS: Config = {"num_feat": 64, "num_block": 23, "num_grow_ch": 32, "scale": 4}
# coqui/XTTS-v2 `config.json` → `model_args` (the text-token ids come from its tokenizer; any id inside the
# vocabulary does here, they only index an embedding).
XTTS_V2: Config = {
    "gpt_layers": 30,
    "gpt_n_model_channels": 1024,
    "gpt_n_heads": 16,
    "gpt_number_text_tokens": 6681,
    "gpt_start_text_token": 261,
    "gpt_stop_text_token": 0,
    "gpt_num_audio_tokens": 1026,
    "gpt_start_audio_token": 1024,
    "gpt_stop_audio_token": 1025,
    "gpt_max_audio_tokens": 605,
    "gpt_max_text_tokens": 402,
    "gpt_max_prompt_tokens": 70,
    "gpt_use_perceiver_resampler": True,
    "gpt_code_stride_len": 1024,
    "input_sample_rate": 22050,
    "output_sample_rate": 24000,
    "output_hop_length": 256,
    "decoder_input_dim": 1024,
    "d_vector_dim": 512,
    "cond_d_vector_in_each_upsampling_layer": True,
}
XTTS_COND_LATENTS = 32  # the perceiver resampler's output: 32 conditioning vectors of the GPT's width
# coqui's `XttsConfig` defaults for sampling (what `Xtts.inference` uses unless told otherwise).
XTTS_SAMPLING: Config = {
    "temperature": 0.85,
    "length_penalty": 1.0,
    "repetition_penalty": 2.0,
    "top_k": 50,
    "top_p": 0.85,
}

# Toys for `--smoke`, after diffusers' test configs (as `gpu_worker.training.components.build_tiny_sd`).
_TINY_UNET: Config = {
    "sample_size": 16,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 1,
    "block_out_channels": (32, 64),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
_TINY_VAE: Config = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 1,
    "block_out_channels": (32, 64),
    "down_block_types": ("DownEncoderBlock2D",) * 2,
    "up_block_types": ("UpDecoderBlock2D",) * 2,
    "sample_size": 32,
}
_TINY_SVD_UNET: Config = {
    "sample_size": 16,
    "in_channels": 8,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
    "up_block_types": ("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
    "block_out_channels": (32, 64),
    "addition_time_embed_dim": 32,
    "projection_class_embeddings_input_dim": 96,
    "layers_per_block": 1,
    "cross_attention_dim": 32,
    "num_attention_heads": (2, 4),
    "num_frames": 2,
}
_TINY_SVD_VAE: Config = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 1,
    "block_out_channels": (32, 64),
    "down_block_types": ("DownEncoderBlock2D",) * 2,
}


@dataclass(frozen=True)
class Architectures:
    """One config per model a stage builds."""

    toy: bool  # the `--smoke` toys: the table's model names say so
    sd_unet: Config
    sd_vae: Config
    svd_unet: Config
    svd_vae: Config
    musetalk_unet: Config
    esrgan: Config
    xtts: Config


PUBLISHED = Architectures(False, SD15_UNET, SD15_VAE, SVD_XT_UNET, SVD_XT_VAE, MUSETALK_UNET, ESRGAN_X4PLUS, XTTS_V2)
TOY = Architectures(
    toy=True,
    sd_unet=_TINY_UNET,
    sd_vae=_TINY_VAE,
    svd_unet=_TINY_SVD_UNET,
    svd_vae=_TINY_SVD_VAE,
    musetalk_unet={**_TINY_UNET, "in_channels": 8},
    esrgan={"num_feat": 8, "num_block": 1, "num_grow_ch": 4, "scale": 4},
    xtts={**XTTS_V2, "gpt_layers": 1, "gpt_n_model_channels": 64, "gpt_n_heads": 2, "decoder_input_dim": 64},
)


def unet(config: Config) -> Any:
    """An SD-style `UNet2DConditionModel` (SD 1.5 or MuseTalk) with random weights.

    (The `type: ignore`s below: diffusers' constructors are untyped, `@register_to_config`.)
    """
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**config)  # type: ignore[no-untyped-call]


def vae(config: Config) -> Any:
    """SD 1.5's `AutoencoderKL` with random weights."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(**config)  # type: ignore[no-untyped-call]


def svd_unet(config: Config) -> Any:
    """SVD's `UNetSpatioTemporalConditionModel` with random weights."""
    from diffusers import UNetSpatioTemporalConditionModel

    return UNetSpatioTemporalConditionModel(**config)  # type: ignore[no-untyped-call]


def svd_vae(config: Config) -> Any:
    """SVD's `AutoencoderKLTemporalDecoder` (image encoder, temporal decoder) with random weights."""
    from diffusers import AutoencoderKLTemporalDecoder

    return AutoencoderKLTemporalDecoder(**config)  # type: ignore[no-untyped-call]


def rrdbnet(config: Config) -> Any:
    """The worker's own Real-ESRGAN generator (`gpu_worker.backends.esrgan.RRDBNet`) with random weights."""
    from gpu_worker.backends.esrgan import RRDBNet

    return RRDBNet(**config)


def xtts(config: Config) -> Any:
    """Coqui's `Xtts` (GPT + HiFi-GAN decoder) with random weights, its GPT ready for `generate`."""
    from TTS.tts.configs.xtts_config import XttsArgs, XttsConfig
    from TTS.tts.models.xtts import Xtts

    model = Xtts(XttsConfig(model_args=XttsArgs(**config)))
    model.gpt.init_gpt_for_inference(kv_cache=True)  # what `load_checkpoint` does after loading the weights
    return model


def gpt2_like_xtts(config: Config) -> Any:
    """A plain transformers GPT-2 with XTTS's GPT sizes: the stand-in when coqui-tts is not installed.

    XTTS's GPT is a `GPT2Model` with its own embeddings and heads, so the decoder's cost per audio
    token is the same; the HiFi-GAN decoder is missing from it.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    positions = config["gpt_max_prompt_tokens"] + config["gpt_max_text_tokens"] + config["gpt_max_audio_tokens"] + 1
    gpt_config = GPT2Config(
        vocab_size=config["gpt_num_audio_tokens"],
        n_positions=positions,
        n_embd=config["gpt_n_model_channels"],
        n_layer=config["gpt_layers"],
        n_head=config["gpt_n_heads"],
        bos_token_id=config["gpt_start_audio_token"],
        eos_token_id=config["gpt_stop_audio_token"],
        pad_token_id=config["gpt_stop_audio_token"],
    )
    return GPT2LMHeadModel(gpt_config)
