"""The Stable Video Diffusion backend on a tiny random model saved to disk and loaded back; clip looping."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from temporalio.exceptions import ApplicationError

from gpu_worker.backends.base import cover_box, fit
from gpu_worker.backends.frames import pingpong
from gpu_worker.backends.svd import DiffusersImageToVideo, find_svd


@pytest.fixture(scope="module")
def svd(models_dir: Path) -> DiffusersImageToVideo:
    model_dir = find_svd(models_dir)
    assert model_dir == models_dir / "stable-video-diffusion"
    return DiffusersImageToVideo(model_dir, num_frames=3, fps=7, steps=2, decode_chunk_size=2, resolution=32)


def test_animates_a_still_into_frames_at_its_aspect_ratio(svd) -> None:
    still = Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 160, 3), dtype=np.uint8))
    steps: list[float] = []
    frames = svd.generate(still, seed=0, progress=steps.append)
    assert len(frames) == 3
    assert {f.size for f in frames} == {(64, 64)}  # 16:9 at short side 32, in multiples of 64
    clip = np.stack([np.asarray(f, dtype=np.float32) for f in frames])
    assert np.isfinite(clip).all() and clip.std() > 0
    assert steps == [0.5, 1.0]


def test_wide_resolution_gives_a_wide_clip(models_dir: Path) -> None:
    svd = DiffusersImageToVideo(models_dir / "stable-video-diffusion", num_frames=2, steps=2, resolution=64)
    frames = svd.generate(Image.new("RGB", (1280, 720), (90, 120, 200)), seed=1, progress=lambda _f: None)
    assert len(frames) == 2 and frames[0].size == (128, 64)


def test_absent_model_is_not_offered_and_broken_one_names_its_path(models_dir: Path, tmp_path: Path) -> None:
    assert find_svd(tmp_path) is None
    shutil.copytree(models_dir / "stable-video-diffusion", tmp_path / "stable-video-diffusion")
    shutil.rmtree(tmp_path / "stable-video-diffusion" / "image_encoder")
    with pytest.raises(ApplicationError) as info:
        find_svd(tmp_path)
    assert info.value.type == "MissingWeights" and info.value.non_retryable
    assert f"{tmp_path / 'stable-video-diffusion'} lacks image_encoder" in info.value.message


def test_pingpong_loops_the_clip_without_jumps() -> None:
    clip = [np.full((2, 2, 3), i, np.uint8) for i in range(4)]
    shown = [int(f[0, 0, 0]) for f in pingpong(clip, 16, fps=14, clip_fps=7)]
    assert shown == [0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1]
    assert [int(f[0, 0, 0]) for f in pingpong(clip[:1], 3, 25, 7)] == [0, 0, 0]


def test_fit_covers_the_size_and_cover_box_follows_it() -> None:
    image = Image.new("RGB", (200, 100), (0, 0, 0))
    image.paste((255, 255, 255), (120, 40, 140, 60))  # a 20×20 white square
    fitted = fit(image, (100, 100))
    assert fitted.size == (100, 100)
    x, y, w, h = cover_box((120, 40, 20, 20), (200, 100), (100, 100))
    inside = np.asarray(fitted)[y + 2 : y + h - 2, x + 2 : x + w - 2]
    assert inside.min() > 200, "the mapped box lands on the square"
