"""MuseTalk 1.5 and XTTS v2 from the catalogue: found and loaded where `pull` puts them.

The real entries pull from a fake Hub serving tiny models under the real repositories' names and
commits (MuseTalk without its pins: the tiny files are not the published ones).
"""

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from temporalio.exceptions import ApplicationError

from core.settings import GpuSettings, Settings
from gpu_worker.backends import build_backends
from gpu_worker.backends.musetalk import MuseTalk, MuseTalkModels
from gpu_worker.backends.xtts import XttsSpeech, voice_cloner
from gpu_worker.models.catalogue import MUSETALK, XTTS, Entry, select
from gpu_worker.models.cli import main
from gpu_worker.models.errors import USAGE
from gpu_worker.models.lock import Lock
from gpu_worker.models.pull import pull
from gpu_worker.worker import manifest
from tests.gpu_worker.backends.test_musetalk import save_tiny_musetalk

from .entries import noise
from .fake_hub import FakeHub, Repo


def settings(**gpu: Any) -> Settings:
    return Settings(_env_file=None, gpu=GpuSettings(**gpu))  # type: ignore[call-arg]


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def unpinned(entry: Entry) -> Entry:
    """The entry without the published files' sizes and digests (the tiny models differ from them)."""
    return replace(entry, hub=tuple(replace(repo, pins=()) for repo in entry.repos))


def serve_musetalk(hub: FakeHub, tiny: Path) -> None:
    """Each repository with the tiny files the entry pulls, beside files of the real repositories it leaves out."""
    [entry] = select([MUSETALK])
    decoys = {
        "TMElyralab/MuseTalk": {"musetalk/pytorch_model.bin": noise(2048), "README.md": b"# MuseTalk"},
        "stabilityai/sd-vae-ft-mse": {"diffusion_pytorch_model.bin": noise(2048, 1)},
        "openai/whisper-tiny": {"pytorch_model.bin": noise(2048, 2), "tokenizer.json": b"{}"},
    }
    for repo in entry.repos:
        base = tiny / repo.into if repo.into else tiny
        served = {p.relative_to(base).as_posix(): p.read_bytes() for p in base.rglob("*") if p.is_file()}
        if not repo.into:
            served = {path: data for path, data in served.items() if path.startswith("musetalkV15/")}
        hub.repos[repo.repo] = Repo(served | decoys[repo.repo], commit=repo.revision)


@pytest.fixture(scope="module")
def tiny_musetalk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_musetalk(tmp_path_factory.mktemp("tiny") / "musetalk")


def test_pulled_musetalk_is_found_in_the_catalogue_layout_loaded_and_advertised(
    hub: FakeHub, models_dir: Path, tiny_musetalk: Path
) -> None:
    serve_musetalk(hub, tiny_musetalk)
    [entry] = select([MUSETALK])

    pull(unpinned(entry), models_dir, accepted=[MUSETALK], endpoint=hub.url)

    folder = models_dir / "musetalk"
    pulled = files_of(folder)
    assert set(pulled) == {
        "musetalkV15/musetalk.json", "musetalkV15/unet.pth",
        "sd-vae/config.json", "sd-vae/diffusion_pytorch_model.safetensors",
        "whisper/config.json", "whisper/preprocessor_config.json", "whisper/model.safetensors",
    }  # fmt: skip
    assert pulled == {rel: (tiny_musetalk / rel).read_bytes() for rel in pulled}
    config = settings(models_dir=models_dir)
    backends = build_backends(config)
    assert isinstance(backends.lipsync, MuseTalk)
    files = backends.lipsync.files
    assert (files.unet_weights, files.vae_dir, files.whisper_dir) == (
        folder / "musetalkV15" / "unet.pth", folder / "sd-vae", folder / "whisper",
    )  # fmt: skip
    assert manifest(config, "gpu-1", backends).runtimes["svd"]["lipsync"][0] == "musetalk-1.5"
    models = MuseTalkModels.load(files)  # the pulled files are all the backend needs
    assert models.encoder.config.d_model == models.unet.config.cross_attention_dim


