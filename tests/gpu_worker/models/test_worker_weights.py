"""The worker and the pulled weights: backends load what `pull` put in the models folder, `APP_GPU__BACKENDS`
chooses among them, and start-up checks sizes against `models.lock` (never hashes, never downloads)."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from temporalio.exceptions import ApplicationError

from core.settings import GpuSettings, Settings
from gpu_worker.backends import build_backends
from gpu_worker.backends.base import SceneRequest
from gpu_worker.models.catalogue import ESRGAN, SD15, WAV2LIP
from gpu_worker.models.lock import Lock, LockedFile, LockRecord
from gpu_worker.models.pull import pull
from gpu_worker.training.components import load_sd, save_tiny_sd
from gpu_worker.worker import manifest
from tests.gpu_worker.backends.fakes import fake_wav2lip, save_tiny_esrgan

from .entries import real_esrgan_from, real_sd15_from
from .fake_hub import FakeHub, Repo


def settings(**gpu: Any) -> Settings:
    return Settings(_env_file=None, gpu=GpuSettings(**gpu))  # type: ignore[call-arg]


def missing_weights(gpu: dict[str, Any]) -> str:
    with pytest.raises(ApplicationError) as info:
        build_backends(settings(**gpu))
    assert info.value.type == "MissingWeights" and info.value.non_retryable
    return info.value.message


def lock_one(models_dir: Path, name: str, rel: str, size: int) -> None:
    lock = Lock(models_dir)
    lock.records[name] = LockRecord("url:https://example.invalid/w", {rel: LockedFile(size, "0" * 64)}, "2026-01-01")
    lock.save()


def test_pulled_stable_diffusion_is_advertised_and_paints(hub: FakeHub, models_dir: Path, tmp_path: Path) -> None:
    tiny = save_tiny_sd(tmp_path / "tiny-sd")
    files = {p.relative_to(tiny).as_posix(): p.read_bytes() for p in tiny.rglob("*") if p.is_file()}
    hub.repos["test/tiny-sd"] = Repo(files)
    pull(real_sd15_from("test/tiny-sd"), models_dir, accepted=[SD15], endpoint=hub.url)
    config = settings(models_dir=models_dir, sd_steps=2, sd_resolution=32)

    backends = build_backends(config)

    assert manifest(config, "gpu-1", backends).runtimes["svd"]["scene"][0] == "diffusers-sd"
    assert backends.scene is not None
    image = backends.scene.generate(SceneRequest("a quiet library", (64, 36), seed=1), lambda _p: None)
    assert image.size == (56, 32)
    assert load_sd(models_dir).source == str(models_dir / "stable-diffusion"), "also the LoRA training base"


def test_pulled_real_esrgan_is_found_without_its_own_setting(hub: FakeHub, models_dir: Path, tmp_path: Path) -> None:
    hub.assets["RealESRGAN_x4plus.pth"] = save_tiny_esrgan(tmp_path / "w.pth").read_bytes()
    pull(real_esrgan_from(f"{hub.url}/assets/RealESRGAN_x4plus.pth"), models_dir)

    backends = build_backends(settings(models_dir=models_dir, esrgan_tile=0))

    assert backends.upscaler is not None
    assert backends.upscaler.weights == models_dir / "esrgan" / "RealESRGAN_x4plus.pth"  # type: ignore[attr-defined]
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (6, 10, 3), dtype=np.uint8))
    assert backends.upscaler.upscale(image).size == (40, 24)


def test_pulled_files_whose_size_changed_stop_the_worker_naming_the_pull(models_dir: Path) -> None:
    (models_dir / "esrgan").mkdir(parents=True)
    (models_dir / "esrgan" / "RealESRGAN_x4plus.pth").write_bytes(b"cut short")
    lock_one(models_dir, ESRGAN, "RealESRGAN_x4plus.pth", 67_000_000)

    message = missing_weights({"models_dir": models_dir})

    assert "RealESRGAN_x4plus.pth has 9 bytes, not 67000000" in message
    assert "python -m gpu_worker.models pull esrgan" in message


def test_a_backend_the_setting_names_without_its_files_stops_the_worker(models_dir: Path) -> None:
    message = missing_weights({"models_dir": models_dir, "backends": [ESRGAN]})
    assert "esrgan is enabled by APP_GPU__BACKENDS" in message and "pull esrgan" in message
    assert "unknown model 'sd16'" in missing_weights({"models_dir": models_dir, "backends": ["sd16"]})


def test_the_setting_chooses_among_the_backends_whose_files_are_there(models_dir: Path) -> None:
    save_tiny_esrgan(models_dir / "esrgan" / "RealESRGAN_x4plus.pth")
    (models_dir / "stable-diffusion").mkdir()  # not even a model: not looked at unless enabled

    only_esrgan = build_backends(settings(models_dir=models_dir, backends=[ESRGAN]))
    assert only_esrgan.upscaler is not None and not only_esrgan.scenes
    none = build_backends(settings(models_dir=models_dir, backends=[]))
    assert not none.configured
    with pytest.raises(ApplicationError, match="no model_index.json"):
        build_backends(settings(models_dir=models_dir))  # unset: every folder there is used, so it is checked


def test_subprocess_backends_need_their_checkout_as_well_as_their_weights(models_dir: Path, tmp_path: Path) -> None:
    (models_dir / "wav2lip").mkdir(parents=True)
    (models_dir / "wav2lip" / "wav2lip_gan.pth").write_bytes(b"pulled weights")

    assert build_backends(settings(models_dir=models_dir)).lipsync is None  # weights alone: not used
    assert "APP_GPU__WAV2LIP_DIR" in missing_weights({"models_dir": models_dir, "backends": [WAV2LIP]})

    checkout = fake_wav2lip(tmp_path / "Wav2Lip")
    lipsync = build_backends(settings(models_dir=models_dir, wav2lip_dir=checkout)).lipsync
    assert lipsync is not None
    assert lipsync.checkpoint == (models_dir / "wav2lip" / "wav2lip_gan.pth").resolve()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("value", "names"),
    [("sd15,esrgan", ["sd15", "esrgan"]), (' ["sd15"] ', ["sd15"]), ("none", []), ("[]", []), ("", None)],
)
def test_app_gpu_backends_takes_names_a_json_list_or_none(
    monkeypatch: pytest.MonkeyPatch, value: str, names: list[str] | None
) -> None:
    monkeypatch.setenv("APP_GPU__BACKENDS", value)
    assert Settings(_env_file=None).gpu.backends == names  # type: ignore[call-arg]
