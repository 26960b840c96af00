"""The mouth posed frame by frame: the face mesh's lips, warped to each viseme.

The lip contours are measured once on the portrait with the face mesh and kept in fractions of
the face box (`Lips`), so they follow the box through every crop, zoom and camera move the
renderer applies. `pose_mouth` then warps the mouth region of a frame to a `MouthPose`: each
column between the mouth corners is remapped so the inner edges of both lips move to where the
pose wants them (together for p/b/m, even when the photo's lips are parted; apart, mostly by
dropping the jaw, for vowels), the gap that opens is filled with the mouth's dark inside, and
the lips narrow for rounded vowels and widen for spread ones.
"""

from dataclasses import dataclass

import numpy as np

from gpu_worker.media.facemesh import FaceMesh
from gpu_worker.media.faces import Box
from gpu_worker.media.visemes import MouthPose

# Mesh indices of the lip contours, from one mouth corner to the other (MediaPipe's canonical face).
_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
_INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
_OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
_OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
_COLUMNS = 33  # contour samples across the mouth

_MAX_GAP = 0.5  # the inner-lip gap of a wide-open "a", as a fraction of the mouth width
_UPPER_SHARE = 0.2  # of an opening gap, how much comes from the upper lip rising (the rest: the jaw)
_TUCK_LIFT = 0.06  # f/v: how far the lower lip rises under the upper teeth, in mouth widths
_SPREAD = 0.15  # lip corners move in or out by this fraction of the half-width at spread ±1
_ABOVE, _BELOW, _SIDE = 0.45, 1.0, 0.9  # the warped region around the lips, in mouth widths
_INSIDE = np.array([60, 22, 28], np.float32)  # the dark red-brown inside an open mouth


@dataclass(frozen=True)
class Lips:
    """The lip contours in fractions of the face box: `u` across it, the edges' `v` down it.

    Attributes:
        u: column positions from one outer mouth corner to the other.
        upper: the upper lip's inner edge at each column.
        lower: the lower lip's inner edge at each column.
        top: the upper lip's outer edge at each column.
        bottom: the lower lip's outer edge at each column.
    """

    u: np.ndarray
    upper: np.ndarray
    lower: np.ndarray
    top: np.ndarray
    bottom: np.ndarray

    def openness(self, box: Box) -> float:
        """The widest inner-lip gap over the mouth width in a face box of this size (as the mesh measures it)."""
        return float(np.max(self.lower - self.upper)) * box[3] / max(float(self.u[-1] - self.u[0]) * box[2], 1e-6)


def lips_of(mesh: FaceMesh, box: Box) -> Lips:
    """Measure the lips of a mesh in fractions of its face box (see `faces.anchored_box`).

    Args:
        mesh: the face mesh of the portrait.
        box: the face box of the same face, in the same image.

    Returns:
        The lips, sampled at evenly spaced columns between the outer mouth corners.
    """
    bx, by, bw, bh = box
    points = mesh.points[:, :2]
    left, right = sorted((float(points[61, 0]), float(points[291, 0])))
    xs = np.linspace(left, right, _COLUMNS)

    def edge(indices: tuple[int, ...]) -> np.ndarray:
        contour = points[list(indices)]
        order = np.argsort(contour[:, 0])
        edge: np.ndarray = (np.interp(xs, contour[order, 0], contour[order, 1]) - by) / bh
        return edge

    upper, lower = edge(_INNER_UPPER), edge(_INNER_LOWER)
    lower = np.maximum(lower, upper)  # the mesh may cross its inner edges slightly on closed lips
    return Lips((xs - bx) / bw, upper, lower, edge(_OUTER_UPPER), edge(_OUTER_LOWER))


