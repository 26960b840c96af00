"""The Stable Diffusion scene backend on the tiny model saved to disk: sizes, determinism, the profile's LoRA."""

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from temporalio.exceptions import ApplicationError

from gpu_worker.backends import Backends
from gpu_worker.backends.base import LORA_APPLIED, LoraWeights, SceneRequest, model_size
from gpu_worker.backends.diffusers_sd import DiffusersScene, find_sd
from gpu_worker.backends.render import RenderBackends
from gpu_worker.training.lora import instance_prompt, lora_uri
from tests.gpu_worker.training.helpers import FakeStore

from .conftest import PROFILE

STAGE = "a calm beach at sunrise"


@pytest.fixture(scope="module")
def scene(models_dir: Path) -> DiffusersScene:
    sd_dir = find_sd(models_dir)
    assert sd_dir == models_dir / "stable-diffusion"
    return DiffusersScene(sd_dir, steps=2, guidance_scale=7.5, resolution=32, negative_prompt="blurry")


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_model_size_keeps_the_aspect_ratio_in_multiples() -> None:
    assert model_size((1280, 720), 512, 8) == (912, 512)
    assert model_size((720, 1280), 512, 8) == (512, 912)
    assert model_size((480, 480), 512, 8) == (512, 512)
    assert model_size((1280, 720), 576, 64) == (1024, 576)


@pytest.mark.parametrize(("aspect", "expected"), [((426, 240), (56, 32)), ((240, 426), (32, 56))])
def test_generates_a_finite_image_at_the_aspect_ratio(scene, aspect, expected) -> None:
    steps: list[float] = []
    image = scene.generate(SceneRequest(STAGE, aspect, seed=1), steps.append)
    assert image.mode == "RGB" and image.size == expected
    values = pixels(image)
    assert np.isfinite(values).all() and values.std() > 0, "a real (random-model) image, not a flat fill"
    assert steps == [0.5, 1.0], "every denoising step is reported"


def test_same_seed_same_image_other_seed_other_image(scene) -> None:
    first = pixels(scene.generate(SceneRequest(STAGE, (426, 240), seed=3), lambda _f: None))
    again = pixels(scene.generate(SceneRequest(STAGE, (426, 240), seed=3), lambda _f: None))
    other = pixels(scene.generate(SceneRequest(STAGE, (426, 240), seed=4), lambda _f: None))
    assert (first == again).all() and (first != other).any()


def _lora(store: FakeStore, out_dir: Path) -> LoraWeights:
    """The profile's LoRA as a render downloads it."""
    weights = RenderBackends(Backends(), store, lora_uri(PROFILE)).fetch_lora(out_dir)
    assert weights is not None
    return weights


def test_a_trained_lora_changes_the_scene_and_is_unloaded_afterwards(scene, lora_store, tmp_path: Path) -> None:
    lora = _lora(lora_store, tmp_path)
    assert lora.base_model == str(scene.model_dir) and lora.instance_prompt == instance_prompt(PROFILE)
    plain_prompt = f"{lora.instance_prompt}, {STAGE}"  # what the LoRA render prompts with, minus the LoRA
    plain = pixels(scene.generate(SceneRequest(plain_prompt, (426, 240), seed=5), lambda _f: None))
    with_lora = pixels(scene.generate(SceneRequest(STAGE, (426, 240), seed=5, lora=lora), lambda _f: None))
    assert np.abs(with_lora - plain).mean() > 2, "the LoRA weights changed the image"
    after = pixels(scene.generate(SceneRequest(plain_prompt, (426, 240), seed=5), lambda _f: None))
    assert (after == plain).all(), "the LoRA does not leak into the next render"


