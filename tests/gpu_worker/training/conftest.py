"""Fixtures for the training tests: offline Hugging Face, a tiny SD saved to disk, real photos."""

import io
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports huggingface_hub

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    yield


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gpu_worker.training.components import save_tiny_sd

    return save_tiny_sd(tmp_path_factory.mktemp("models") / "stable-diffusion")


def encode_image(pixels: np.ndarray, fmt: str = "JPEG", **save_args: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt, **save_args)
    return buf.getvalue()


@pytest.fixture(scope="session")
def astronaut_jpeg() -> bytes:
    return encode_image(skimage.data.astronaut(), quality=90)
