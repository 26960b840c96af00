"""Frame generators: camera motion, the mouth posed by visemes, blinks and head motion.

Every generator yields HxWx3 uint8 RGB frames one at a time, so a whole video is never held
in memory.
"""

import logging
import wave
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from gpu_worker.media.expressions import close_eyes
from gpu_worker.media.faces import Box
from gpu_worker.media.mouth import Lips, pose_mouth
from gpu_worker.media.visemes import MouthTrack

logger = logging.getLogger(__name__)

Source = Image.Image | np.ndarray | Iterable[np.ndarray]
"""One still (repeated for every frame) or an iterable of frames."""


def _frames(source: Source, n_frames: int) -> Iterator[np.ndarray]:
    if isinstance(source, Image.Image | np.ndarray):
        still = np.ascontiguousarray(np.asarray(source.convert("RGB") if isinstance(source, Image.Image) else source))
        for _ in range(n_frames):
            yield still
    else:
        for i, frame in enumerate(source):
            if i >= n_frames:
                return
            yield frame


def _smooth_noise(n: int, fps: float, rng: np.random.Generator, hz: tuple[float, float] = (0.08, 0.35)) -> np.ndarray:
    """A smooth random signal in about [-1, 1]: three sines with random frequencies and phases."""
    t = np.arange(n) / fps
    f = rng.uniform(*hz, 3)
    ph = rng.uniform(0, 2 * np.pi, 3)
    waves: np.ndarray = np.sin(2 * np.pi * f[:, None] * t + ph[:, None]) * np.array([[0.55], [0.3], [0.15]])
    return np.asarray(waves.sum(axis=0), np.float64)


def camera_path(
    src_size: tuple[int, int],
    size: tuple[int, int],
    n_frames: int,
    seed: int,
    zoom: float = 0.1,
    focus: tuple[float, float] | None = None,
) -> np.ndarray:
    """Affine matrices (n, 2, 3) of a slow Ken Burns move: an eased zoom plus a pan, never leaving the source.

    Args:
        src_size: `(width, height)` of the source image.
        size: `(width, height)` of the output frames.
        n_frames: number of frames.
        seed: picks zoom direction and pan target.
        zoom: relative zoom between the first and the last frame.
        focus: source point `(x, y)` to drift towards (e.g. the presenter's face); random if None.

    Returns:
        Per-frame matrices mapping source pixels to output pixels (for `cv2.warpAffine`).
    """
    rng = np.random.default_rng(seed)
    (sw, sh), (w, h) = src_size, size
    fit = max(w / sw, h / sh)
    t = np.linspace(0.0, 1.0, max(n_frames, 1))
    # Half linear, half smoothstep: soft at the ends but never still, so a closing silence is not a frozen frame.
    ease = 0.5 * t + 0.5 * t * t * (3 - 2 * t)
    z = 1 + zoom * (ease if rng.random() < 0.7 else 1 - ease)
    s = fit * z
    target = rng.uniform(0.3, 0.7, 2) if focus is None else np.array([focus[0] / sw, focus[1] / sh])
    cx = sw / 2 + (target[0] - 0.5) * sw * ease
    cy = sh / 2 + (target[1] - 0.5) * sh * ease
    half_w, half_h = w / (2 * s), h / (2 * s)
    cx, cy = np.clip(cx, half_w, sw - half_w), np.clip(cy, half_h, sh - half_h)
    m = np.zeros((len(t), 2, 3), np.float64)
    m[:, 0, 0] = m[:, 1, 1] = s
    m[:, 0, 2], m[:, 1, 2] = w / 2 - s * cx, h / 2 - s * cy
    return m[:n_frames]


def head_motion(
    size: tuple[int, int], face: Box, n_frames: int, fps: float, seed: int, loudness: np.ndarray | None = None
) -> np.ndarray:
    """Affine matrices (n, 2, 3) for a talking head: slow sway, tilt and nods that follow the voice.

    A slight zoom around the face keeps the frame edges from showing.

    Args:
        size: `(width, height)` of the frames (input and output).
        face: the face box; motion pivots around its centre.
        n_frames: number of frames.
        fps: frame rate.
        seed: motion variation.
        loudness: optional per-frame loudness (0..1) that adds small nods while speaking.

    Returns:
        Per-frame matrices for `cv2.warpAffine`.
    """
    import cv2

    rng = np.random.default_rng(seed)
    w, h = size
    angle = 1.2 * _smooth_noise(n_frames, fps, rng)
    dx = 0.008 * w * _smooth_noise(n_frames, fps, rng)
    dy = 0.006 * h * _smooth_noise(n_frames, fps, rng)
    if loudness is not None and len(loudness):
        nod = np.convolve(np.resize(loudness, n_frames), np.hanning(9) / np.hanning(9).sum(), mode="same")
        dy += 0.01 * face[3] * nod
    pivot = (face[0] + face[2] / 2, face[1] + face[3] / 2)
    m = np.empty((n_frames, 2, 3), np.float64)
    for i in range(n_frames):
        m[i] = cv2.getRotationMatrix2D(pivot, float(angle[i]), 1.04)
        m[i, :, 2] += (dx[i], dy[i])
    return m


