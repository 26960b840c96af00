"""`lipsync` with MuseTalk 1.5 in-process: one UNet pass per frame redraws the lower face in SD-VAE latent space.

Per frame: the face crop (from our face mesh, `musetalk_face`) is resized to 256 × 256 and
encoded by the SD VAE twice, once with its lower half blacked out and once whole; the two
latents (8 channels, 32 × 32) go through MuseTalk's `UNet2DConditionModel` at timestep 0 with
the frame's window of Whisper states as cross-attention context (`musetalk_audio`); the VAE
decodes the result, which is blended back through a feathered lower-face mask. No denoising
loop, no DWPose, face parsing or SyncNet.

The files are MuseTalk's own `models/` layout, so its download script's folder can be used as it is:

    <dir>/musetalkV15/musetalk.json   the UNet's diffusers config
    <dir>/musetalkV15/unet.pth        its state dict (torch.save)
    <dir>/sd-vae/                     stabilityai/sd-vae-ft-mse (or sd-vae-ft-mse/): config.json + weights
    <dir>/whisper/                    openai/whisper-tiny: config.json, preprocessor_config.json + weights
"""

from __future__ import annotations

import json
import logging
import pickle
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gpu_worker.backends.base import Progress
from gpu_worker.backends.diffusers_common import device_and_dtype
from gpu_worker.backends.errors import missing_weights
from gpu_worker.backends.musetalk_audio import SpeechFeatures, encode_speech, read_speech
from gpu_worker.backends.musetalk_face import FACE_SIZE, FaceCrop, blend_face, cut_face, face_crop

logger = logging.getLogger(__name__)

MUSETALK_SUBDIR = "musetalk"
VAE_FOLDERS = ("sd-vae", "sd-vae-ft-mse")  # MuseTalk's download script's name, then the model's own
_VAE_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
_WHISPER_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
_LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError)


@dataclass(frozen=True)
class MuseTalkFiles:
    """The files MuseTalk 1.5 loads, all checked to exist."""

    unet_config: Path
    unet_weights: Path
    vae_dir: Path
    whisper_dir: Path


def find_musetalk(setting: Path | None, models_dir: Path | None) -> MuseTalkFiles | None:
    """MuseTalk's files in `APP_GPU__MUSETALK_DIR`, else in `<models_dir>/musetalk` when that folder exists.

    Args:
        setting: `APP_GPU__MUSETALK_DIR` (must then be complete).
        models_dir: `APP_GPU__MODELS_DIR` (its `musetalk/` is used when present).

    Returns:
        The files, or None when nothing is configured (the backend is then not offered).

    Raises:
        ApplicationError: `MissingWeights` naming what is missing from a configured or present folder.
    """
    root = setting if setting is not None else (models_dir / MUSETALK_SUBDIR if models_dir is not None else None)
    if root is None or (setting is None and not root.exists()):
        return None
    where = f"MuseTalk folder {root} (APP_GPU__MUSETALK_DIR)"
    if not root.is_dir():
        raise missing_weights(f"{where} does not exist")
    vae_dir = next((root / name for name in VAE_FOLDERS if (root / name).is_dir()), root / VAE_FOLDERS[0])
    needed = [
        root / "musetalkV15" / "musetalk.json",
        root / "musetalkV15" / "unet.pth",
        vae_dir / "config.json",
        root / "whisper" / "config.json",
        root / "whisper" / "preprocessor_config.json",
    ]
    missing = [str(path.relative_to(root)) for path in needed if not path.is_file()]
    for folder, names in ((vae_dir, _VAE_WEIGHTS), (root / "whisper", _WHISPER_WEIGHTS)):
        if not any((folder / name).is_file() for name in names):
            missing.append(f"{folder.relative_to(root)}/{' or '.join(names)}")
    if missing:
        raise missing_weights(f"{where} lacks {', '.join(missing)}")
    return MuseTalkFiles(needed[0], needed[1], vae_dir, root / "whisper")


def load_unet(config_path: Path, weights_path: Path, dtype: Any = None) -> Any:
    """MuseTalk's UNet built from its config and loaded strictly from `unet.pth`, on the CPU.

    The model is built on the meta device (no memory, no random init) and takes the file's
    tensors, cast to `dtype` (default: as stored) before they are assigned.

    Raises:
        ApplicationError: `MissingWeights` naming the file that cannot be read or does not fit the config.
    """
    import torch
    from diffusers import UNet2DConditionModel

    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        with torch.device("meta"):
            unet = UNet2DConditionModel.from_config(config)
    except _LOAD_ERRORS as err:
        raise missing_weights(
            f"MuseTalk UNet config {config_path} is not a UNet2DConditionModel config: {err}"
        ) from err
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except (*_LOAD_ERRORS, EOFError, pickle.UnpicklingError) as err:  # truncated, or not a plain state dict
        raise missing_weights(f"cannot read MuseTalk UNet weights {weights_path}: {err}") from err
    problem = state_dict_mismatch(unet.state_dict(), state)
    if problem:
        raise missing_weights(f"MuseTalk UNet weights {weights_path} do not fit {config_path.name}: {problem}")
    if dtype is not None:
        state = {key: value.to(dtype) for key, value in state.items()}
    unet.load_state_dict(state, strict=True, assign=True)
    return unet.eval().requires_grad_(False)


