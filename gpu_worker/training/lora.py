"""LoRA fine-tuning of the Stable Diffusion UNet on a profile's photos, checkpointed and resumable.

One `train` call is one activity attempt. It heartbeats every step, uploads a checkpoint
(LoRA weights, AdamW state, step, noise RNG state) every `checkpoint_every` steps and when it
is cancelled, and on a retry continues from the newest checkpoint of the same job node, so a
dead worker costs at most one checkpoint interval. Everything random (LoRA init, image order,
noise, timesteps) comes from the preset's seed, so a resumed run ends with the same weights as
an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.storage import parse_s3_uri
from gpu_worker.progress import stop_error
from gpu_worker.training.checkpoints import checkpoint_uri, resume_candidates, step_of
from gpu_worker.training.components import SdComponents, build_tiny_sd, load_sd
from gpu_worker.training.errors import InvalidInputError, MissingWeightsError
from gpu_worker.training.images import load_images, to_array
from gpu_worker.training.inputs import Heartbeats, Store
from schemas.names import ARTIFACTS_BUCKET
from schemas.tasks import TrainLoraInput, TrainLoraResult

logger = logging.getLogger(__name__)

STAGE = "train_lora"
LORA_FILE = "pytorch_lora_weights.safetensors"
TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]
_CHECKPOINT_FORMAT = 1
_LOSS_EMA = 0.9


@dataclass(frozen=True)
class LoraPreset:
    """Training settings advertised by name in the capabilities manifest."""

    name: str
    steps: int
    rank: int
    alpha: int
    learning_rate: float
    resolution: int
    batch_size: int
    seed: int
    checkpoint_every: int
    needs_weights: bool  # True: trains the configured real model; False: the tiny random one
    cpu_threads: int | None = None  # torch threads while training on a CPU (None: leave as is)


PRESETS: dict[str, LoraPreset] = {
    "standard": LoraPreset("standard", 1000, 16, 16, 1e-4, 512, 1, 0, 100, needs_weights=True),
    # A model this small trains faster on one thread (measured 41 vs 29 steps/s on 2 busy cores):
    # more threads mostly spin, and collapse when other processes compete for the cores.
    "tiny": LoraPreset("tiny", 40, 4, 4, 1e-3, 32, 1, 0, 10, needs_weights=False, cpu_threads=1),
    # The same model for ~10 s: long enough to watch progress, cancel, or kill a worker mid-run.
    "tiny-long": LoraPreset("tiny-long", 400, 4, 4, 1e-3, 32, 1, 0, 50, needs_weights=False, cpu_threads=1),
}

ComponentsFactory = Callable[[LoraPreset], SdComponents]


def default_components_factory(models_dir: Path | None) -> ComponentsFactory:
    """The worker's factory: the tiny random model for `tiny`, the local real model otherwise.

    Args:
        models_dir: The configured models directory, or None.

    Returns:
        A function from preset to freshly built components.
    """

    def factory(preset: LoraPreset) -> SdComponents:
        if not preset.needs_weights:
            return build_tiny_sd(preset.seed)
        if models_dir is None:
            raise MissingWeightsError(f"preset {preset.name!r} needs a Stable Diffusion model: set APP_GPU__MODELS_DIR")
        return load_sd(models_dir)

    return factory


def instance_token(profile_id: str) -> str:
    """The rare token that names the profile's person in captions: `sks_<last 8 id characters>`."""
    suffix = re.sub(r"[^a-z0-9]", "", profile_id.lower())[-8:] or "person"
    return f"sks_{suffix}"


def instance_prompt(profile_id: str) -> str:
    """The caption of every training image (and the prompt that recalls the person at render time)."""
    return f"photo of {instance_token(profile_id)} person"


def lora_uri(profile_id: str, name: str = LORA_FILE) -> str:
    """`s3://artifacts/profiles/<profile id>/lora/<name>`."""
    return f"s3://{ARTIFACTS_BUCKET}/profiles/{profile_id}/lora/{name}"


