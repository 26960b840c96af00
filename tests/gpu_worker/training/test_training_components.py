"""The tiny Stable Diffusion, loading a local model, presets, and image preprocessing."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gpu_worker.training.components import build_tiny_sd, load_sd, sd_model_dir
from gpu_worker.training.errors import InvalidInputError, MissingWeightsError
from gpu_worker.training.images import preprocess_image
from gpu_worker.training.lora import instance_prompt
from gpu_worker.training.tasks import presets_available

from .helpers import encode_image


def test_tiny_sd_is_deterministic_and_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a, b, c = build_tiny_sd(0), build_tiny_sd(0), build_tiny_sd(1)
    assert torch.equal(torch.rand(1), expected)
    first = next(iter(a.unet.state_dict().values()))
    assert torch.equal(first, next(iter(b.unet.state_dict().values())))
    assert not torch.equal(first, next(iter(c.unet.state_dict().values())))
    assert a.is_tiny and a.unet.config.cross_attention_dim == a.text_encoder.config.hidden_size == 32


def test_saved_tiny_sd_loads_back_identically(tiny_sd_dir: Path) -> None:
    loaded, built = load_sd(tiny_sd_dir), build_tiny_sd(0)
    assert loaded.source == str(tiny_sd_dir) and not loaded.is_tiny
    for name, tensor in built.unet.state_dict().items():
        assert torch.equal(tensor, loaded.unet.state_dict()[name]), name
    prompt = instance_prompt("prof-0a1b2c3d")
    assert loaded.tokenizer(prompt).input_ids == built.tokenizer(prompt).input_ids
    assert load_sd(tiny_sd_dir.parent).source == str(tiny_sd_dir)  # a models dir with stable-diffusion/ inside


def test_broken_or_missing_model_dirs_name_the_path(tiny_sd_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError, match=str(tmp_path / "nowhere")):
        load_sd(tmp_path / "nowhere")
    partial = shutil.copytree(tiny_sd_dir, tmp_path / "partial")
    shutil.rmtree(partial / "vae")
    with pytest.raises(MissingWeightsError, match="lacks vae"):
        load_sd(partial)
    corrupt = shutil.copytree(tiny_sd_dir, tmp_path / "corrupt")
    (corrupt / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(MissingWeightsError, match=str(corrupt)):
        load_sd(corrupt)


def test_presets_advertise_standard_only_with_weights(tiny_sd_dir: Path, tmp_path: Path) -> None:
    assert presets_available(None) == ["tiny", "tiny-long"]
    assert presets_available(tmp_path) == ["tiny", "tiny-long"]
    assert presets_available(tiny_sd_dir.parent) == ["standard", "tiny", "tiny-long"]
    assert sd_model_dir(tiny_sd_dir) == tiny_sd_dir


def test_preprocess_applies_exif_orientation_then_center_crops(tmp_path: Path) -> None:
    wide = np.zeros((100, 300, 3), np.uint8)
    wide[:, 150:] = 255  # right half white
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers rotate 90° clockwise
    path = tmp_path / "sideways.jpg"
    path.write_bytes(encode_image(wide, "JPEG", exif=exif.tobytes(), quality=95))
    out = np.asarray(preprocess_image(path, 32, "s3://uploads/local/sideways.jpg"))
    assert out.shape == (32, 32, 3)
    # Upright the photo is 100 wide and 300 tall with the white half at the bottom: the centre crop
    # straddles the edge, so the top of the crop is black and the bottom white.
    assert out[2].mean() < 40 and out[-3].mean() > 215


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x89PNG\r\n\x1a\n garbage", "not a decodable image"),
        (encode_image(np.zeros((63, 500, 3), np.uint8), "PNG"), "500×63"),
    ],
)
def test_preprocess_rejects_garbage_and_small_images(tmp_path: Path, data: bytes, words: str) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(data)
    with pytest.raises(InvalidInputError, match=words) as caught:
        preprocess_image(path, 32, "s3://uploads/local/x.png")
    assert "s3://uploads/local/x.png" in str(caught.value)
