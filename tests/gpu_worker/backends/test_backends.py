"""Backends from settings, the manifest's runtimes, and `render_video` routing stages to the backends.

The renders use every backend at once on tiny models (Stable Diffusion with a profile LoRA,
SVD, Real-ESRGAN) and the fake Wav2Lip/SadTalker checkouts, through the real activity.
"""

import logging
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from core.settings import GpuSettings, Settings
from gpu_worker.backends import Backends, build_backends
from gpu_worker.backends.render import EMBEDDED_RUNTIMES
from gpu_worker.media.encode import probe
from gpu_worker.rendering import RenderActivities
from gpu_worker.training.lora import lora_uri
from gpu_worker.worker import manifest
from schemas.tasks import ProfileRef, RenderInput, RenderPlan, RenderResult, RenderSettings, Script
from tests.gpu_worker.training.helpers import FakeStore

from .conftest import PROFILE
from .fakes import fake_sadtalker, fake_wav2lip

NARRATIVE = "Hello there. Books are quiet friends."
TINY = {"sd_steps": 2, "sd_resolution": 32, "svd_num_frames": 3, "svd_steps": 2, "svd_resolution": 32,
        "svd_decode_chunk_size": 2, "esrgan_tile": 0}  # fmt: skip


def settings(**gpu: Any) -> Settings:
    return Settings(_env_file=None, gpu=GpuSettings(**TINY | gpu))


@pytest.fixture(scope="module")
def checkouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkouts")
    return {"wav2lip": fake_wav2lip(root / "Wav2Lip"), "sadtalker": fake_sadtalker(root / "SadTalker")}


@pytest.fixture(scope="module")
def everything(models_dir: Path, esrgan_weights: Path, checkouts: dict[str, Path]) -> Settings:
    return settings(
        models_dir=models_dir,
        wav2lip_dir=checkouts["wav2lip"],
        sadtalker_dir=checkouts["sadtalker"],
        esrgan_weights=esrgan_weights,
    )


@pytest.fixture(scope="module")
def backends(everything: Settings) -> Backends:
    return build_backends(everything)


def test_nothing_configured_means_embedded_runtimes_only(tmp_path: Path) -> None:
    empty = build_backends(settings(models_dir=tmp_path))  # a models dir without SD/SVD folders
    assert not empty.configured and empty.available() == {}
    for advertised in (manifest(settings(), "gpu-1").runtimes, manifest(settings(), "gpu-1", empty).runtimes):
        assert {v: {s: r for s, r in stages.items() if s != "speech"} for v, stages in advertised.items()} == (
            EMBEDDED_RUNTIMES
        )
        assert advertised["svd"]["speech"] == ["piper:en_US-joe-medium", "espeak-ng"]
        assert "upscale" not in advertised["svd"], "nothing is upscaled without an upscaler"


def test_manifest_advertises_configured_backends_before_the_embedded_runtimes(everything, backends) -> None:
    runtimes = manifest(everything, "gpu-1", backends).runtimes
    svd, sadtalker = runtimes["svd"], runtimes["sadtalker"]
    assert svd["scene"] == ["diffusers-sd", "procedural", "uploaded-media"]
    assert svd["image_to_video"] == ["diffusers-svd", "ken-burns", "media-montage"]
    assert svd["lipsync"] == ["wav2lip", "embedded-visemes"]
    assert sadtalker["talking_head"] == ["sadtalker", "embedded-face-mesh"]
    assert svd["upscale"] == sadtalker["upscale"] == ["realesrgan"]
    assert "talking_head" not in svd and "scene" not in sadtalker, "each variant lists only its own stages"
    assert svd["speech"] == ["piper:en_US-joe-medium", "espeak-ng"] and svd["mux"] == ["ffmpeg"]


def test_an_unreachable_comfyui_is_not_advertised() -> None:
    backends = build_backends(settings(comfyui_url="http://127.0.0.1:9"))
    assert backends.configured and backends.scene is None
    assert manifest(settings(), "gpu-1", backends).runtimes["svd"]["scene"] == ["procedural", "uploaded-media"]


@pytest.mark.parametrize(
    ("field", "path", "named"),
    [
        ("wav2lip_dir", "nowhere/Wav2Lip", "nowhere/Wav2Lip"),
        ("sadtalker_dir", "nowhere/SadTalker", "nowhere/SadTalker"),
        ("esrgan_weights", "nowhere/RealESRGAN_x4plus.pth", "nowhere/RealESRGAN_x4plus.pth"),
        ("models_dir", "half", "half/stable-diffusion"),
    ],
)
def test_a_configured_but_broken_path_stops_the_worker_naming_it(tmp_path: Path, field, path, named) -> None:
    (tmp_path / "half" / "stable-diffusion").mkdir(parents=True)  # a folder that is not a diffusers model
    with pytest.raises(ApplicationError) as info:
        build_backends(settings(**{field: tmp_path / path}))
    assert info.value.type == "MissingWeights" and info.value.non_retryable
    assert str(tmp_path / named) in info.value.message


