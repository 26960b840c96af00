"""`train_lora` through `ActivityEnvironment`: heartbeats, checkpoints, resume, cancellation, bad input."""

import dataclasses
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import ActivityEnvironment

from gpu_worker.training.components import load_sd
from gpu_worker.training.lora import LORA_FILE, PRESETS, default_components_factory, instance_prompt
from gpu_worker.training.tasks import TrainingActivities
from schemas.tasks import TrainLoraInput, TrainLoraResult

from .helpers import FakeStore, encode_image

TINY = PRESETS["tiny"]
PHOTO = "s3://uploads/local/astronaut.jpg"
CKPT = "s3://artifacts/jobs/job-1/train_lora/checkpoints/step-{}.pt"


def lora_input(images: list[str] | None = None, preset: str = "tiny") -> TrainLoraInput:
    return TrainLoraInput(
        job_id="job-1", node_id="train_lora", profile_id="prof-0a1b2c3d", images=images or [PHOTO], preset=preset
    )


def run(
    store: FakeStore,
    work_dir: Path,
    factory: Any,
    inp: TrainLoraInput,
    details: dict[str, Any] | None = None,
    env: ActivityEnvironment | None = None,
    beats: list[dict[str, Any]] | None = None,
) -> tuple[TrainLoraResult, list[dict[str, Any]]]:
    """Run `train_lora` in an activity environment, collecting its heartbeats into `beats`."""
    env = env or ActivityEnvironment()
    beats = [] if beats is None else beats
    previous = env.on_heartbeat

    def on_heartbeat(*details: Any) -> None:
        beats.append(details[0])
        previous(*details)

    env.on_heartbeat = on_heartbeat
    if details is not None:
        env.info = dataclasses.replace(env.info, heartbeat_details=[details])
    activities = TrainingActivities(store, work_dir, factory)
    return env.run(activities.train_lora, inp), beats


def executed(beats: list[dict[str, Any]]) -> list[int]:
    """Steps this attempt ran (each heartbeats once; keep-alive repeats are deduplicated)."""
    start = beats[-1]["start_step"]
    return sorted({b["step"] for b in beats if "start_step" in b and b["step"] > start})


@pytest.fixture(scope="module")
def factory(tiny_sd_dir: Path) -> Any:
    """Every test trains the tiny model loaded back from its saved directory."""
    return lambda _preset: load_sd(tiny_sd_dir)


@pytest.fixture
def store(astronaut_jpeg: bytes) -> FakeStore:
    fake = FakeStore()
    fake.put_bytes("uploads", "local/astronaut.jpg", astronaut_jpeg)
    return fake


@pytest.fixture(scope="module")
def full_run(tiny_sd_dir: Path, astronaut_jpeg: bytes, tmp_path_factory: pytest.TempPathFactory) -> Any:
    store = FakeStore()
    store.put_bytes("uploads", "local/astronaut.jpg", astronaut_jpeg)
    result, beats = run(store, tmp_path_factory.mktemp("work"), lambda _p: load_sd(tiny_sd_dir), lora_input())
    return store, result, beats


def lora_weights(store: FakeStore, result: TrainLoraResult) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    return load(store.get_bytes(result.lora_id))