class _Session:
    """The models, optimizer and random state of one training run, on one device."""

    def __init__(self, parts: SdComponents, preset: LoraPreset, pixels: Any, prompt: str) -> None:
        import torch
        from peft import LoraConfig

        self.torch = torch
        self.preset = preset
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        use_bf16 = self.device == "cuda" and torch.cuda.is_bf16_supported()
        self.autocast_dtype = torch.bfloat16 if use_bf16 else None
        self.unet, self.scheduler = parts.unet, parts.noise_scheduler
        for model in (parts.unet, parts.vae, parts.text_encoder):
            model.requires_grad_(False)
            model.to(self.device)
        with torch.random.fork_rng(devices=[]):  # LoRA init draws from the global RNG
            torch.manual_seed(preset.seed)
            config = LoraConfig(
                r=preset.rank, lora_alpha=preset.alpha, init_lora_weights="gaussian", target_modules=TARGET_MODULES
            )
            self.unet.add_adapter(config)
        self.params = {name: p for name, p in self.unet.named_parameters() if p.requires_grad}
        self.optimizer = torch.optim.AdamW(self.params.values(), lr=preset.learning_rate, weight_decay=1e-2)
        self.generator = torch.Generator("cpu").manual_seed(preset.seed)
        self.latent_mean, self.latent_std = self._encode_images(parts.vae, pixels)
        self.scaling = float(parts.vae.config.scaling_factor)
        self.text = self._encode_prompt(parts, prompt)
        if self.device != "cpu":  # the frozen encoders are done: give their memory back to the UNet
            parts.vae.to("cpu")
            parts.text_encoder.to("cpu")
        self.loss_ema: float | None = None
        self.unet.train()

    def _encode_images(self, vae: Any, pixels: Any) -> tuple[Any, Any]:
        """Latent mean and std of each image, encoded once (one at a time: 512 px batches are large)."""
        torch = self.torch
        means, stds = [], []
        with torch.no_grad():
            for image in torch.from_numpy(pixels).split(1):
                dist = vae.encode(image.to(self.device)).latent_dist
                means.append(dist.mean.float().cpu())
                stds.append(dist.std.float().cpu())
        return torch.cat(means), torch.cat(stds)

    def _encode_prompt(self, parts: SdComponents, prompt: str) -> Any:
        """The caption's text-encoder states, shared by every step (the encoder is frozen)."""
        tokenizer = parts.tokenizer
        ids = tokenizer(
            prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids
        with self.torch.no_grad():
            return parts.text_encoder(ids.to(self.device))[0]

    def _batch(self, step: int) -> Any:
        """Image indices for a 0-based step: a seeded shuffle per epoch, so any step is reproducible."""
        torch, n, size = self.torch, self.latent_mean.shape[0], self.preset.batch_size
        picks = []
        for k in range(step * size, (step + 1) * size):
            epoch_gen = torch.Generator("cpu").manual_seed(self.preset.seed * 1_000_003 + k // n)
            picks.append(int(torch.randperm(n, generator=epoch_gen)[k % n]))
        return torch.tensor(picks)

    def step(self, step: int) -> float:
        """Run one optimisation step (0-based) and return its loss."""
        torch, gen = self.torch, self.generator
        idx = self._batch(step)
        mean, std = self.latent_mean[idx], self.latent_std[idx]
        latents = (mean + std * torch.randn(mean.shape, generator=gen)) * self.scaling
        noise = torch.randn(latents.shape, generator=gen)
        timesteps = torch.randint(0, self.scheduler.config.num_train_timesteps, (len(idx),), generator=gen)
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        if self.scheduler.config.prediction_type == "v_prediction":
            target = self.scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        mixed = torch.autocast(self.device, dtype=self.autocast_dtype) if self.autocast_dtype else nullcontext()
        with mixed:
            text = self.text.expand(len(idx), -1, -1)
            pred = self.unet(noisy.to(self.device), timesteps.to(self.device), text).sample
        loss = torch.nn.functional.mse_loss(pred.float(), target.to(self.device).float())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params.values(), 1.0)
        self.optimizer.step()
        value = float(loss.detach())
        self.loss_ema = value if self.loss_ema is None else _LOSS_EMA * self.loss_ema + (1 - _LOSS_EMA) * value
        return value

    def state(self, step: int, fingerprint: dict[str, Any]) -> dict[str, Any]:
        """Everything needed to continue after `step` completed steps."""
        return {
            "format": _CHECKPOINT_FORMAT,
            "step": step,
            "fingerprint": fingerprint,
            "lora": {name: p.detach().cpu().clone() for name, p in self.params.items()},
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "loss_ema": self.loss_ema,
        }

    def restore(self, state: dict[str, Any]) -> int:
        """Load a checkpoint's state; returns its step."""
        saved = state["lora"]
        misfits = set(self.params) ^ set(saved) or {n for n, p in self.params.items() if p.shape != saved[n].shape}
        if misfits:  # checked before anything is copied, so a rejected checkpoint leaves no trace
            raise ValueError(f"checkpoint does not fit this model ({len(misfits)} LoRA tensors differ)")
        with self.torch.no_grad():
            for name, param in self.params.items():
                param.copy_(saved[name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.loss_ema = state["loss_ema"]
        return int(state["step"])

    def export(self, out_dir: Path) -> Path:
        """Write the LoRA in diffusers' format (`pytorch_lora_weights.safetensors`)."""
        from diffusers import StableDiffusionPipeline
        from diffusers.utils.state_dict_utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(self.unet))
        StableDiffusionPipeline.save_lora_weights(
            out_dir,
            unet_lora_layers=layers,
            safe_serialization=True,
            unet_lora_adapter_metadata=self.unet.peft_config["default"].to_dict(),
        )
        return out_dir / LORA_FILE


class LoraTrainer:
    """Trains one profile's LoRA per `train` call; the components come from an injected factory."""

    def __init__(self, components_factory: ComponentsFactory) -> None:
        """Keep the factory that builds the base model for a preset.

        Args:
            components_factory: Preset → fresh `SdComponents` (tests pass a tiny or saved model).
        """
        self._factory = components_factory

    def train(
        self,
        inp: TrainLoraInput,
        store: Store,
        work_dir: Path,
        heartbeater: Heartbeats,
        resume_from: dict[str, Any] | None = None,
    ) -> TrainLoraResult:
        """Train, checkpoint and upload the LoRA of `inp.profile_id`.

        Args:
            inp: The activity input.
            store: Object storage (images in, checkpoints and weights out).
            work_dir: Scratch directory for this attempt.
            heartbeater: Progress and cancellation.
            resume_from: The previous attempt's heartbeat details, if any.

        Returns:
            The LoRA's URI, the number of steps and the smoothed final loss.

        Raises:
            InvalidInputError: Unknown preset or a bad image.
            MissingWeightsError: The preset's base model is not available.
            CancelledError: The activity was cancelled (after a final checkpoint).
        """
        preset = PRESETS.get(inp.preset)
        if preset is None:
            raise InvalidInputError(f"unknown training preset {inp.preset!r}; known: {', '.join(PRESETS)}")
        total = preset.steps
        previous = (resume_from or {}).get("checkpoint_uri")  # keep it in the details until we know better
        heartbeater.update(STAGE, 0, step=0, total_steps=total, loss=None, checkpoint_uri=previous, preset=preset.name)
        pixels = to_array(load_images(store, inp.images, work_dir / "images", preset.resolution))
        parts = self._factory(preset)
        with _cpu_threads(preset.cpu_threads):
            return self._run(inp, preset, parts, pixels, store, work_dir, heartbeater, resume_from)

    def _run(
        self,
        inp: TrainLoraInput,
        preset: LoraPreset,
        parts: SdComponents,
        pixels: Any,
        store: Store,
        work_dir: Path,
        heartbeater: Heartbeats,
        resume_from: dict[str, Any] | None,
    ) -> TrainLoraResult:
        total = preset.steps
        session = _Session(parts, preset, pixels, instance_prompt(inp.profile_id))
        fingerprint = {"preset": preset.name, "images": list(inp.images)}
        start, last_ckpt = _resume(session, store, inp, work_dir, resume_from, fingerprint)
        progress = {"total_steps": total, "preset": preset.name, "base_model": parts.source, "start_step": start}
        heartbeater.update(STAGE, 99.0 * start / total, step=start, loss=None, checkpoint_uri=last_ckpt, **progress)

        def save(step: int) -> str:
            nonlocal last_ckpt
            last_ckpt = _save_checkpoint(session, store, inp, work_dir, step, fingerprint)
            return last_ckpt

        step, loss = start, None
        while step < total:
            loss = session.step(step)
            step += 1
            if step % preset.checkpoint_every == 0 or step == total:
                save(step)
            percent = 99.0 * step / total
            heartbeater.update(STAGE, percent, step=step, loss=round(loss, 6), checkpoint_uri=last_ckpt, **progress)
            if step < total and heartbeater.cancelled():
                if step_of(last_ckpt or "") != step:
                    save(step)
                heartbeater.update(STAGE, percent, step=step, loss=round(loss, 6), checkpoint_uri=last_ckpt, **progress)
                raise stop_error(f"train_lora stopped at step {step}/{total}; checkpoint {last_ckpt}")
        uri = _upload_lora(session, store, inp, work_dir, parts, preset)
        final = round(session.loss_ema, 6) if session.loss_ema is not None else None
        heartbeater.update(STAGE, 100, step=total, loss=final, checkpoint_uri=last_ckpt, lora_uri=uri, **progress)
        return TrainLoraResult(lora_id=uri, steps=total, final_loss=final)


@contextmanager
def _cpu_threads(count: int | None) -> Iterator[None]:
    """Use `count` torch threads for CPU training, restoring the previous setting afterwards."""
    import torch

    if count is None or torch.cuda.is_available():
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _resume(
    session: _Session,
    store: Store,
    inp: TrainLoraInput,
    work_dir: Path,
    resume_from: dict[str, Any] | None,
    fingerprint: dict[str, Any],
) -> tuple[int, str | None]:
    """Restore the newest usable checkpoint; returns `(step, its uri)` or `(0, None)`."""
    import torch

    for uri in resume_candidates(store, inp.job_id, inp.node_id, resume_from):
        started = time.perf_counter()
        local = store.download(uri, work_dir / "resume" / uri.rsplit("/", 1)[-1])
        try:
            state = torch.load(local, map_location="cpu", weights_only=True)
        except Exception as err:  # a damaged file can fail anywhere in the unpickler
            logger.warning("skipping unreadable checkpoint %s: %r", uri, err)
            continue
        try:
            if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT:
                raise ValueError("not a checkpoint of this format")
            if state.get("fingerprint") != fingerprint:
                raise ValueError("written for another preset or other images")
            step = session.restore(state)
        except (RuntimeError, ValueError, KeyError) as err:
            logger.warning("skipping checkpoint %s: %s", uri, err)
            continue
        logger.info("resumed %s at step %d from %s in %.2f s", inp.node_id, step, uri, time.perf_counter() - started)
        return step, uri
    return 0, None


def _save_checkpoint(
    session: _Session, store: Store, inp: TrainLoraInput, work_dir: Path, step: int, fingerprint: dict[str, Any]
) -> str:
    import torch

    started = time.perf_counter()
    uri = checkpoint_uri(inp.job_id, inp.node_id, step)
    local = work_dir / "checkpoints" / f"step-{step}.pt"
    local.parent.mkdir(parents=True, exist_ok=True)
    torch.save(session.state(step, fingerprint), local)
    store.put_file(ARTIFACTS_BUCKET, parse_s3_uri(uri)[1], local)
    local.unlink()
    logger.info("checkpoint step %d -> %s in %.2f s", step, uri, time.perf_counter() - started)
    return uri


def _upload_lora(
    session: _Session, store: Store, inp: TrainLoraInput, work_dir: Path, parts: SdComponents, preset: LoraPreset
) -> str:
    """Upload the weights and a `lora.json` that says which base model and prompt they belong to."""
    out_dir = work_dir / "lora"
    weights = session.export(out_dir)
    meta = out_dir / "lora.json"
    meta.write_text(
        json.dumps(
            {
                "base_model": parts.source,
                "instance_prompt": instance_prompt(inp.profile_id),
                "preset": asdict(preset),
                "final_loss": session.loss_ema,
                "job_id": inp.job_id,
            },
            indent=2,
        )
    )
    store.put_file(ARTIFACTS_BUCKET, parse_s3_uri(lora_uri(inp.profile_id, "lora.json"))[1], meta, "application/json")
    uri, size = store.put_file(ARTIFACTS_BUCKET, parse_s3_uri(lora_uri(inp.profile_id))[1], weights)
    logger.info("LoRA for profile %s: %s (%d bytes)", inp.profile_id, uri, size)
    return uri