def test_a_lora_with_zero_weights_paints_the_same_scene_as_none(scene, lora_store, tmp_path: Path) -> None:
    """What changes the trained LoRA's scene is its weights, not the loading or the trigger words' prompt."""
    from safetensors.torch import load_file, save_file

    lora = _lora(lora_store, tmp_path)
    layers = load_file(str(lora.path))
    ups = [key for key in layers if "lora.up" in key or "lora_B" in key]  # the second matrix of each B·A update
    assert ups, sorted(layers)[:4]
    zero = tmp_path / "zero" / lora.path.name
    zero.parent.mkdir()
    save_file({k: v.zero_() if k in ups else v for k, v in layers.items()}, str(zero))
    zeroed = LoraWeights(zero, lora.base_model, lora.instance_prompt)
    plain = scene.generate(SceneRequest(f"{lora.instance_prompt}, {STAGE}", (426, 240), seed=5), lambda _f: None)
    loaded = scene.generate(SceneRequest(STAGE, (426, 240), seed=5, lora=zeroed), lambda _f: None)
    assert loaded.info[LORA_APPLIED] and not plain.info[LORA_APPLIED], "the zero LoRA did load"
    assert (pixels(loaded) == pixels(plain)).all()


def test_a_lora_trained_on_another_model_is_skipped_with_a_warning(scene, lora_store, tmp_path: Path, caplog) -> None:
    lora = _lora(lora_store, tmp_path)
    meta = json.loads(lora_store.get_bytes(lora_uri(PROFILE, "lora.json")))
    for base in ("/models/other-sd", "tiny-random", None):
        foreign = LoraWeights(lora.path, base, meta["instance_prompt"])
        plain = pixels(scene.generate(SceneRequest(STAGE, (426, 240), seed=6), lambda _f: None))
        with caplog.at_level(logging.WARNING, logger="gpu_worker.backends.diffusers_sd"):
            skipped = scene.generate(SceneRequest(STAGE, (426, 240), seed=6, lora=foreign), lambda _f: None)
        assert (pixels(skipped) == plain).all(), "neither the weights nor the instance prompt were used"
        assert not skipped.info[LORA_APPLIED], "the record will not claim the profile's LoRA"
        assert f"not using LoRA {lora.path}" in caplog.text


def test_missing_lora_object_renders_without_it(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        assert RenderBackends(Backends(), FakeStore(), lora_uri(PROFILE)).fetch_lora(tmp_path) is None
    assert "does not exist" in caplog.text


def test_absent_model_is_not_offered_and_broken_one_names_its_path(models_dir: Path, tmp_path: Path) -> None:
    assert find_sd(None) is None
    assert find_sd(tmp_path) is None  # no stable-diffusion/ folder: the backend is simply not there
    (tmp_path / "stable-diffusion").mkdir()
    with pytest.raises(ApplicationError) as info:
        find_sd(tmp_path)
    assert info.value.type == "MissingWeights" and info.value.non_retryable
    assert str(tmp_path / "stable-diffusion") in info.value.message
    shutil.copytree(models_dir / "stable-diffusion", tmp_path / "sd-copy" / "stable-diffusion")
    shutil.rmtree(tmp_path / "sd-copy" / "stable-diffusion" / "vae")
    with pytest.raises(ApplicationError, match="lacks vae"):
        find_sd(tmp_path / "sd-copy")


def test_corrupt_weights_fail_at_first_use_naming_the_folder(models_dir: Path, tmp_path: Path) -> None:
    broken = shutil.copytree(models_dir / "stable-diffusion", tmp_path / "stable-diffusion")
    for weights in (broken / "unet").glob("*.safetensors"):
        weights.write_bytes(b"garbage")
    scene = DiffusersScene(find_sd(tmp_path) or broken, steps=2, resolution=32)
    with pytest.raises(ApplicationError) as info:
        scene.generate(SceneRequest(STAGE, (426, 240), seed=0), lambda _f: None)
    assert info.value.type == "MissingWeights" and info.value.non_retryable
    assert str(broken) in info.value.message


def test_a_download_of_only_the_fp16_variant_loads(models_dir: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(models_dir / "stable-diffusion", tmp_path / "stable-diffusion")
    for weights in copy.glob("*/*.safetensors"):
        weights.rename(weights.with_name(weights.name.replace(".safetensors", ".fp16.safetensors")))
    image = DiffusersScene(copy, steps=2, resolution=32).generate(SceneRequest(STAGE, (64, 64), 0), lambda _f: None)
    assert image.size == (32, 32)
