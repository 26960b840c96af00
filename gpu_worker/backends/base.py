"""The interfaces a model backend implements, and the image-size helpers they share.

Every call takes a `progress` callback with the fraction (0..1) of its own work done. The
renderer's callback raises `RenderCancelled` once the activity is cancelled, so a backend that
reports progress inside its loop (denoising steps, a subprocess poll) stops promptly; it
must leave nothing running behind when that happens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image, ImageOps

from gpu_worker.media.speech import SpokenSentence, VoiceParams

Progress = Callable[[float], None]

# Set (True) in the `info` of a scene a backend painted with the profile's LoRA, so the render records
# `rendering["lora"]` only when the weights really went in (a LoRA for another base model is skipped).
LORA_APPLIED = "profile_lora_applied"


@dataclass(frozen=True)
class LoraWeights:
    """A profile's LoRA downloaded for one render, with what its `lora.json` says about it."""

    path: Path  # `pytorch_lora_weights.safetensors`
    base_model: str | None  # the model it was trained on (a path, or `tiny-random`)
    instance_prompt: str | None  # the words that recall the profile's person


@dataclass(frozen=True)
class SceneRequest:
    """What to paint: the stage description, the size whose aspect ratio to match, a seed, a LoRA."""

    description: str
    size: tuple[int, int]
    seed: int
    lora: LoraWeights | None = None


class SpeechBackend(Protocol):
    """Sentences → speech (`speech` stage); the narrator times, fits and assembles them like every runtime's."""

    name: str

    def speak_sentences(
        self, sentences: list[str], voice: VoiceParams, speed: float, seed: int, progress: Progress
    ) -> tuple[list[SpokenSentence], int]:
        """Speak each sentence (int16 samples, silence trimmed) at `speed` × the model's pace; return them and the rate."""
        ...


class SceneBackend(Protocol):
    """Text → scene image (`scene` stage); `uses_lora` says whether it can apply a profile's LoRA file."""

    name: str
    uses_lora: bool

    def available(self) -> bool:
        """Whether it can take work now (a local model: always; a service: it answers)."""
        ...

    def generate(self, request: SceneRequest, progress: Progress) -> Image.Image:
        """Paint the scene at the model's own size with `request.size`'s aspect ratio."""
        ...


class ImageToVideoBackend(Protocol):
    """Still → short clip (`image_to_video` stage); the clip plays at `fps`."""

    name: str
    fps: int

    def generate(self, image: Image.Image, seed: int, progress: Progress) -> list[Image.Image]:
        """Animate `image`, returning the clip's frames at the model's size."""
        ...


class LipSyncBackend(Protocol):
    """Face video + speech → lip-synced video (`lipsync` stage)."""

    name: str

    def lipsync(self, face_video: Path, audio: Path, out_dir: Path, progress: Progress) -> Path:
        """Write the lip-synced video under `out_dir` and return its path."""
        ...


class TalkingHeadBackend(Protocol):
    """Portrait + speech → talking-head video (`talking_head` stage)."""

    name: str

    def animate(self, image: Path, audio: Path, out_dir: Path, progress: Progress) -> Path:
        """Write the talking-head video under `out_dir` and return its path."""
        ...


class Upscaler(Protocol):
    """Super-resolution of one image by the model's fixed factor (`upscale` stage)."""

    name: str

    def upscale(self, image: Image.Image) -> Image.Image:
        """Return `image` enlarged by the model's factor."""
        ...


def model_size(aspect: tuple[int, int], short_side: int, multiple: int) -> tuple[int, int]:
    """The size to generate at: `aspect`'s ratio, short side about `short_side`, both multiples of `multiple`.

    Args:
        aspect: A `(width, height)` whose ratio to keep (e.g. the frame size).
        short_side: The model's preferred short side (512 for SD 1.5, 576 for SVD).
        multiple: What both sides must divide by (8 for SD's VAE, 64 for SVD's UNet).

    Returns:
        `(width, height)`.
    """
    w, h = aspect
    short = max(multiple, round(short_side / multiple) * multiple)
    long = max(multiple, round(short_side * max(w, h) / min(w, h) / multiple) * multiple)
    return (long, short) if w >= h else (short, long)


def fit(image: Image.Image, size: tuple[int, int], upscaler: Upscaler | None = None) -> Image.Image:
    """Cover `size` with `image` (scale, then centre-crop the overflow), super-resolving first when it is small.

    The upscaler runs only when the image must grow by more than a quarter; Lanczos does the
    rest (Real-ESRGAN's own `--outscale` works the same way).

    Args:
        image: The model's output.
        size: The `(width, height)` needed.
        upscaler: Real-ESRGAN when configured.

    Returns:
        An RGB image of exactly `size`.
    """
    image = image.convert("RGB")
    if image.size == size:
        return image
    grow = max(size[0] / image.width, size[1] / image.height)
    if upscaler is not None and grow > 1.25:
        image = upscaler.upscale(image)
    return ImageOps.fit(image, size, Image.Resampling.LANCZOS)


def cover_box(box: tuple[int, int, int, int], src: tuple[int, int], dst: tuple[int, int]) -> tuple[int, int, int, int]:
    """Where a box of a `src`-sized image lands after `fit(image, dst)` (scale, centre-crop).

    Args:
        box: `(x, y, w, h)` in `src` pixels.
        src: The source size.
        dst: The fitted size.

    Returns:
        `(x, y, w, h)` in `dst` pixels.
    """
    scale = max(dst[0] / src[0], dst[1] / src[1])
    off_x, off_y = (src[0] * scale - dst[0]) / 2, (src[1] * scale - dst[1]) / 2
    x, y, w, h = box
    return round(x * scale - off_x), round(y * scale - off_y), round(w * scale), round(h * scale)