def test_full_run_heartbeats_every_step_and_checkpoints(full_run: Any) -> None:
    store, result, beats = full_run
    assert result.lora_id == f"s3://artifacts/profiles/prof-0a1b2c3d/lora/{LORA_FILE}"
    assert result.steps == TINY.steps and result.final_loss is not None and np.isfinite(result.final_loss)
    assert executed(beats) == list(range(1, TINY.steps + 1))
    by_step = {b["step"]: b for b in beats if b.get("step")}
    assert {b["stage"] for b in beats} - {"starting"} == {"train_lora"}
    assert by_step[5]["total_steps"] == TINY.steps and isinstance(by_step[5]["loss"], float)
    assert by_step[5]["checkpoint_uri"] is None
    assert by_step[10]["checkpoint_uri"] == by_step[19]["checkpoint_uri"] == CKPT.format(10)
    assert beats[-1]["percent"] == 100 and beats[-1]["checkpoint_uri"] == CKPT.format(TINY.steps)
    assert beats[-1]["base_model"].endswith("stable-diffusion")
    percents = [b["percent"] for b in beats]
    assert percents == sorted(percents)
    every = TINY.checkpoint_every
    assert store.list_keys("artifacts", "jobs/job-1/train_lora/checkpoints/") == sorted(
        f"jobs/job-1/train_lora/checkpoints/step-{n}.pt" for n in range(every, TINY.steps + 1, every)
    )
    assert store.exists("s3://artifacts/profiles/prof-0a1b2c3d/lora/lora.json")


def test_lora_loads_into_a_diffusers_pipeline(full_run: Any, tiny_sd_dir: Path, tmp_path: Path) -> None:
    from diffusers import StableDiffusionPipeline

    store, result, _ = full_run
    weights = store.download(result.lora_id, tmp_path / LORA_FILE)
    assert all(k.startswith("unet.") for k in load_file(weights))
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd_dir, local_files_only=True, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)

    def render() -> np.ndarray:
        generator = torch.Generator("cpu").manual_seed(0)
        out = pipe(
            instance_prompt("prof-0a1b2c3d"),
            num_inference_steps=2,
            height=32,
            width=32,
            generator=generator,
            output_type="np",
        )
        return out.images[0]

    before = render()
    pipe.load_lora_weights(tmp_path, weight_name=LORA_FILE)
    after = render()
    assert after.shape == (32, 32, 3) and np.isfinite(after).all()
    assert not np.array_equal(before, after)  # the LoRA changes what the model draws


def test_resume_from_heartbeat_details_matches_an_uninterrupted_run(
    full_run: Any, tmp_path: Path, factory: Any
) -> None:
    full_store, full_result, _ = full_run
    store = full_store.copy(lambda key: key.startswith("local/") or key.endswith("step-20.pt"))
    result, beats = run(store, tmp_path, factory, lora_input(), details={"step": 20, "checkpoint_uri": CKPT.format(20)})
    steps = executed(beats)
    assert steps[0] == 21 and len(steps) == TINY.steps - 20 < TINY.steps + TINY.checkpoint_every
    first = next(b for b in beats if "start_step" in b)  # heartbeated before any step runs
    assert (first["step"], first["start_step"], first["checkpoint_uri"]) == (20, 20, CKPT.format(20))
    resumed, full = lora_weights(store, result), lora_weights(full_store, full_result)
    assert resumed.keys() == full.keys()
    assert all(torch.equal(resumed[k], full[k]) for k in full)
    assert result.final_loss == full_result.final_loss


@pytest.mark.parametrize(
    ("kept", "details", "first_step"),
    [
        ({"step-10.pt", "step-30.pt"}, None, 31),  # no details: newest checkpoint in storage
        ({"step-10.pt", "step-30.pt"}, {"step": 10, "checkpoint_uri": CKPT.format(10)}, 31),  # stale details
        (set(), {"step": 30, "checkpoint_uri": CKPT.format(30)}, 1),  # named checkpoint gone: from scratch
        ({"step-10.pt", "step-30.pt", "corrupt"}, None, 11),  # newest unreadable: the one before it
    ],
)
def test_resume_takes_the_newest_stored_checkpoint(
    full_run: Any, tmp_path: Path, factory: Any, kept: set[str], details: Any, first_step: int
) -> None:
    store = full_run[0].copy(lambda key: key.startswith("local/") or key.rsplit("/", 1)[-1] in kept)
    if "corrupt" in kept:
        store.put_bytes("artifacts", "jobs/job-1/train_lora/checkpoints/step-30.pt", b"truncated upload")
    result, beats = run(store, tmp_path, factory, lora_input(), details=details)
    assert executed(beats)[0] == first_step and result.steps == TINY.steps


