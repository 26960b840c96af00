"""What `bench.gpu` runs: its three sizes, the device context, and one timed workload per stage.

Each stage builds its models (`bench._gpu_models`), runs one untimed warm-up call where the first
call is slow (CUDA, `torch.compile`), times its workload and returns `Measurement`s, including how
many seconds of compute one second of finished video costs (what the whole-render estimate adds up).
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import torch

from bench import _gpu_models as models

VIDEO_FPS = 25  # the default output frame rate (`schemas.tasks`)
VIDEO_SECONDS = 60  # the reference video of the estimate: the renderer paints one SD scene per video
SVD_FPS = 7  # the worker plays SVD clips at 7 fps (`svd_fps`): 25 frames cover 25/7 s of video
GUIDANCE = 7.5  # classifier-free guidance: the UNet sees a negative and a positive copy every step
XTTS_CODES_PER_SECOND = 22050 / 1024  # one GPT audio code per `gpt_code_stride_len` samples at 22.05 kHz
TEXT_TOKENS_PER_SECOND = 6  # ~15 characters spoken per second, ~2.5 characters per BPE token
LORA_TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]  # as `gpu_worker.training.lora.TARGET_MODULES`
T = TypeVar("T")


@dataclass(frozen=True)
class Size:
    """How much work each stage does, and on which architectures."""

    name: str
    arch: models.Architectures
    sd_side: int  # pixels (square)
    sd_steps: int
    svd_frames: int
    svd_height_width: tuple[int, int]
    svd_steps: int
    svd_decode_chunk: int  # frames per VAE decode call (the worker's `svd_decode_chunk_size`)
    musetalk_latent: int  # latent side: 32 → a 256² face
    musetalk_batch: int  # frames per UNet call
    musetalk_batches: int
    esrgan_height_width: tuple[int, int]  # input frame
    esrgan_frames: int
    lora_side: int  # training resolution (square)
    lora_steps: int
    lora_ranks: tuple[int, ...]
    speech_seconds: float


FULL = Size(
    name="full",
    arch=models.PUBLISHED,
    sd_side=512,
    sd_steps=30,  # the worker's `sd_steps`
    svd_frames=25,
    svd_height_width=(576, 1024),
    svd_steps=25,  # the worker's `svd_steps`
    svd_decode_chunk=8,
    musetalk_latent=32,
    musetalk_batch=8,
    musetalk_batches=4,
    esrgan_height_width=(180, 320),
    esrgan_frames=8,
    lora_side=512,  # the `standard` preset
    lora_steps=5,
    lora_ranks=(4, 16),
    speech_seconds=10.0,
)
# The full architectures with less work each: all stages in about 90 s on two idle CPU cores.
REDUCED = replace(
    FULL,
    name="reduced",
    sd_side=256,
    sd_steps=2,
    svd_frames=4,
    svd_height_width=(128, 256),
    svd_steps=1,
    svd_decode_chunk=4,
    musetalk_batch=2,
    musetalk_batches=1,
    esrgan_height_width=(45, 80),
    esrgan_frames=2,
    lora_side=128,
    lora_steps=1,
    speech_seconds=1.0,
)
SMOKE = replace(
    REDUCED,
    name="smoke",
    arch=models.TOY,
    sd_side=64,
    svd_frames=2,
    svd_height_width=(64, 64),
    svd_decode_chunk=2,
    musetalk_latent=8,
    esrgan_height_width=(16, 16),
    esrgan_frames=1,
    lora_side=64,
    lora_ranks=(4,),
    speech_seconds=0.3,
)
SIZES = {size.name: size for size in (FULL, REDUCED, SMOKE)}


@dataclass(frozen=True)
class Measurement:
    """One timed workload of a stage."""

    stage: str
    model: str
    dtype: str
    steps: str
    frames: str
    resolution: str
    seconds: float
    per_unit: str  # e.g. "0.41 s/frame"
    video_share: float | None  # seconds of compute per second of finished video; None: not per video
    peak_gib: float | None = None  # the stage's peak CUDA memory


@dataclass(frozen=True)
class NotRun:
    """A stage that did not run, and why."""

    stage: str
    reason: str


@dataclass
class Bench:
    """Where and how the stages run."""

    device: torch.device
    dtype: torch.dtype  # of the inference stages
    size: Size
    compile: bool

    @property
    def warmup(self) -> bool:
        """One untimed call first where the first one is slow: CUDA (kernels, allocator) or `torch.compile`."""
        return self.device.type == "cuda" or self.compile

    def build(self, factory: Callable[[models.Config], Any], config: models.Config, compile: bool = True) -> Any:
        """A model from `factory`, initialised on the device (faster than on the CPU), then `place`d."""
        with self.device:
            module = factory(config)
        return self.place(module, compile=compile)

    def place(self, module: Any, dtype: torch.dtype | None = None, compile: bool = True) -> Any:
        """`module` on the device in `dtype` (default: the bench's), frozen, in eval mode.

        With `--compile` (and `compile`), `torch.compile` wraps it: that compiles `forward` only, so
        the VAEs, called through `decode`, are never compiled.
        """
        module.to(device=self.device, dtype=dtype or self.dtype)
        module.eval()  # not chained: coqui's `eval()` returns None
        module.requires_grad_(False)
        return torch.compile(module) if self.compile and compile else module

    def randn(self, *shape: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Random input on the device."""
        return torch.randn(*shape, device=self.device, dtype=dtype or self.dtype)

    def timesteps(self, steps: int) -> list[torch.Tensor]:
        """Descending denoising timesteps as device tensors (Python ints would recompile a compiled UNet)."""
        return list(torch.linspace(999, 0, steps, device=self.device))

    def model(self, name: str) -> str:
        """The model column: `name`, marked when the toy architectures stand in for the published ones."""
        return f"toy {name}" if self.size.arch.toy else name

    def warm(self, work: Callable[[], object]) -> None:
        """Run `work` once untimed when the first call would be slow (see `warmup`)."""
        if self.warmup:
            work()
            self.sync()

    def timed(self, work: Callable[[], T]) -> tuple[float, T]:
        """Seconds `work` took, waiting for the device to finish, and its result."""
        self.sync()
        started = time.perf_counter()
        result = work()
        self.sync()
        return time.perf_counter() - started, result

    def sync(self) -> None:
        """Wait for queued device work (CUDA runs asynchronously)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _repeat(work: Callable[[], object], times: int) -> None:
    for _ in range(times):
        work()


def _millions(count: int) -> str:
    return f"{count / 1e6:,.0f} M" if count >= 10e6 else f"{count / 1e6:.2g} M"


def _params(*modules: Any) -> str:
    """Parameter count, so the table shows which size was built."""
    return _millions(sum(p.numel() for m in modules for p in m.parameters())) + " params"


def dtype_name(dtype: torch.dtype) -> str:
    """`fp16`, `bf16` or `fp32`, as the table writes dtypes."""
    return {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}[dtype]


def _guided(latents: torch.Tensor, both: torch.Tensor) -> torch.Tensor:
    """A step along the guided noise prediction (random weights: only its cost matters, not the update rule)."""
    uncond, cond = both.chunk(2)
    return latents - 0.01 * (uncond + GUIDANCE * (cond - uncond))


def stage_sd(bench: Bench) -> list[Measurement]:
    """One SD 1.5 scene: the guided denoising loop, then the VAE decode."""
    size, arch = bench.size, bench.size.arch
    unet, vae = bench.build(models.unet, arch.sd_unet), bench.build(models.vae, arch.sd_vae, compile=False)
    side = size.sd_side // 8
    text = bench.randn(2, 77, arch.sd_unet["cross_attention_dim"])  # negative + positive prompt states

    def scene(steps: int) -> torch.Tensor:
        latents = bench.randn(1, 4, side, side)
        for t in bench.timesteps(steps):
            latents = _guided(latents, unet(torch.cat([latents] * 2), t, text).sample)
        decoded: torch.Tensor = vae.decode(latents / models.VAE_SCALING).sample
        return decoded

    bench.warm(lambda: scene(1))
    seconds, _ = bench.timed(lambda: scene(size.sd_steps))
    measured = Measurement(
        stage="sd",
        model=bench.model(f"SD 1.5 UNet + VAE ({_params(unet, vae)})"),
        dtype=dtype_name(bench.dtype),
        steps=str(size.sd_steps),
        frames="1",
        resolution=f"{size.sd_side}²",
        seconds=seconds,
        per_unit=f"{seconds:.2f} s/scene",
        video_share=seconds / VIDEO_SECONDS,
    )
    return [measured]


def stage_svd(bench: Bench) -> list[Measurement]:
    """One SVD-XT clip: the guided spatio-temporal denoising loop, then the temporal VAE decode in chunks."""
    size, arch = bench.size, bench.size.arch
    unet, vae = bench.build(models.svd_unet, arch.svd_unet), bench.build(models.svd_vae, arch.svd_vae, compile=False)
    height, width = size.svd_height_width
    latent_shape = (size.svd_frames, 4, height // 8, width // 8)
    image_latents = bench.randn(2, *latent_shape)  # the still's latents beside every frame (zeros for the negative)
    image_embeds = bench.randn(2, 1, arch.svd_unet["cross_attention_dim"])
    # fps − 1, motion bucket, noise augmentation: the pipeline's added time ids
    time_ids = torch.tensor([[SVD_FPS - 1, 127, 0.02]] * 2, device=bench.device, dtype=bench.dtype)

    def clip(steps: int) -> list[torch.Tensor]:
        latents = bench.randn(1, *latent_shape)
        for t in bench.timesteps(steps):
            both = torch.cat([torch.cat([latents] * 2), image_latents], dim=2)
            latents = _guided(latents, unet(both, t, image_embeds, time_ids).sample)
        frames = latents.flatten(0, 1) / models.VAE_SCALING
        return [vae.decode(chunk, num_frames=len(chunk)).sample for chunk in torch.split(frames, size.svd_decode_chunk)]

    bench.warm(lambda: clip(1))
    seconds, _ = bench.timed(lambda: clip(size.svd_steps))
    clip_seconds = size.svd_frames / SVD_FPS
    measured = Measurement(
        stage="svd",
        model=bench.model(f"SVD-XT UNet + temporal VAE ({_params(unet, vae)})"),
        dtype=dtype_name(bench.dtype),
        steps=str(size.svd_steps),
        frames=str(size.svd_frames),
        resolution=f"{width}×{height}",
        seconds=seconds,
        per_unit=f"{seconds:.2f} s/clip ({clip_seconds:.1f} s at {SVD_FPS} fps)",
        video_share=seconds / clip_seconds,
    )
    return [measured]


def stage_musetalk(bench: Bench) -> list[Measurement]:
    """MuseTalk-class lip-sync: one UNet step per frame over masked + reference latents, then the VAE decode."""
    size, arch = bench.size, bench.size.arch
    unet, vae = bench.build(models.unet, arch.musetalk_unet), bench.build(models.vae, arch.sd_vae, compile=False)
    side, batch = size.musetalk_latent, size.musetalk_batch
    latents = bench.randn(batch, arch.musetalk_unet["in_channels"], side, side)
    audio = bench.randn(batch, models.MUSETALK_AUDIO_TOKENS, arch.musetalk_unet["cross_attention_dim"])
    t0 = torch.zeros((), device=bench.device)  # a single step at timestep 0, as MuseTalk runs it

    def frames() -> torch.Tensor:
        pred = unet(latents, t0, audio).sample
        decoded: torch.Tensor = vae.decode(pred / models.VAE_SCALING).sample
        return decoded

    bench.warm(frames)
    seconds, _ = bench.timed(lambda: _repeat(frames, size.musetalk_batches))
    count = batch * size.musetalk_batches
    per_frame = seconds / count
    measured = Measurement(
        stage="musetalk",
        model=bench.model(f"MuseTalk-class UNet + VAE ({_params(unet, vae)})"),
        dtype=dtype_name(bench.dtype),
        steps="1",
        frames=f"{count} ({batch} per batch)",
        resolution=f"{side * 8}² face",
        seconds=seconds,
        per_unit=f"{per_frame:.3f} s/frame ({1 / per_frame:.1f} fps)",
        video_share=per_frame * VIDEO_FPS,
    )
    return [measured]


def stage_esrgan(bench: Bench) -> list[Measurement]:
    """Real-ESRGAN ×4 on whole frames, one at a time (the worker's tiles are larger than a 320×180 frame)."""
    size = bench.size
    net = bench.build(models.rrdbnet, size.arch.esrgan)
    height, width = size.esrgan_height_width
    frames = bench.randn(size.esrgan_frames, 3, height, width)
    bench.warm(lambda: net(frames[:1]))
    seconds, _ = bench.timed(lambda: [net(frame) for frame in torch.split(frames, 1)])
    per_frame = seconds / size.esrgan_frames
    scale = size.arch.esrgan["scale"]
    measured = Measurement(
        stage="esrgan",
        model=bench.model(f"Real-ESRGAN RRDBNet ×{scale} ({_params(net)})"),
        dtype=dtype_name(bench.dtype),
        steps="—",
        frames=str(size.esrgan_frames),
        resolution=f"{width}×{height} → {width * scale}×{height * scale}",
        seconds=seconds,
        per_unit=f"{per_frame:.3f} s/frame",
        video_share=per_frame * VIDEO_FPS,
    )
    return [measured]


def stage_lora(bench: Bench) -> list[Measurement]:
    """LoRA training steps on the SD 1.5 UNet at each rank, as the worker trains (`gpu_worker.training.lora`)."""
    return [_lora_steps(bench, rank) for rank in bench.size.lora_ranks]


def _lora_steps(bench: Bench, rank: int) -> Measurement:
    from peft import LoraConfig

    size, config = bench.size, bench.size.arch.sd_unet
    with bench.device:
        unet = models.unet(config).requires_grad_(False)
    unet.add_adapter(
        LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=LORA_TARGET_MODULES)
    )
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2)
    model = torch.compile(unet.train()) if bench.compile else unet.train()
    # The worker keeps fp32 weights and autocasts to bf16 where the GPU has it (else plain fp32).
    autocast = torch.bfloat16 if bench.device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    side = size.lora_side // 8
    text = bench.randn(1, 77, config["cross_attention_dim"], dtype=torch.float32)

    def step() -> None:
        noise = bench.randn(1, 4, side, side, dtype=torch.float32)
        noisy = bench.randn(1, 4, side, side, dtype=torch.float32) + noise
        t = torch.randint(0, 1000, (1,), device=bench.device)
        with torch.autocast(bench.device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            pred = model(noisy, t, text).sample
        loss = torch.nn.functional.mse_loss(pred.float(), noise)
        optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()

    bench.warm(step)
    seconds, _ = bench.timed(lambda: _repeat(step, size.lora_steps))
    dtype = f"fp32 + {dtype_name(autocast)} autocast" if autocast else "fp32"
    trainable = _millions(sum(p.numel() for p in params))
    return Measurement(
        stage=f"lora r{rank}",
        model=bench.model(f"SD 1.5 UNet + LoRA ({trainable} trainable of {_params(unet)})"),
        dtype=dtype,
        steps=str(size.lora_steps),
        frames="batch 1",
        resolution=f"{size.lora_side}²",
        seconds=seconds,
        per_unit=f"{seconds / size.lora_steps:.2f} s/step",
        video_share=None,  # once per profile, not per video
    )


def stage_xtts(bench: Bench) -> list[Measurement]:
    """XTTS speaking `speech_seconds`: coqui's model when installed, else a same-sized GPT-2 (approximation)."""
    size, config = bench.size, bench.size.arch.xtts
    codes = max(2, round(size.speech_seconds * XTTS_CODES_PER_SECOND))
    text_tokens = max(2, round(size.speech_seconds * TEXT_TOKENS_PER_SECOND))
    sampling = {**models.XTTS_SAMPLING, "do_sample": True, "min_new_tokens": codes, "max_new_tokens": codes}
    if importlib.util.find_spec("TTS") is not None:
        model_name, speak = _coqui_xtts(bench, config, text_tokens, sampling)
    else:
        model_name, speak = _gpt2_like_xtts(bench, config, text_tokens, sampling)
    torch.manual_seed(0)  # sampling draws from the global generator
    bench.warm(speak)
    seconds, spoken = bench.timed(speak)
    measured = Measurement(
        stage="xtts",
        model=model_name,
        dtype="fp32",
        steps=f"{codes} audio codes",
        frames="—",
        resolution=f"{spoken:.1f} s of speech",
        seconds=seconds,
        per_unit=f"{seconds / spoken:.2f} s per speech s",
        video_share=seconds / spoken,
    )
    return [measured]


def _coqui_xtts(
    bench: Bench, config: models.Config, text_tokens: int, sampling: dict[str, Any]
) -> tuple[str, Callable[[], float]]:
    """Coqui's XTTS as `Xtts.inference` runs it, from token ids on (no tokenizer: it needs its vocabulary file)."""
    # Built on the CPU (coqui makes CPU-only tensors); never compiled: `generate` drives the GPT step by step.
    model = bench.place(models.xtts(config), torch.float32, compile=False)
    text = torch.randint(1, config["gpt_number_text_tokens"], (1, text_tokens), device=bench.device, dtype=torch.int32)
    text_len = torch.tensor([text_tokens], device=bench.device)
    cond = bench.randn(1, models.XTTS_COND_LATENTS, config["gpt_n_model_channels"], dtype=torch.float32)
    speaker = bench.randn(1, config["d_vector_dim"], 1, dtype=torch.float32)

    def speak() -> float:
        gpt_codes = model.gpt.generate(cond_latents=cond, text_inputs=text, output_attentions=False, **sampling)
        wav_len = torch.tensor([gpt_codes.shape[-1] * config["gpt_code_stride_len"]], device=bench.device)
        latents = model.gpt(
            text, text_len, gpt_codes, wav_len, cond_latents=cond, return_attentions=False, return_latent=True
        )
        wav = model.hifigan_decoder(latents, g=speaker)
        return float(wav.shape[-1] / config["output_sample_rate"])

    return bench.model(f"XTTS-v2 GPT + HiFi-GAN ({_params(model.gpt, model.hifigan_decoder)})"), speak


def _gpt2_like_xtts(
    bench: Bench, config: models.Config, text_tokens: int, sampling: dict[str, Any]
) -> tuple[str, Callable[[], float]]:
    """Approximation: a transformers GPT-2 of XTTS's GPT size samples the same number of codes; no HiFi-GAN."""
    gpt = bench.place(models.gpt2_like_xtts(config), torch.float32, compile=False)
    # The conditioning latents and the text precede the audio codes in XTTS's GPT input.
    prompt_length = models.XTTS_COND_LATENTS + text_tokens
    prompt = torch.randint(0, config["gpt_start_audio_token"], (1, prompt_length), device=bench.device)

    def speak() -> float:
        generated = gpt.generate(prompt, attention_mask=torch.ones_like(prompt), **sampling)
        return float((generated.shape[-1] - prompt.shape[-1]) / XTTS_CODES_PER_SECOND)

    name = f"approximation: GPT-2 at XTTS-v2's GPT sizes, no HiFi-GAN ({_params(gpt)}; coqui-tts not installed)"
    return bench.model(name), speak


STAGE_RUNNERS: dict[str, Callable[[Bench], list[Measurement]]] = {
    "sd": stage_sd,
    "svd": stage_svd,
    "musetalk": stage_musetalk,
    "esrgan": stage_esrgan,
    "lora": stage_lora,
    "xtts": stage_xtts,
}
