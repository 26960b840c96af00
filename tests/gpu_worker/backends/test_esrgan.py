"""Real-ESRGAN in plain torch: the official weights' layout, a tiny random model saved and loaded back."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from temporalio.exceptions import ApplicationError

from gpu_worker.backends.base import fit
from gpu_worker.backends.esrgan import RealEsrgan, RRDBNet, rrdbnet_from_state_dict

from .fakes import save_tiny_esrgan


def test_default_net_has_the_layout_of_realesrgan_x4plus() -> None:
    state = RRDBNet().state_dict()  # RealESRGAN_x4plus.pth: params_ema with these 702 tensors
    assert len(state) == 702
    assert state["conv_first.weight"].shape == (64, 3, 3, 3)
    assert state["body.22.rdb3.conv5.weight"].shape == (64, 192, 3, 3)
    assert state["body.0.rdb1.conv1.weight"].shape == (32, 64, 3, 3)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        assert state[f"{name}.weight"].shape == (64, 64, 3, 3)
    assert state["conv_last.weight"].shape == (3, 64, 3, 3)
    rebuilt = rrdbnet_from_state_dict(state)
    assert (rebuilt.scale, len(rebuilt.body)) == (4, 23)


def test_x2_layout_is_read_from_the_weights() -> None:
    state = RRDBNet(scale=2, num_feat=8, num_block=1, num_grow_ch=4).state_dict()
    assert state["conv_first.weight"].shape == (8, 12, 3, 3)  # pixel-unshuffled input, as RealESRGAN_x2plus
    assert rrdbnet_from_state_dict(state).scale == 2


def test_tiny_model_saved_and_loaded_upscales_four_times(esrgan_weights: Path) -> None:
    upscaler = RealEsrgan(esrgan_weights, tile=0)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (12, 20, 3), dtype=np.uint8))
    out = upscaler.upscale(image)
    assert out.size == (80, 48) and out.mode == "RGB"
    values = np.asarray(out, dtype=np.float32)
    assert np.isfinite(values).all()
    assert upscaler.scale == 4


def test_tiles_give_the_same_size_as_one_pass(esrgan_weights: Path) -> None:
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (30, 50, 3), dtype=np.uint8))
    whole = RealEsrgan(esrgan_weights, tile=0).upscale(image)
    tiled = RealEsrgan(esrgan_weights, tile=16, tile_pad=8).upscale(image)
    assert tiled.size == whole.size == (200, 120)
    # Far from tile seams the receptive field fits in the padding only approximately: close, not equal.
    assert np.abs(np.asarray(tiled, np.int16) - np.asarray(whole, np.int16)).mean() < 8


def test_x2_model_pads_odd_sizes(tmp_path: Path) -> None:
    out = RealEsrgan(save_tiny_esrgan(tmp_path / "x2.pth", scale=2)).upscale(Image.new("RGB", (15, 9), (10, 200, 30)))
    assert out.size == (30, 18)


def test_fit_uses_the_upscaler_only_when_the_image_must_grow(esrgan_weights: Path) -> None:
    calls: list[tuple[int, int]] = []

    class Counting(RealEsrgan):
        def upscale(self, image: Image.Image) -> Image.Image:
            calls.append(image.size)
            return super().upscale(image)

    upscaler = Counting(esrgan_weights)
    assert fit(Image.new("RGB", (40, 24)), (160, 90), upscaler).size == (160, 90)
    assert fit(Image.new("RGB", (150, 84)), (160, 90), upscaler).size == (160, 90)  # 1.07×: Lanczos alone
    assert calls == [(40, 24)]


def test_missing_or_broken_weights_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ApplicationError) as info:
        RealEsrgan(tmp_path / "nope.pth")
    assert info.value.type == "MissingWeights" and str(tmp_path / "nope.pth") in info.value.message
    garbage = tmp_path / "RealESRGAN_x4plus.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ApplicationError) as info:
        RealEsrgan(garbage).upscale(Image.new("RGB", (8, 8)))
    assert info.value.type == "MissingWeights" and info.value.non_retryable and str(garbage) in info.value.message
    torch.save({"params_ema": {"conv_first.weight": torch.zeros(1)}}, garbage)
    with pytest.raises(ApplicationError, match="cannot load Real-ESRGAN weights"):
        RealEsrgan(garbage).upscale(Image.new("RGB", (8, 8)))