def test_cancel_leaves_a_final_checkpoint_and_resumes(full_run: Any, tmp_path: Path, factory: Any) -> None:
    full_store, full_result, _ = full_run
    store = full_store.copy(lambda key: key.startswith("local/"))
    env = ActivityEnvironment()
    enough = threading.Event()
    env.on_heartbeat = lambda *d: enough.set() if d[0].get("step", 0) >= 3 else None

    def cancel_after_a_few_steps() -> None:
        if enough.wait(60):
            env.cancel()

    canceller = threading.Thread(target=cancel_after_a_few_steps)
    canceller.start()
    beats: list[dict[str, Any]] = []
    with pytest.raises(CancelledError):
        run(store, tmp_path / "a", factory, lora_input(), env=env, beats=beats)
    canceller.join()
    stopped = beats[-1]["step"]
    assert 3 <= stopped < TINY.steps
    assert beats[-1]["checkpoint_uri"] == CKPT.format(stopped) and store.exists(CKPT.format(stopped))

    result, resumed_beats = run(store, tmp_path / "b", factory, lora_input(), details=beats[-1])
    assert executed(resumed_beats)[0] == stopped + 1
    resumed, full = lora_weights(store, result), lora_weights(full_store, full_result)
    assert all(torch.equal(resumed[k], full[k]) for k in full)


def _bad_inputs(astronaut: np.ndarray) -> dict[str, bytes]:
    return {
        "local/notes.jpg": b"this is not an image",
        "local/pixel.png": encode_image(np.zeros((1, 1, 3), np.uint8), "PNG"),
        "local/thumb.png": encode_image(astronaut[:48, :200], "PNG"),
    }


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ("s3://uploads/local/notes.jpg", "not a decodable image"),
        ("s3://uploads/local/pixel.png", "1×1"),
        ("s3://uploads/local/thumb.png", "200×48"),
        ("s3://uploads/local/missing.jpg", "does not exist"),
        ("https://example.com/a.jpg", "not an object URI"),
    ],
)
def test_bad_images_are_non_retryable_and_named(store: FakeStore, tmp_path: Path, bad: str, words: str) -> None:
    import skimage.data

    for key, data in _bad_inputs(skimage.data.astronaut()).items():
        store.put_bytes("uploads", key, data)
    never = lambda _p: pytest.fail("the model must not be loaded for bad input")  # noqa: E731
    with pytest.raises(ApplicationError) as caught:
        run(store, tmp_path, never, lora_input([PHOTO, bad]))
    err = caught.value
    assert err.type == "InvalidInput" and err.non_retryable
    assert bad in err.message and words in err.message
    assert not store.list_keys("artifacts")


def test_unknown_preset_is_invalid_input(store: FakeStore, tmp_path: Path, factory: Any) -> None:
    with pytest.raises(ApplicationError) as caught:
        run(store, tmp_path, factory, lora_input(preset="huge"))
    assert caught.value.type == "InvalidInput" and "huge" in caught.value.message


@pytest.mark.parametrize("models", ["none", "broken"])
def test_missing_weights_are_non_retryable(store: FakeStore, tmp_path: Path, models: str) -> None:
    models_dir = None
    if models == "broken":
        models_dir = tmp_path / "models"
        (models_dir / "stable-diffusion" / "unet").mkdir(parents=True)
        (models_dir / "stable-diffusion" / "unet" / "config.json").write_text("{not json")
    with pytest.raises(ApplicationError) as caught:
        run(store, tmp_path / "work", default_components_factory(models_dir), lora_input(preset="standard"))
    err = caught.value
    assert err.type == "MissingWeights" and err.non_retryable
    assert ("APP_GPU__MODELS_DIR" if models_dir is None else str(models_dir)) in err.message