def state_dict_mismatch(expected: dict[str, Any], found: Any) -> str:
    """What differs between a model's state dict and a loaded one (missing, unexpected, reshaped keys), or ``""``."""
    if not isinstance(found, dict):
        return f"expected a state dict, found {type(found).__name__}"
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    reshaped = [
        f"{key} {tuple(found[key].shape)} ≠ {tuple(expected[key].shape)}"
        for key in sorted(set(expected) & set(found))
        if tuple(getattr(found[key], "shape", ())) != tuple(expected[key].shape)
    ]
    parts = [
        f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})"
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", reshaped))
        if keys
    ]
    return "; ".join(parts)


@dataclass
class MuseTalkModels:
    """The loaded UNet, SD VAE and Whisper encoder (+ its feature extractor), on one device and dtype."""

    unet: Any
    vae: Any
    encoder: Any
    extractor: Any

    @classmethod
    def load(cls, files: MuseTalkFiles, device: str = "cpu", dtype: Any = None) -> MuseTalkModels:
        """Load every part from local files only (never the Hub).

        Raises:
            ApplicationError: `MissingWeights` naming the file or folder that cannot be loaded.
        """
        import torch
        from diffusers import AutoencoderKL
        from transformers import WhisperFeatureExtractor, WhisperModel

        dtype = dtype or torch.float32
        unet = load_unet(files.unet_config, files.unet_weights, dtype)
        try:
            vae = AutoencoderKL.from_pretrained(files.vae_dir, local_files_only=True, torch_dtype=dtype)
        except _LOAD_ERRORS as err:
            raise missing_weights(f"cannot load the SD VAE for MuseTalk from {files.vae_dir}: {err}") from err
        try:
            whisper = WhisperModel.from_pretrained(files.whisper_dir, local_files_only=True)
            extractor = WhisperFeatureExtractor.from_pretrained(files.whisper_dir, local_files_only=True)
        except _LOAD_ERRORS as err:
            raise missing_weights(f"cannot load Whisper for MuseTalk from {files.whisper_dir}: {err}") from err
        encoder = whisper.get_encoder()  # the decoder is never used: dropped with `whisper`
        if encoder.config.d_model != unet.config.cross_attention_dim:
            raise missing_weights(
                f"Whisper in {files.whisper_dir} has {encoder.config.d_model}-wide states but the UNet in "
                f"{files.unet_config} attends to {unet.config.cross_attention_dim}: use the Whisper MuseTalk was trained with"
            )
        # diffusers models are cast as they load (casting them afterwards warns); Whisper here.
        parts = [part.to(device).eval().requires_grad_(False) for part in (unet, vae, encoder.to(dtype=dtype))]
        return cls(parts[0], parts[1], parts[2], extractor)

    def speech(self, path: Path) -> SpeechFeatures:
        """The Whisper states of a speech file."""
        import torch

        with torch.inference_mode():
            return encode_speech(read_speech(path), self.extractor, self.encoder)

    def _encode(self, images: Any) -> Any:
        """Images in 0..1 → scaled latent means (MuseTalk samples the posterior; its mean keeps a render repeatable)."""
        latents = self.vae.encode(images * 2 - 1).latent_dist.mean
        return latents * self.vae.config.scaling_factor

    def inpaint(self, faces: np.ndarray, context: Any) -> np.ndarray:
        """Redraw the lower half of each face for its audio window.

        Args:
            faces: `(B, S, S, 3)` uint8 RGB faces (S = 256 for the published model).
            context: `(B, tokens, dim)` audio windows (`SpeechFeatures.windows`).

        Returns:
            `(B, S, S, 3)` uint8 RGB: the VAE's decoding of the UNet's latents.
        """
        import torch

        parameter = next(self.unet.parameters())
        with torch.inference_mode():
            images = torch.from_numpy(faces).to(parameter.device).permute(0, 3, 1, 2).to(parameter.dtype) / 255
            masked = images.clone()
            masked[:, :, images.shape[2] // 2 :, :] = 0  # the lower half hidden: the UNet draws it from the audio
            latents = torch.cat([self._encode(masked), self._encode(images)], dim=1)  # (B, 8, S/8, S/8)
            timestep = torch.zeros(len(faces), device=parameter.device, dtype=torch.long)  # a single step, at t = 0
            drawn = self.unet(latents, timestep, encoder_hidden_states=context.to(parameter.dtype)).sample
            decoded = self.vae.decode(drawn / self.vae.config.scaling_factor).sample
            pixels = ((decoded / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
            out: np.ndarray = pixels.permute(0, 2, 3, 1).cpu().numpy()
            return out


class MuseTalk:
    """MuseTalk 1.5 on the base clip, `batch_size` frames per UNet call; models load on first use."""

    name = "musetalk-1.5"

    def __init__(self, files: MuseTalkFiles, batch_size: int = 8, face_size: int = FACE_SIZE) -> None:
        self.files = files
        self.batch_size = max(1, batch_size)
        self.face_size = face_size
        self._models: MuseTalkModels | None = None
        self._lock = threading.Lock()

    def models(self) -> MuseTalkModels:
        """The models, loaded once (GPU in float16 when there is one)."""
        with self._lock:
            if self._models is None:
                device, dtype = device_and_dtype()
                started = time.perf_counter()
                self._models = MuseTalkModels.load(self.files, device, dtype)
                logger.info("loaded MuseTalk 1.5 on %s in %.1f s", device, time.perf_counter() - started)
            return self._models

    def lipsync(self, face_video: Path, audio: Path, out_dir: Path, progress: Progress) -> Path:
        """Redraw the mouth of the face in every frame of `face_video` to speak `audio`.

        Frames without a face (as the face mesh sees it) pass through unchanged.

        Args:
            face_video: The base clip.
            audio: The speech (any format PyAV reads).
            out_dir: Scratch directory of this render.
            progress: Called after every batch; raises to cancel (the partial video is deleted).

        Returns:
            `musetalk.mp4` in `out_dir`: the clip's size, frame rate and frame count, no audio (the renderer muxes it).
        """
        from gpu_worker.media.encode import VideoWriter

        models = self.models()
        speech = models.speech(audio)
        out = out_dir / "musetalk.mp4"
        missed = done = 0
        with _Clip(face_video) as clip, VideoWriter(out, clip.size, clip.fps, crf=18) as writer:
            for batch in clip.batches(self.batch_size):
                synced, misses = self._sync(models, speech, batch, done, clip.fps)
                for frame in synced:
                    writer.write(frame)
                done, missed = done + len(batch), missed + misses
                progress(min(done / clip.expected, 1.0))
        if missed:
            logger.info("MuseTalk: no face in %d of %d frames; they are left as they were", missed, done)
        progress(1.0)
        return out

    def _sync(
        self, models: MuseTalkModels, speech: SpeechFeatures, frames: list[np.ndarray], first: int, fps: float
    ) -> tuple[list[np.ndarray], int]:
        """One batch: the frames with their faces redrawn, and how many had no face."""
        from gpu_worker.media.facemesh import face_mesh

        crops: list[tuple[int, FaceCrop]] = []
        for k, frame in enumerate(frames):
            mesh = face_mesh(frame)
            crop = face_crop(mesh, (frame.shape[1], frame.shape[0])) if mesh is not None else None
            if crop is not None:
                crops.append((k, crop))
        if not crops:
            return frames, len(frames)
        faces = np.stack([cut_face(frames[k], crop, self.face_size) for k, crop in crops])
        drawn = models.inpaint(faces, speech.windows([first + k for k, _ in crops], fps))
        synced = list(frames)
        for (k, crop), face in zip(crops, drawn, strict=True):
            synced[k] = blend_face(frames[k], crop, face)
        return synced, len(frames) - len(crops)


class _Clip:
    """A video read frame by frame with PyAV: its size, frame rate and (expected) frame count."""

    def __init__(self, path: Path) -> None:
        import av

        self._container = av.open(str(path))
        stream = self._container.streams.video[0]
        self.size = (int(stream.codec_context.width), int(stream.codec_context.height))
        self.fps = float(stream.average_rate or stream.guessed_rate or 25)
        duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
        self.expected = max(1, int(stream.frames) or round(duration * self.fps))

    def batches(self, size: int) -> Iterator[list[np.ndarray]]:
        """HxWx3 uint8 RGB frames, `size` at a time (the last batch may be shorter)."""
        batch: list[np.ndarray] = []
        for frame in self._container.decode(video=0):
            batch.append(frame.to_ndarray(format="rgb24"))
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch

    def __enter__(self) -> _Clip:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._container.close()
