"""Fixtures for the training tests: offline Hugging Face, a tiny SD saved to disk, real photos."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports huggingface_hub

from collections.abc import Iterator
from pathlib import Path

import pytest
import skimage.data

from .helpers import encode_image


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    yield


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gpu_worker.training.components import save_tiny_sd

    return save_tiny_sd(tmp_path_factory.mktemp("models") / "stable-diffusion")


@pytest.fixture(scope="session")
def astronaut_jpeg() -> bytes:
    return encode_image(skimage.data.astronaut(), quality=90)