def pose_mouth(frame: np.ndarray, box: Box, lips: Lips, pose: MouthPose) -> None:
    """Warp the mouth of one frame to a pose, in place.

    Args:
        frame: HxWx3 uint8 RGB frame.
        box: the face box in `frame` coordinates.
        lips: the lips measured on the portrait (`lips_of`).
        pose: the mouth shape to show.
    """
    import cv2

    bx, by, bw, bh = box
    xs = bx + lips.u * bw
    width = float(xs[-1] - xs[0])
    if width < 6:
        return
    cx = float(xs.mean())
    seam = by + (lips.upper + lips.lower) / 2 * bh
    x0, x1 = max(0, int(cx - _SIDE * width)), min(frame.shape[1], int(cx + _SIDE * width) + 1)
    y0 = max(0, int(by + lips.top.min() * bh - _ABOVE * width))
    y1 = min(frame.shape[0], int(by + lips.bottom.max() * bh + _BELOW * width) + 1)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return
    columns = np.arange(x0, x1, dtype=np.float32)
    # Per column: where the inner lip edges are in the portrait, and where the pose puts them.
    src_upper = np.interp(columns, xs, by + lips.upper * bh).astype(np.float32)
    src_lower = np.interp(columns, xs, by + lips.lower * bh).astype(np.float32)
    middle = np.interp(columns, xs, seam).astype(np.float32)
    across = np.clip((columns - cx) / (width / 2), -1.0, 1.0)
    profile = np.sqrt(np.clip(1.0 - across**2, 0.0, 1.0))  # gaps are widest mid-mouth, nil at the corners
    opening = float(np.clip(pose.open, 0, 1)) * (1 - float(np.clip(pose.closed, 0, 1)))
    gap = opening * _MAX_GAP * width * profile * (1.0 - 0.25 * min(pose.spread, 0.0) * -1)  # rounded: a taller "o"
    lift = float(np.clip(pose.tuck, 0, 1)) * _TUCK_LIFT * width * profile
    dst_upper = middle - gap * _UPPER_SHARE
    dst_lower = np.maximum(middle + gap * (1 - _UPPER_SHARE) - lift, dst_upper)
    top, bottom = float(y0), float(y1 - 1)
    rows = np.arange(y0, y1, dtype=np.float32)[:, None]
    # Rows map piecewise: above the upper lip, the gap, below the lower lip (down to the chin).
    eps = 1e-3
    above = top + (rows - top) * (src_upper - top) / np.maximum(dst_upper - top, eps)
    below = src_lower + (rows - dst_lower) * (bottom - src_lower) / np.maximum(bottom - dst_lower, eps)
    had = src_lower - src_upper
    shown = dst_lower - dst_upper
    squeezed = src_upper + (rows - dst_upper) * had / np.maximum(shown, eps)  # closing: the inside shrinks away
    # Opening wider than the photo: the upper teeth stay with the upper lip, the lower ones go
    # with the jaw, and the rows between them are the dark inside of the mouth.
    upper_teeth, lower_teeth = rows - dst_upper < had / 2, dst_lower - rows < had / 2
    stretched = np.where(
        upper_teeth,
        src_upper + (rows - dst_upper),
        np.where(lower_teeth, src_lower - (dst_lower - rows), src_upper + had / 2),
    )
    inside = np.where(shown > had, stretched, squeezed)
    map_y = np.where(rows <= dst_upper, above, np.where(rows <= dst_lower, inside, below))
    # Spread and rounding: columns move out or in around the mouth's centre, fading away from the lips.
    scale = 1.0 + _SPREAD * float(np.clip(pose.spread, -1, 1))
    # Rounding pulls the corners themselves in (a rounded mouth is narrower corner to corner), the
    # pull fading from the corners to the edges of the warped region; spreading keeps the corners
    # where they are (stretching them outwards would drag the dark corner creases onto the cheeks).
    # Both fade away from the lip line.
    near = np.exp(-(((rows - middle) / (0.45 * width)) ** 2))
    if scale < 1:
        reach = np.clip((_SIDE * width - np.abs(columns - cx)) / ((_SIDE - 0.5) * width), 0.0, 1.0)
    else:
        reach = profile**0.5
    map_x = columns[None, :] + (columns[None, :] - cx) * (1 / scale - 1) * near * reach[None, :]
    region = cv2.remap(
        frame, map_x.astype(np.float32), map_y.astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    # The opened gap shows the inside of the mouth between the teeth, darker towards its middle.
    margin = np.minimum(np.minimum(rows - dst_upper, dst_lower - rows) - had / 2, shown / 2)
    # It fades out before the corners, where real lips meet at a soft crease, not a dark slit.
    corners = np.clip((profile - 0.25) / 0.4, 0.0, 1.0)
    alpha = (np.clip(margin / 1.5, 0.0, 1.0) * (rows > dst_upper) * (rows < dst_lower) * corners)[..., None]
    out = region.astype(np.float32) * (1 - alpha * 0.9) + _INSIDE * alpha * 0.9
    frame[y0:y1, x0:x1] = np.clip(out, 0, 255).astype(np.uint8)
