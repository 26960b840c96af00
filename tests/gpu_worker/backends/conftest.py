"""Fixtures for the model-backend tests: offline Hub, one torch thread, tiny models in a models dir, a trained LoRA."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports huggingface_hub

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import skimage.data
import torch

from gpu_worker.training.components import load_sd, save_tiny_sd
from gpu_worker.training.lora import PRESETS, LoraTrainer
from schemas.tasks import TrainLoraInput
from tests.gpu_worker.training.helpers import FakeStore, encode_image

from .fakes import save_tiny_esrgan, save_tiny_svd, save_tiny_vits

PROFILE = "prof-0a1b2c3d"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    yield


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models run several times faster on one thread than with threads spinning on busy cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`APP_GPU__MODELS_DIR` with a tiny `stable-diffusion/` and `stable-video-diffusion/`."""
    root = tmp_path_factory.mktemp("models")
    save_tiny_sd(root / "stable-diffusion")
    save_tiny_svd(root / "stable-video-diffusion")
    return root


@pytest.fixture(scope="session")
def esrgan_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_esrgan(tmp_path_factory.mktemp("esrgan") / "RealESRGAN_x4plus.pth")


@pytest.fixture(scope="session")
def coqui_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`APP_GPU__COQUI_MODEL_DIR`: a tiny random VITS with two speakers (`alice`, `bob`), graphemes, 16 kHz."""
    return save_tiny_vits(tmp_path_factory.mktemp("coqui") / "vits")


class _Beats:
    def update(self, stage: str, percent: float, **extra: Any) -> None:
        pass

    def cancelled(self) -> bool:
        return False


@pytest.fixture(scope="session")
def lora_store(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> FakeStore:
    """A store holding a LoRA trained by `gpu_worker.training` on the tiny SD in `models_dir` (and its lora.json)."""
    store = FakeStore()
    store.put_bytes("uploads", "local/astronaut.jpg", encode_image(skimage.data.astronaut(), quality=90))
    preset = dataclasses.replace(PRESETS["tiny"], steps=20, checkpoint_every=20, learning_rate=5e-3)
    inp = TrainLoraInput(
        job_id="job-lora", node_id="train_lora", profile_id=PROFILE, images=["s3://uploads/local/astronaut.jpg"]
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(PRESETS, "tiny", preset)
        trainer = LoraTrainer(lambda _preset: load_sd(models_dir / "stable-diffusion"))
        trainer.train(inp, store, tmp_path_factory.mktemp("train"), _Beats())
    return store
