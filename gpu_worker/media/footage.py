"""Scenes from the caller's own images and clips (`options.media`), cut at the narration's sentences.

Each sentence starts a new scene showing the next medium in order (cycling when there are fewer
media than sentences); the first scene also covers the lead-in and the last one the closing
silence. Stills are cover-cropped once and drift with a slow Ken Burns move; a still of the other
orientation (a portrait photo in a landscape video, or the reverse) is fitted whole over a blurred
copy of itself instead of losing most of it to the crop. Clips play from their start, trimmed to
the scene or looped; their sound is never read. A short crossfade, ending as the sentence starts,
joins the scenes.
"""

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from gpu_worker.media.animate import ken_burns
from gpu_worker.media.speech import Segment

logger = logging.getLogger(__name__)

STILL_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})
CLIP_SUFFIXES = frozenset({".mp4", ".mov", ".webm"})
CROSSFADE_SECONDS = 0.32
MIN_SCENE_SECONDS = 1.0  # a sentence starting sooner after the last cut stays in that scene
_MARGIN = 1.1  # stills are prepared this much larger than the frame so the zoom stays crisp
_ZOOM = 0.08
_BLUR_SHRINK = 16  # the blurred backdrop is blurred at 1/16 of the frame size: cheap and smooth
_BACKDROP_DIM = 0.75


class UnreadableMedium(ValueError):
    """A medium does not decode; the same file would fail again, so the render fails for good."""


@dataclass(frozen=True)
class Scene:
    """One medium on screen from frame `start` (its crossfade in begins there) up to, not including, `end`."""

    medium: Path
    start: int
    end: int
    seed: int


def plan_scenes(
    media: Sequence[Path], sentences: Sequence[Segment], fps: float, n_frames: int, seed: int = 0
) -> list[Scene]:
    """Cut the video at sentence starts and give each scene the next medium, cycling through `media`.

    A cut is where the incoming scene is fully in: its crossfade takes the frames just before the
    sentence starts. Cuts closer than `MIN_SCENE_SECONDS` to the previous cut or to the end are skipped.

    Args:
        media: the caller's images and clips, in order (at least one).
        sentences: the narration's sentences with their times (`SpeechResult.segments`).
        fps: frame rate.
        n_frames: frames in the video.
        seed: varies each still's camera move.

    Returns:
        The scenes in order; consecutive ones overlap by the crossfade.
    """
    if not media:
        raise ValueError("no media to cut scenes from")
    fade, shortest = round(CROSSFADE_SECONDS * fps), max(1, round(MIN_SCENE_SECONDS * fps))
    cuts = [0]
    for sentence in sentences[1:]:
        cut = round(sentence.start * fps)
        if cut - cuts[-1] >= shortest and n_frames - cut >= shortest:
            cuts.append(cut)
    ends = [*cuts[1:], n_frames]
    scenes = [
        Scene(media[k % len(media)], max(0, cut - fade) if k else 0, end, seed * 101 + k)
        for k, (cut, end) in enumerate(zip(cuts, ends, strict=True))
    ]
    if len(media) > len(scenes):
        logger.info(
            "%d media for %d scenes: the last %d are not shown", len(media), len(scenes), len(media) - len(scenes)
        )
    return scenes


def montage(scenes: Sequence[Scene], size: tuple[int, int], fps: float) -> Iterator[np.ndarray]:
    """The scenes' frames one at a time, crossfaded where they overlap.

    Every medium is opened (and each still prepared) before the first frame, so a broken file
    fails the scene stage rather than the middle of the encode.

    Args:
        scenes: from `plan_scenes`.
        size: `(width, height)` of the frames.
        fps: frame rate.

    Yields:
        `size` RGB uint8 frames, `scenes[-1].end` of them.

    Raises:
        UnreadableMedium: a still or clip does not decode.
    """
    stills = {m: prepare_still(load_still(m), size) for m in {s.medium for s in scenes} if _is_still(m)}
    for medium in {s.medium for s in scenes} - stills.keys():
        _probe_clip(medium)
    return _crossfaded(scenes, size, fps, stills)