# ---------------------------------------------------------------- renders through the activity


def render_input(variant: str, lora_id: str | None = None) -> RenderInput:
    options = RenderSettings(duration_seconds=5, resolution="480p", aspect_ratio="16:9", fps=25, captions=False)
    return RenderInput(
        job_id="job-backends",
        node_id="render",
        pipeline=RenderPlan(variant=variant, params={**options.model_dump()}),
        script=Script(stage="A quiet library with tall wooden shelves", narrative=NARRATIVE),
        profile=ProfileRef(id=PROFILE, lora_id=lora_id),
        options=options,
    )


def run(
    backends: Backends, store: FakeStore, work: Path, inp: RenderInput
) -> tuple[RenderResult, list[dict[str, Any]]]:
    beats: list[dict[str, Any]] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details[0])
    return env.run(RenderActivities(store, work, backends).render_video, inp), beats  # type: ignore[arg-type]


def saved(store: FakeStore, uri: str, path: Path) -> Path:
    path.write_bytes(store.get_bytes(uri))
    return path


def corner_color(video: Path) -> np.ndarray:
    with av.open(str(video)) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    return frame[10:60, 10:100].reshape(-1, 3).mean(axis=0)  # type: ignore[no-any-return]


def test_svd_variant_runs_every_stage_on_its_backend(backends, lora_store, tmp_path: Path, caplog) -> None:
    store = lora_store.copy()
    with caplog.at_level(logging.INFO, logger="gpu_worker.backends"):
        result, beats = run(backends, store, tmp_path / "work", render_input("svd", lora_uri(PROFILE)))
    assert "LoRA" in caplog.text and "loaded" in caplog.text, "the profile's LoRA went into Stable Diffusion"
    assert result.video.rendering["lora"] == "profile-lora", "and the record says so"
    assets = {a.kind: a for a in result.assets}
    assert set(assets) == {"video", "thumbnail", "audio", "scene", "base_clip"}
    video = probe(saved(store, result.video.uri, tmp_path / "video.mp4"))
    assert (video.width, video.height, video.video_codec, video.audio_codec) == (854, 480, "h264", "aac")
    assert video.duration == pytest.approx(result.video.duration, abs=0.1)
    red = corner_color(tmp_path / "video.mp4")
    assert red[0] > 180 and red[1] < 80, "the final video is Wav2Lip's output"
    stages = list(dict.fromkeys(b["stage"] for b in beats))
    order = [stages.index(stage) for stage in ("scene", "image_to_video", "upscale", "lipsync", "animate", "encode")]
    assert order == sorted(order), stages
    percents = [b["percent"] for b in beats]
    assert percents == sorted(percents)
    assert all({"stage_index", "stage_count"} <= set(b) for b in beats)


def test_sadtalker_variant_runs_the_talking_head_backend(backends, tmp_path: Path) -> None:
    store = FakeStore()
    result, beats = run(backends, store, tmp_path / "work", render_input("sadtalker"))
    assert {a.kind for a in result.assets} == {"video", "thumbnail", "audio", "scene"}
    video = probe(saved(store, result.video.uri, tmp_path / "video.mp4"))
    assert (video.width, video.height, video.video_codec, video.audio_codec) == (854, 480, "h264", "aac")
    green = corner_color(tmp_path / "video.mp4")
    assert green[1] > 180 and green[0] < 80, "the final video is SadTalker's output"
    assert "talking_head" in {b["stage"] for b in beats}


def test_a_broken_checkout_fails_the_render_non_retryably_naming_stage_and_path(
    models_dir: Path, tmp_path: Path
) -> None:
    root = fake_wav2lip(tmp_path / "Wav2Lip", mode="broken")
    backends = build_backends(settings(models_dir=models_dir, wav2lip_dir=root))
    store = FakeStore()
    with pytest.raises(ApplicationError) as info:
        run(backends, store, tmp_path / "work", render_input("svd"))
    err = info.value
    assert err.type == "MissingWeights" and err.non_retryable
    assert "stage 'lipsync'" in err.message and str(root.resolve()) in err.message
    partial = {a["kind"] for a in err.details[0]}
    assert partial == {"audio", "scene", "base_clip"}, "what the earlier stages made is still uploaded"