def test_musetalk_is_chosen_by_app_gpu_backends_like_every_catalogued_backend(
    models_dir: Path, tiny_musetalk: Path, tmp_path: Path
) -> None:
    shutil.copytree(tiny_musetalk, models_dir / "musetalk")
    assert build_backends(settings(models_dir=models_dir, backends=[])).lipsync is None
    assert build_backends(settings(models_dir=models_dir, backends=[MUSETALK])).lipsync is not None
    own = build_backends(settings(models_dir=tmp_path / "empty", musetalk_dir=models_dir / "musetalk")).lipsync
    assert isinstance(own, MuseTalk) and own.files.vae_dir == models_dir / "musetalk" / "sd-vae"
    with pytest.raises(ApplicationError, match="musetalk is enabled by APP_GPU__BACKENDS .* pull musetalk"):
        build_backends(settings(models_dir=tmp_path / "empty", backends=[MUSETALK]))


def test_xtts_is_refused_without_accepting_its_licence(
    hub: FakeHub, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--models-dir", str(models_dir), "pull", XTTS], endpoint=hub.url)  # the real catalogue

    assert code == USAGE
    err = capsys.readouterr().err
    assert "Coqui Public Model License 1.0.0" in err and "commercial use: no" in err
    assert f"--accept-license {XTTS}" in err
    assert hub.seen == [] and not (models_dir / "xtts").exists()


def test_pulled_xtts_is_the_speech_backend_and_clones_voices(
    hub: FakeHub, models_dir: Path, xtts_model_dir: Path
) -> None:
    [entry] = select([XTTS])
    [repo] = entry.repos
    served = files_of(xtts_model_dir) | {"speakers_xtts.pth": noise(1024), "dvae.pth": noise(1024, 1)}
    hub.repos[repo.repo] = Repo(served, commit=repo.revision)

    record = pull(entry, models_dir, accepted=[XTTS], endpoint=hub.url)  # the real entry, pinned commit and all

    assert record.source == f"hf:coqui/XTTS-v2@{repo.revision}"
    assert set(files_of(models_dir / "xtts")) == {"config.json", "model.pth", "vocab.json"}
    backends = build_backends(settings(models_dir=models_dir))
    assert isinstance(backends.speech, XttsSpeech) and backends.speech.model_dir == models_dir / "xtts"
    assert voice_cloner(backends.speech) is backends.speech
    rate = backends.speech.sample_rate
    noise_clip = np.random.default_rng(0).uniform(-0.3, 0.3, 3 * rate).astype(np.float32)
    clone = backends.speech.condition([noise_clip], rate)  # loads the model from the pulled files
    assert clone.engine == "coqui-xtts" and np.isfinite(clone.speaker_embedding).all()
    assert XTTS in Lock(models_dir).records


def test_an_xtts_setting_and_the_coqui_setting_both_still_work(
    models_dir: Path, xtts_model_dir: Path, tmp_path: Path
) -> None:
    own = build_backends(settings(models_dir=models_dir, xtts_model_dir=xtts_model_dir)).speech
    assert isinstance(own, XttsSpeech) and own.model_dir == xtts_model_dir
    old_style = build_backends(settings(coqui_model_dir=xtts_model_dir)).speech
    assert isinstance(old_style, XttsSpeech), "APP_GPU__COQUI_MODEL_DIR at an XTTS folder, as before"

    vits = tmp_path / "vits"
    vits.mkdir()
    (vits / "config.json").write_text('{"model": "vits"}')
    for name in ("model.pth", "vocab.json"):
        (vits / name).write_bytes(b"x")
    with pytest.raises(ApplicationError, match=r"holds another model: its config.json says \"model\": 'vits'"):
        build_backends(settings(xtts_model_dir=vits))