def _crossfaded(
    scenes: Sequence[Scene], size: tuple[int, int], fps: float, stills: dict[Path, np.ndarray]
) -> Iterator[np.ndarray]:
    live: list[tuple[Scene, Iterator[np.ndarray]]] = []
    upcoming = list(scenes)
    for i in range(scenes[-1].end if scenes else 0):
        while upcoming and upcoming[0].start == i:
            scene = upcoming.pop(0)
            n = scene.end - scene.start
            frames = ken_burns(stills[scene.medium], size, n, scene.seed, zoom=_ZOOM) if scene.medium in stills else (
                clip_frames(scene.medium, size, fps, n)
            )  # fmt: skip
            live.append((scene, frames))
        live = [(scene, frames) for scene, frames in live if scene.end > i]
        pictures = [next(frames) for _, frames in live]
        if len(pictures) == 1:
            yield pictures[0]
        else:  # the incoming scene over the outgoing one, a little more each frame
            incoming = live[-1][0]
            alpha = (i - incoming.start + 1) / (live[0][0].end - incoming.start + 1)
            yield _blend(pictures[0], pictures[-1], alpha)


def _blend(outgoing: np.ndarray, incoming: np.ndarray, alpha: float) -> np.ndarray:
    import cv2

    return cv2.addWeighted(outgoing, 1 - alpha, incoming, alpha, 0.0)


def _is_still(path: Path) -> bool:
    return path.suffix.lower() in STILL_SUFFIXES


def load_still(path: Path) -> Image.Image:
    """Open a photo upright (as its EXIF orientation says), in RGB.

    Raises:
        UnreadableMedium: not a readable image.
    """
    try:
        with Image.open(path) as img:
            img.load()
            return ImageOps.exif_transpose(img).convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise UnreadableMedium(f"{path.name} is not a readable image") from err


