"""Training images: download, validate (decodable, big enough), orient, center-crop and resize."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from gpu_worker.training.errors import InvalidInputError
from gpu_worker.training.inputs import Store, fetch

logger = logging.getLogger(__name__)

MIN_IMAGE_SIDE = 64
MAX_IMAGES = 50


def preprocess_image(path: Path, resolution: int, name: str) -> Image.Image:
    """Decode an image, apply its EXIF orientation, center-crop it square and resize it.

    Args:
        path: The local file.
        resolution: Output side in pixels.
        name: How errors name the image (its URI).

    Returns:
        An RGB image of `resolution` × `resolution`.

    Raises:
        InvalidInputError: The file is not a decodable image or is smaller than 64×64.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                opened.load()
                image = ImageOps.exif_transpose(opened).convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as err:
        raise InvalidInputError(f"{name} is not a decodable image: {err}") from err
    except Image.DecompressionBombError as err:
        raise InvalidInputError(f"{name} is too large to decode: {err}") from err
    width, height = image.size
    if min(width, height) < MIN_IMAGE_SIDE:
        raise InvalidInputError(
            f"{name} is {width}×{height}; training images must be at least {MIN_IMAGE_SIDE}×{MIN_IMAGE_SIDE}"
        )
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = image.crop((left, top, left + side, top + side))
    return square.resize((resolution, resolution), Image.Resampling.BICUBIC, reducing_gap=3.0)


def load_images(store: Store, uris: list[str], dest_dir: Path, resolution: int) -> list[Image.Image]:
    """Download and preprocess every training image, failing on the first bad one.

    Args:
        store: Object storage.
        uris: The images' `s3://` URIs.
        dest_dir: Local scratch directory.
        resolution: Training resolution.

    Returns:
        The preprocessed images, in input order.

    Raises:
        InvalidInputError: No images, too many, or one is missing, undecodable or too small.
    """
    if not uris:
        raise InvalidInputError("LoRA training needs at least one image")
    if len(uris) > MAX_IMAGES:
        raise InvalidInputError(f"LoRA training takes at most {MAX_IMAGES} images, got {len(uris)}")
    images = [preprocess_image(fetch(store, uri, dest_dir, i), resolution, uri) for i, uri in enumerate(uris)]
    logger.info("prepared %d training images at %dpx", len(images), resolution)
    return images


def to_array(images: list[Image.Image]) -> np.ndarray:
    """Stack images as float32 `(n, 3, h, w)` in [-1, 1], the VAE's input range."""
    stacked = np.stack([np.asarray(image, dtype=np.float32) for image in images])
    return (stacked / 127.5 - 1.0).transpose(0, 3, 1, 2).copy()
