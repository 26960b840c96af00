"""Media vocabulary shared by the API, the planner and the renderer."""

from typing import Final, Literal

Variant = Literal["svd", "sadtalker"]
Resolution = Literal["480p", "576p", "720p", "1080p"]
AspectRatio = Literal["16:9", "9:16", "1:1"]
JobMode = Literal["generate", "train_and_generate", "train_only"]
CaptionStyle = Literal["plain", "karaoke"]
CaptionPosition = Literal["bottom", "top", "center"]
MUSIC_BEDS: Final[tuple[str, ...]] = ("none", "calm", "upbeat")  # or the s3://uploads/<user>/… URI of own audio

RESOLUTION_HEIGHTS: Final[dict[str, int]] = {"480p": 480, "576p": 576, "720p": 720, "1080p": 1080}


def frame_size(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """Width and height (both even, as H.264 needs) for a resolution and aspect ratio.

    The resolution names the short side, so `9:16` at 720p is 720×1280.
    """
    short = RESOLUTION_HEIGHTS[resolution]
    w_ratio, h_ratio = (int(x) for x in aspect_ratio.split(":"))
    if w_ratio >= h_ratio:
        width, height = short * w_ratio / h_ratio, float(short)
    else:
        width, height = float(short), short * h_ratio / w_ratio
    return int(round(width / 2)) * 2, int(round(height / 2)) * 2