def prepare_still(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """A still made ready for its camera move: a little larger than the frame, filling it entirely.

    Args:
        image: the photo.
        size: `(width, height)` of the video frames.

    Returns:
        An RGB array `_MARGIN` times `size`: the photo cover-cropped, or fitted over a blurred copy
        of itself when its orientation is the other one.
    """
    target = (round(size[0] * _MARGIN), round(size[1] * _MARGIN))
    return fit_frame(np.asarray(image.convert("RGB")), target)


def fit_frame(picture: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A picture resized to fill `size`: cover-cropped, or whole over its blurred self if its orientation differs."""
    h, w = picture.shape[:2]
    if (w - h) * (size[0] - size[1]) < 0:
        return fit_over_blur(picture, size)
    return cover(picture, size)


def cover(picture: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale a picture to cover `size` and crop the overflow, centred (a touch above centre vertically)."""
    h, w = picture.shape[:2]
    scale = max(size[0] / w, size[1] / h)
    crop_w, crop_h = min(w, round(size[0] / scale)), min(h, round(size[1] / scale))
    x0, y0 = (w - crop_w) // 2, int((h - crop_h) * 0.4)  # faces and horizons sit above the middle more often
    return _resize(picture[y0 : y0 + crop_h, x0 : x0 + crop_w], size)


def fit_over_blur(picture: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The whole picture over a dimmed and heavily blurred copy of itself that fills `size`.

    Centred across; placed high rather than centred down a tall frame, clear of the presenter's card
    in the lower part of the frame.
    """
    import cv2

    small = (max(1, size[0] // _BLUR_SHRINK), max(1, size[1] // _BLUR_SHRINK))
    backdrop = cv2.GaussianBlur(cover(picture, small), (0, 0), sigmaX=1.5)
    out = cv2.convertScaleAbs(_resize(backdrop, size), alpha=_BACKDROP_DIM)
    h, w = picture.shape[:2]
    scale = min(size[0] / w, size[1] / h)
    fw, fh = max(1, round(w * scale)), max(1, round(h * scale))
    x0, y0 = (size[0] - fw) // 2, round((size[1] - fh) * 0.2)
    out[y0 : y0 + fh, x0 : x0 + fw] = _resize(picture, (fw, fh))
    return out


def _resize(picture: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    h, w = picture.shape[:2]
    if (w, h) == size:
        return np.ascontiguousarray(picture)
    shrinking = size[0] < w and size[1] < h
    return cv2.resize(picture, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def _probe_clip(path: Path) -> None:
    """Open a clip and decode its first frame.

    Raises:
        UnreadableMedium: no video stream, or nothing decodes.
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UnreadableMedium(f"{path.name} has no video stream")
            next(container.decode(video=0))
    except (av.FFmpegError, StopIteration, UnicodeDecodeError) as err:
        raise UnreadableMedium(f"{path.name} is not a readable video") from err


def clip_frames(path: Path, size: tuple[int, int], fps: float, n_frames: int) -> Iterator[np.ndarray]:
    """`n_frames` frames of a clip at `fps`, from its start: trimmed when longer, looped when shorter.

    Frames are decoded in order, and only those shown are converted and resized (once each); a loop
    decodes the file again rather than holding its frames in memory. The clip's sound is never read.

    Args:
        path: the clip.
        size: `(width, height)` of the output frames (see `fit_frame`).
        fps: the output frame rate (the clip's own rate may differ: frames are repeated or skipped).
        n_frames: how many frames to yield.

    Yields:
        `size` RGB uint8 frames.
    """
    produced = 0
    while produced < n_frames:
        loop_start = produced
        for frame, until in _timed_frames(path):
            picture: np.ndarray | None = None
            # Every output frame whose time falls before the next source frame shows this one.
            while produced < n_frames and (produced - loop_start) / fps < until:
                if picture is None:
                    picture = fit_frame(_upright(frame), size)
                yield picture
                produced += 1
            if produced >= n_frames:
                return
        if produced == loop_start:  # nothing decoded: looping again would never end
            raise UnreadableMedium(f"{path.name}: no frame decodes")


def _timed_frames(path: Path) -> Iterator[tuple[av.VideoFrame, float]]:
    """The clip's frames, each with the time (from the clip's first frame) until which it is shown."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        first: float | None = None
        previous: av.VideoFrame | None = None
        for frame in container.decode(stream):
            if first is None:
                first = frame.time or 0.0
            if previous is not None:
                yield previous, (frame.time or 0.0) - first
            previous = frame
        if previous is not None and first is not None:
            yield previous, (previous.time or 0.0) - first + 1 / rate


def _upright(frame: av.VideoFrame) -> np.ndarray:
    """The frame as RGB, turned the way players show it (phones record sideways and say so in the file)."""
    rgb = frame.to_ndarray(format="rgb24")
    turns = round(frame.rotation / 90) % 4  # counter-clockwise, as ffmpeg displays it
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


class PresenterOverlay:
    """The presenter's card (`scene.presenter_layer`) composited over frames that change under it.

    The layer's premultiplied colour and transparency are computed once, over its bounding box
    only, so each frame costs one multiply-add on the card's corner of the picture.
    """

    def __init__(self, layer: Image.Image) -> None:
        """Prepare an RGBA layer the size of the frames."""
        rgba = np.asarray(layer.convert("RGBA"), np.float32)
        alpha = rgba[..., 3:] / 255.0
        ys, xs = np.nonzero(alpha[..., 0] > 0)
        self._box = (slice(int(ys.min()), int(ys.max()) + 1), slice(int(xs.min()), int(xs.max()) + 1)) if ys.size else (
            slice(0, 0), slice(0, 0)
        )  # fmt: skip
        self._colour = (rgba[..., :3] * alpha)[self._box]
        self._keep = (1.0 - alpha)[self._box]

    def over(self, frame: np.ndarray) -> np.ndarray:
        """A copy of `frame` with the presenter on it (frames may be shared, so never drawn on in place)."""
        out = frame.copy()
        out[self._box] = (out[self._box] * self._keep + self._colour + 0.5).astype(np.uint8)
        return out