def warp(frame: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Apply one affine matrix, producing a `size` frame (edges reflected, never black)."""
    import cv2

    return cv2.warpAffine(frame, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)


def map_box(box: Box, matrix: np.ndarray) -> Box:
    """Where a box lands under a scale-and-translate matrix (as from `camera_path`)."""
    x, y, w, h = box
    s = float(matrix[0, 0])
    return round(s * x + matrix[0, 2]), round(s * y + matrix[1, 2]), round(s * w), round(s * h)


def ken_burns(
    source: Source,
    size: tuple[int, int],
    n_frames: int,
    seed: int,
    zoom: float = 0.1,
    focus: tuple[float, float] | None = None,
) -> Iterator[np.ndarray]:
    """Slow zoom and pan over a still (or over the frames of a clip).

    Args:
        source: a still image, or frames all of the same size.
        size: `(width, height)` of the output frames.
        n_frames: number of frames to yield.
        seed: motion variation (see `camera_path`).
        zoom: relative zoom over the clip.
        focus: source point to drift towards; random if None.

    Yields:
        `size` RGB frames.
    """
    matrices: np.ndarray | None = None
    for i, frame in enumerate(_frames(source, n_frames)):
        if matrices is None:
            matrices = camera_path((frame.shape[1], frame.shape[0]), size, n_frames, seed, zoom, focus)
        yield warp(frame, matrices[i], size)


def talking_frames(
    base: Source,
    face_box: Box | Sequence[Box],
    lips: Lips,
    mouth: MouthTrack,
    blinks: np.ndarray | None = None,
    motion: np.ndarray | None = None,
) -> Iterator[np.ndarray]:
    """Animate a face: the mouth posed by the visemes of the speech, blinks, and optional head motion.

    Args:
        base: a still (portrait or composed scene) or base frames; one frame per mouth pose.
        face_box: the face box, or one box per frame when the base clip moves.
        lips: the portrait's lips in fractions of its face box (see `mouth.lips_of`).
        mouth: the per-frame mouth poses (see `visemes.mouth_track`); its length is the frame count.
        blinks: per-frame eyelid closure 0..1 (see `blink_schedule`); None for no blinks.
        motion: per-frame affine matrices applied after the face edits (see `head_motion`).

    Yields:
        RGB frames the size of the base.
    """
    n = len(mouth)
    per_frame = not (len(face_box) == 4 and np.isscalar(face_box[0]))
    for i, frame in enumerate(_frames(base, n)):
        box: Box = tuple(face_box[i]) if per_frame else face_box  # type: ignore[assignment,arg-type]
        out = frame.copy()
        pose_mouth(out, box, lips, mouth.pose(i))
        if blinks is not None:
            close_eyes(out, box, float(blinks[i]))
        if motion is not None:
            out = warp(out, motion[i], (out.shape[1], out.shape[0]))
        yield out


def loudness_envelope(wav_path: Path, fps: float, n_frames: int) -> np.ndarray:
    """Per-frame loudness of a 16-bit mono WAV: RMS per frame window, gated and normalized to 0..1.

    Args:
        wav_path: the speech file.
        fps: video frame rate.
        n_frames: number of values to return (padded with silence or cut).

    Returns:
        A float32 array of `n_frames` values in [0, 1].
    """
    with wave.open(str(wav_path), "rb") as wav:
        rate, width, channels = wav.getframerate(), wav.getsampwidth(), wav.getnchannels()
        raw = wav.readframes(wav.getnframes())
    if width != 2:
        raise ValueError(f"{wav_path} is not 16-bit PCM")
    samples = np.frombuffer(raw, np.int16).reshape(-1, channels).mean(axis=1).astype(np.float32) / 32768.0
    bounds = (np.arange(n_frames + 1) * rate / fps).astype(np.int64)
    padded = np.zeros(bounds[-1], np.float32)
    padded[: min(len(samples), len(padded))] = samples[: len(padded)]
    energy = np.add.reduceat(padded**2, bounds[:-1]) / np.maximum(np.diff(bounds), 1)
    rms = np.sqrt(energy)
    ref = float(np.percentile(rms[rms > 0], 95)) if np.any(rms > 0) else 1.0
    env = np.clip(rms / max(ref, 1e-6), 0.0, 1.0)
    env[env < 0.08] = 0.0
    env = np.convolve(env, [0.25, 0.5, 0.25], mode="same") ** 0.7
    return env.astype(np.float32)


def blink_schedule(n_frames: int, fps: float, seed: int) -> np.ndarray:
    """Per-frame eyelid closure: a quick blink (about 0.2 s) every 3 to 5 seconds.

    Args:
        n_frames: number of frames.
        fps: frame rate.
        seed: blink timing variation.

    Returns:
        A float32 array of `n_frames` closures in [0, 1].
    """
    rng = np.random.default_rng(seed)
    closure = np.zeros(n_frames, np.float32)
    t = np.arange(n_frames) / fps
    start = rng.uniform(1.0, 3.0)
    while start < n_frames / fps:
        # Close fast (70 ms), hold briefly, open slower (110 ms).
        rel = t - start
        shape = np.interp(rel, [0, 0.07, 0.11, 0.22], [0, 1, 1, 0], left=0, right=0)
        closure = np.maximum(closure, shape.astype(np.float32))
        start += rng.uniform(3.0, 5.0)
    return closure
