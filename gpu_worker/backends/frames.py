"""Frames in and out of model backends: a short clip looped to the speech, a tool's video resampled to our frames."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from gpu_worker.backends.base import Upscaler, fit


def pingpong(clip: Sequence[np.ndarray], n: int, fps: float, clip_fps: float) -> Iterator[np.ndarray]:
    """`n` frames at `fps` of a clip played at `clip_fps`, forwards then backwards, for as long as needed.

    A clip of a few seconds (SVD makes 14-25 frames) then covers speech of any length without a jump.
    """
    k = len(clip)
    period = max(1, 2 * k - 2)
    for i in range(n):
        q = int(i * clip_fps / fps) % period
        yield clip[q if q < k else period - q]


def read_frames(
    path: Path, size: tuple[int, int], fps: float, n: int, upscaler: Upscaler | None = None
) -> Iterator[np.ndarray]:
    """Exactly `n` frames at `fps` from a video, fitted to `size` (the last frame held if the video is short).

    Frames are picked by timestamp, so a tool's own frame rate (SadTalker: 25) maps onto ours.

    Args:
        path: The video a backend wrote.
        size: `(width, height)` of our frames.
        fps: Our frame rate.
        n: How many frames to yield.
        upscaler: Real-ESRGAN for videos smaller than `size`.

    Yields:
        HxWx3 uint8 RGB frames.
    """
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded = container.decode(stream)
        pending = next(decoded, None)
        start = pending.time if pending is not None and pending.time is not None else 0.0
        chosen, chosen_index, current_index = None, -1, -1
        current: np.ndarray | None = None
        for i in range(n):
            t = start + i / fps
            while pending is not None and (chosen is None or (pending.time or 0.0) <= t + 1e-6):
                chosen, chosen_index = pending, chosen_index + 1
                pending = next(decoded, None)
            if chosen is None:
                raise ValueError(f"{path} has no video frames")
            if chosen_index != current_index:  # convert (and upscale) only the frames actually shown
                current = np.asarray(fit(Image.fromarray(chosen.to_ndarray(format="rgb24")), size, upscaler))
                current_index = chosen_index
            assert current is not None
            yield current
