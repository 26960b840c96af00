"""In-place facial edits on one frame: opening the mouth and closing the eyes.

Both work on a small region around the face with OpenCV/numpy, so they cost well under a
millisecond per frame even at 1080p.
"""

import logging

import numpy as np

from gpu_worker.media.faces import EYE_LINE, EYE_X, LIP_LINE, Box

logger = logging.getLogger(__name__)

_MOUTH_INSIDE = np.array([52, 18, 24], np.float32)  # dark red-brown of an open mouth
_MAX_DROP = 0.065  # widest jaw drop, as a fraction of the face height


def _clip_box(x0: int, y0: int, x1: int, y1: int, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    return max(0, x0), max(0, y0), min(shape[1], x1), min(shape[0], y1)


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    out: np.ndarray = t * t * (3 - 2 * t)
    return out


def open_mouth(frame: np.ndarray, face: Box, amount: float) -> None:
    """Drop the jaw and darken the gap between the lips, in place.

    Everything below the lip line (lower lip, chin) slides down by up to `_MAX_DROP` of the
    face height, fading out towards the neck and the cheeks; the opened gap is filled with a
    soft dark ellipse, which reads as an open mouth at video sizes.

    Args:
        frame: HxWx3 uint8 RGB frame, modified in place.
        face: the face box in `frame` coordinates (its lip seam at `faces.LIP_LINE`).
        amount: 0 (closed) to 1 (wide open).
    """
    import cv2

    fx, fy, fw, fh = face
    drop = float(np.clip(amount, 0.0, 1.0)) * _MAX_DROP * fh
    if drop < 0.5 or fw < 8:
        return
    lip = fy + LIP_LINE * fh
    x0, y0, x1, y1 = _clip_box(
        int(fx + 0.1 * fw), int(lip - 0.12 * fh), int(fx + 0.9 * fw), int(lip + 0.55 * fh), frame.shape
    )
    if x1 - x0 < 4 or y1 - y0 < 4:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    cx = fx + fw / 2
    across = np.cos(np.clip((xx - cx) / (0.4 * fw), -1, 1) * np.pi / 2) ** 2
    down = _smoothstep((yy - (lip - 0.015 * fh)) / (0.025 * fh)) * np.clip(1 - (yy - lip) / (0.5 * fh), 0, 1)
    shift = drop * across * down
    region = cv2.remap(frame, xx, yy - shift, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # The gap between the lips: a feathered ellipse whose height follows the jaw.
    ax, ay = 0.2 * fw * (0.85 + 0.15 * amount), max(drop * 0.55, 1.0)
    r = np.hypot((xx - cx) / ax, (yy - (lip + drop * 0.45)) / ay)
    alpha = (np.clip((1.0 - r) / 0.5, 0.0, 1.0) * 0.9)[..., None]
    # Keep a little of the stretched texture so the inside reads as shadowed teeth, not a flat hole.
    inside = region.astype(np.float32) * 0.22 + _MOUTH_INSIDE * 0.78
    out = region.astype(np.float32) * (1 - alpha) + inside * alpha
    frame[y0:y1, x0:x1] = np.clip(out, 0, 255).astype(np.uint8)


def close_eyes(frame: np.ndarray, face: Box, amount: float) -> None:
    """Blink: cover both eyes with eyelid skin taken from above and below them, in place.

    Args:
        frame: HxWx3 uint8 RGB frame, modified in place.
        face: the face box in `frame` coordinates (its eye centres at `faces.EYE_X`, `faces.EYE_LINE`).
        amount: 0 (open) to 1 (closed).
    """
    fx, fy, fw, fh = face
    amount = float(np.clip(amount, 0.0, 1.0))
    if amount <= 0.02 or fw < 8:
        return
    rx, ry = 0.115 * fw, 0.055 * fh
    ey = fy + EYE_LINE * fh
    for ex in (fx + EYE_X[0] * fw, fx + EYE_X[1] * fw):
        x0, y0, x1, y1 = _clip_box(
            int(ex - rx * 1.4), int(ey - ry * 1.4), int(ex + rx * 1.4) + 1, int(ey + ry * 1.5) + 1, frame.shape
        )
        if x1 - x0 < 3 or y1 - y0 < 3:
            continue
        region = frame[y0:y1, x0:x1].astype(np.float32)
        t = np.linspace(0.0, 1.0, y1 - y0, dtype=np.float32)[:, None, None]
        lid = region[:2].mean(axis=0) * (1 - t) + region[-2:].mean(axis=0) * t  # skin from above to below the eye
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        u = np.clip((xx - ex) / rx, -1, 1)
        arc = ey + ry * (0.15 + 0.35 * (1 - u * u))  # a closed lid's lash line curves downwards
        lash = np.exp(-(((yy - arc) / max(ry * 0.18, 0.6)) ** 2)) * (1 - u**4) * 0.5
        lid = lid * (1 - lash[..., None])
        r = np.hypot((xx - ex) / rx, (yy - ey) / ry)
        alpha = (np.clip((1.3 - r) / 0.35, 0.0, 1.0) * amount)[..., None]
        frame[y0:y1, x0:x1] = np.clip(region * (1 - alpha) + lid * alpha, 0, 255).astype(np.uint8)
