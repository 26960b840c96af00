"""MuseTalk 1.5 lip-sync on tiny random models laid out like the published files; window math; crop, mask and blend.

The tiny models keep the published shapes where they matter (8 latent channels in, 4 out, a
256 × 256 face → 32 × 32 latents, cross-attention as wide as Whisper's states) and are small
everywhere else; their output is noise, so the tests check shapes, alignment and plumbing, not lips.
"""

import json
import math
import shutil
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from core.settings import GpuSettings, Settings
from gpu_worker.backends import build_backends
from gpu_worker.backends.musetalk import MuseTalk, MuseTalkModels, find_musetalk, load_unet, state_dict_mismatch
from gpu_worker.backends.musetalk_audio import (
    SpeechFeatures,
    positional_encoding,
    read_speech,
    window_length,
    window_positions,
)
from gpu_worker.backends.musetalk_face import blend_face, cut_face, face_crop
from gpu_worker.media.encode import encode_frames, probe
from gpu_worker.media.facemesh import face_mesh
from gpu_worker.media.loudness import write_wav
from gpu_worker.media.pipeline import RenderCancelled
from gpu_worker.rendering import RenderActivities
from gpu_worker.worker import manifest
from schemas.tasks import ProfileRef, RenderInput, RenderPlan, RenderSettings, Script
from tests.gpu_worker.training.helpers import FakeStore

from .fakes import fake_wav2lip

WIDTH = 32  # Whisper's d_model = the UNet's cross-attention width
# musetalkV15/musetalk.json as published (TMElyralab/MuseTalk on the Hub; the same as the v1 config in the
# repository's train_codes/musetalk.json at d73daf1).
PUBLISHED_UNET = {
    "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.6.0.dev0", "act_fn": "silu",
    "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False,
    "cross_attention_dim": 384,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 8, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}  # fmt: skip
TINY_UNET = PUBLISHED_UNET | {
    "block_out_channels": [32, 64], "layers_per_block": 1, "sample_size": 32, "cross_attention_dim": WIDTH,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
}  # fmt: skip


def save_tiny_musetalk(root: Path, vae_folder: str = "sd-vae", seed: int = 0) -> Path:
    """MuseTalk's `models/` layout with tiny random models: UNet config + `unet.pth`, an SD-style VAE, Whisper."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    (root / "musetalkV15").mkdir(parents=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel.from_config(TINY_UNET)
        vae = AutoencoderKL(
            block_out_channels=(8, 8, 8, 8), down_block_types=["DownEncoderBlock2D"] * 4,
            up_block_types=["UpDecoderBlock2D"] * 4, latent_channels=4, layers_per_block=1, norm_num_groups=4,
            sample_size=256,
        )  # fmt: skip
        whisper = WhisperForConditionalGeneration(  # the published whisper-tiny is the full model, encoder and decoder
            WhisperConfig(
                vocab_size=64, d_model=WIDTH, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80,
                max_source_positions=1500, max_target_positions=32, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                decoder_start_token_id=1,
            )
        )  # fmt: skip
    (root / "musetalkV15" / "musetalk.json").write_text(json.dumps(TINY_UNET, indent=2))
    torch.save(unet.state_dict(), root / "musetalkV15" / "unet.pth")
    vae.save_pretrained(root / vae_folder)
    whisper.save_pretrained(root / "whisper")
    WhisperFeatureExtractor(feature_size=80).save_pretrained(root / "whisper")
    return root


@pytest.fixture(scope="module")
def musetalk_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_musetalk(tmp_path_factory.mktemp("musetalk") / "musetalk")


@pytest.fixture(scope="module")
def models(musetalk_dir: Path) -> MuseTalkModels:
    files = find_musetalk(musetalk_dir, None)
    assert files is not None
    return MuseTalkModels.load(files)


def presenter_frame(shift: int = 0, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """A frame with Eileen Collins's face (skimage's astronaut) on grey, moved `shift` pixels right."""
    frame = np.full((size[1], size[0], 3), 90, np.uint8)
    face = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((size[1], size[1])))
    frame[:, shift : shift + size[1]] = face[:, : size[0] - shift]
    return frame


def speech_wav(path: Path, seconds: float, rate: int = 22050) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    write_wav(path, 0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)), rate)
    return path


# ---------------------------------------------------------------- files and weights


def test_files_are_found_in_musetalks_layout_and_a_partial_folder_names_what_is_missing(
    musetalk_dir: Path, tmp_path: Path
) -> None:
    assert find_musetalk(None, None) is None
    assert find_musetalk(None, tmp_path) is None, "no musetalk/ in the models folder: not offered"
    files = find_musetalk(None, musetalk_dir.parent)
    assert files is not None and files.vae_dir == musetalk_dir / "sd-vae"
    with pytest.raises(ApplicationError) as info:
        find_musetalk(tmp_path / "nowhere", None)
    assert info.value.type == "MissingWeights" and str(tmp_path / "nowhere") in info.value.message
    partial = tmp_path / "musetalk"
    shutil.copytree(musetalk_dir, partial)
    (partial / "sd-vae").rename(partial / "sd-vae-ft-mse")  # the model's own name works too
    assert find_musetalk(partial, None).vae_dir == partial / "sd-vae-ft-mse"  # type: ignore[union-attr]
    (partial / "whisper" / "preprocessor_config.json").unlink()
    (partial / "whisper" / "model.safetensors").unlink()
    with pytest.raises(ApplicationError) as info:
        find_musetalk(None, tmp_path)
    assert info.value.non_retryable
    assert "whisper/preprocessor_config.json" in info.value.message
    assert "whisper/model.safetensors or pytorch_model.bin" in info.value.message


def test_the_published_config_describes_an_8_channel_unet_attending_to_whisper_tiny() -> None:
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        expected = UNet2DConditionModel.from_config(PUBLISHED_UNET).state_dict()
    shapes = {key: tuple(value.shape) for key, value in expected.items()}
    assert shapes["conv_in.weight"] == (320, 8, 3, 3), "masked + reference latents, 4 channels each"
    assert shapes["conv_out.weight"] == (4, 320, 3, 3)
    assert shapes["down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"] == (320, 384)
    assert shapes["mid_block.attentions.0.transformer_blocks.0.attn2.to_v.weight"] == (1280, 384)
    assert state_dict_mismatch(expected, dict(expected)) == ""


def test_unet_weights_load_strictly_and_a_mismatch_names_the_file_and_keys(musetalk_dir: Path, tmp_path: Path) -> None:
    config, weights = musetalk_dir / "musetalkV15" / "musetalk.json", musetalk_dir / "musetalkV15" / "unet.pth"
    unet = load_unet(config, weights)
    assert unet.config.in_channels == 8 and not any(p.is_meta for p in unet.parameters())
    state = torch.load(weights, weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in unet.state_dict().items())

    renamed = dict(state)
    renamed["conv_in.weights"] = renamed.pop("conv_in.weight")
    torch.save(renamed, tmp_path / "unet.pth")
    with pytest.raises(ApplicationError) as info:
        load_unet(config, tmp_path / "unet.pth")
    message = info.value.message
    assert info.value.type == "MissingWeights" and str(tmp_path / "unet.pth") in message
    assert "1 missing keys (e.g. conv_in.weight)" in message and "1 unexpected keys (e.g. conv_in.weights)" in message

    (tmp_path / "four.json").write_text(json.dumps(TINY_UNET | {"in_channels": 4}))
    with pytest.raises(ApplicationError) as info:
        load_unet(tmp_path / "four.json", weights)
    assert "conv_in.weight (32, 8, 3, 3) ≠ (32, 4, 3, 3)" in info.value.message

    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ApplicationError) as info:
        load_unet(config, tmp_path / "garbage.pth")
    assert str(tmp_path / "garbage.pth") in info.value.message


# ---------------------------------------------------------------- audio windows


def musetalk_window(features: np.ndarray, frame: int, fps: float, left: int = 2, right: int = 2) -> np.ndarray:
    """MuseTalk's `get_whisper_chunk` slicing, re-derived: zero padding both ends, then a 10-position slice."""
    step = 50 / fps
    pad = math.ceil(step)
    zeros = np.zeros((1, *features.shape[1:]), features.dtype)
    padded = np.concatenate([zeros.repeat(pad * left, 0), features, zeros.repeat(pad * 3 * right, 0)])
    start = math.floor(frame * step)
    return padded[start : start + 2 * (left + right + 1)]


def test_window_positions_at_the_start_the_middle_and_the_end() -> None:
    assert window_length() == 10
    assert window_positions([0], 25).tolist() == [list(range(-4, 6))], "frame 0: 4 positions of silence before"
    assert window_positions([10], 25).tolist() == [list(range(16, 26))], "0.4 s ± 0.1 s"
    assert window_positions([3], 30).tolist() == [list(range(1, 11))], "floor(3 × 50/30) − 2 × ceil(50/30)"
    last = window_positions([24], 25)[0]  # 1 s of speech = 50 positions: the last frame's window runs past it
    assert last.tolist() == list(range(44, 54)) and (last >= 50).sum() == 4


@pytest.mark.parametrize("fps", [25, 30, 24])
def test_windows_match_musetalks_padded_slices_for_every_frame(fps: int) -> None:
    seconds, layers = 1.3, 2
    positions = int(seconds * 50)
    values = np.arange(1, positions + 1, dtype=np.float32)[:, None, None] * np.ones((1, layers, 3), np.float32)
    features = SpeechFeatures(torch.from_numpy(values))
    frames = list(range(math.floor(seconds * fps)))  # MuseTalk makes floor(duration × fps) windows
    windows = features.windows(frames, fps).numpy() - positional_encoding(10 * layers, 3)
    for frame in frames:
        expected = musetalk_window(values, frame, fps).reshape(10 * layers, 3)  # time-major, as MuseTalk flattens
        np.testing.assert_allclose(windows[frame], expected, atol=1e-5, err_msg=f"frame {frame} at {fps} fps")
    assert windows[0, 0, 0] == pytest.approx(0.0, abs=1e-5) and windows[-1, -1, 0] == pytest.approx(0.0, abs=1e-5)


def test_positional_encoding_is_the_transformers_sinusoid() -> None:
    code = positional_encoding(50, 384)
    assert code.shape == (50, 384) and code.dtype == np.float32
    assert code[0, 0::2].tolist() == [0.0] * 192 and code[0, 1::2].tolist() == [1.0] * 192
    assert code[7, 0] == pytest.approx(math.sin(7)) and code[7, 1] == pytest.approx(math.cos(7))
    assert code[7, 2] == pytest.approx(math.sin(7 * 10000 ** (-2 / 384)), abs=1e-6)


def test_speech_features_run_at_50_per_second_across_30_second_pieces(models: MuseTalkModels, tmp_path: Path) -> None:
    samples = read_speech(speech_wav(tmp_path / "speech.wav", 1.3))
    assert len(samples) == pytest.approx(1.3 * 16000, abs=2)
    features = models.speech(tmp_path / "speech.wav")
    assert tuple(features.states.shape) == (65, 2, WIDTH), "1.3 s × 50; the input of its 1 layer and the output"
    assert features.tokens_per_frame == 20
    long = models.speech(speech_wav(tmp_path / "long.wav", 31, rate=16000))
    assert tuple(long.states.shape) == (1550, 2, WIDTH)
    assert torch.isfinite(long.states).all()


# ---------------------------------------------------------------- crop, mask, blend, inpaint


@pytest.fixture(scope="module")
def frame_and_crop() -> tuple[np.ndarray, Any, Any]:
    frame = presenter_frame()
    mesh = face_mesh(frame)
    assert mesh is not None
    crop = face_crop(mesh, (frame.shape[1], frame.shape[0]))
    assert crop is not None
    return frame, mesh, crop


def test_the_crop_is_centred_on_the_nose_and_the_mask_covers_the_mouth_only(
    frame_and_crop: tuple[np.ndarray, Any, Any],
) -> None:
    frame, mesh, crop = frame_and_crop
    x0, y0, x1, y1 = crop.box
    nose, chin = mesh.points[5, 1], mesh.points[152, 1]
    assert y0 == pytest.approx(nose - (chin - nose), abs=1) and y1 > chin, "nose ridge at the middle, chin inside"
    mx, my, mw, mh = mesh.mouth_box()
    assert x0 < mx and mx + mw < x1 and y0 < my and my + mh < y1
    mask = crop.mask
    assert mask.shape == (y1 - y0, x1 - x0)
    seam_x, seam_y = (mesh.lip_seam() - (x0, y0)).round().astype(int)
    assert mask[seam_y, seam_x] > 0.95, "the mouth shows the generated face"
    eye_y = int(mesh.eye_centres()[:, 1].mean() - y0)
    assert not mask[: eye_y + 1].any(), "the eyes and everything above stay the frame's own"
    assert not mask[0].any() and not mask[-1].any() and not mask[:, 0].any() and not mask[:, -1].any()


def test_blending_changes_pixels_inside_the_mask_and_none_outside(frame_and_crop: tuple[np.ndarray, Any, Any]) -> None:
    frame, _mesh, crop = frame_and_crop
    green = np.zeros((256, 256, 3), np.uint8)
    green[..., 1] = 255
    blended = blend_face(frame, crop, green)
    x0, y0, x1, y1 = crop.box
    outside = np.ones(frame.shape[:2], bool)
    outside[y0:y1, x0:x1] = crop.mask == 0
    assert np.array_equal(blended[outside], frame[outside]), "outside the mask: untouched, bit for bit"
    inside = np.zeros(frame.shape[:2], bool)
    inside[y0:y1, x0:x1] = crop.mask > 0.5
    assert inside.sum() > 100 and (blended[inside, 1] > frame[inside, 1]).all()
    assert blended[inside, 1].mean() > 200
    assert cut_face(frame, crop).shape == (256, 256, 3)


def test_inpainting_takes_8_latent_channels_and_the_audio_windows_at_timestep_0(models: MuseTalkModels) -> None:
    seen: dict[str, Any] = {}

    def spy(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        seen.update(sample=args[0].shape, timestep=args[1].tolist(), context=kwargs["encoder_hidden_states"].shape)

    faces = np.random.default_rng(0).integers(0, 255, (3, 256, 256, 3), dtype=np.uint8)
    context = torch.randn(3, 20, WIDTH)
    handle = models.unet.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        drawn = models.inpaint(faces, context)
    finally:
        handle.remove()
    assert seen == {"sample": (3, 8, 32, 32), "timestep": [0, 0, 0], "context": (3, 20, WIDTH)}
    assert drawn.shape == (3, 256, 256, 3) and drawn.dtype == np.uint8 and drawn.std() > 0


def test_every_part_loads_and_runs_in_half_precision_as_on_a_gpu(musetalk_dir: Path, tmp_path: Path) -> None:
    half = MuseTalkModels.load(find_musetalk(musetalk_dir, None), "cpu", torch.float16)  # type: ignore[arg-type]
    assert {next(m.parameters()).dtype for m in (half.unet, half.vae, half.encoder)} == {torch.float16}
    context = half.speech(speech_wav(tmp_path / "speech.wav", 0.5)).windows([0, 5, 12], 25)
    assert context.dtype == torch.float16 and tuple(context.shape) == (3, 20, WIDTH)
    faces = np.random.default_rng(1).integers(0, 255, (3, 256, 256, 3), dtype=np.uint8)
    drawn = half.inpaint(faces, context)
    assert drawn.shape == faces.shape and drawn.dtype == np.uint8 and drawn.std() > 0


# ---------------------------------------------------------------- the backend on a clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("clip")
    frames = [presenter_frame(shift=i % 4) for i in range(20)]
    video = folder / "base.mp4"
    encode_frames(frames, (320, 240), 25, video, crf=12)
    return video, speech_wav(folder / "speech.wav", 0.8)


def decoded(video: Path) -> np.ndarray:
    with av.open(str(video)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]).astype(np.float32)


def counting_unet_calls(backend: MuseTalk) -> list[int]:
    calls: list[int] = []
    backend.models().unet.register_forward_hook(lambda _m, args, _out: calls.append(len(args[0])))
    return calls


def test_lipsync_redraws_the_mouth_of_every_frame_in_batches_reporting_progress(
    musetalk_dir: Path, clip: tuple[Path, Path], tmp_path: Path
) -> None:
    video, speech = clip
    backend = MuseTalk(find_musetalk(musetalk_dir, None), batch_size=8)  # type: ignore[arg-type]
    calls = counting_unet_calls(backend)
    fractions: list[float] = []
    out = backend.lipsync(video, speech, tmp_path, fractions.append)
    assert calls == [8, 8, 4]
    assert fractions == [0.4, 0.8, 1.0, 1.0]
    found = probe(out)
    assert (found.width, found.height) == (320, 240) and found.audio_codec is None
    before, after = decoded(video), decoded(out)
    assert len(after) == 20
    mesh = face_mesh(before[0].astype(np.uint8))
    assert mesh is not None
    mx, my, mw, mh = mesh.mouth_box()
    crop = face_crop(mesh, (320, 240))
    assert crop is not None
    mouth = np.abs(after - before)[:, my : my + mh, mx : mx + mw].mean()
    above = np.abs(after - before)[:, : crop.box[1]].mean()  # only re-encoding changed it
    assert above < 4 and mouth > 5 * above, (mouth, above)


def test_cancelling_between_batches_stops_early_and_leaves_no_video(
    musetalk_dir: Path, clip: tuple[Path, Path], tmp_path: Path
) -> None:
    video, speech = clip
    backend = MuseTalk(find_musetalk(musetalk_dir, None), batch_size=8)  # type: ignore[arg-type]
    calls = counting_unet_calls(backend)

    def cancel(_fraction: float) -> None:
        raise RenderCancelled("cancelled")

    with pytest.raises(RenderCancelled):
        backend.lipsync(video, speech, tmp_path, cancel)
    assert calls == [8], "the first batch ran; the next was never started"
    assert not (tmp_path / "musetalk.mp4").exists()


# ---------------------------------------------------------------- through the worker


def test_configured_musetalk_is_advertised_and_preferred_to_wav2lip(musetalk_dir: Path, tmp_path: Path) -> None:
    both = Settings(
        _env_file=None, gpu=GpuSettings(musetalk_dir=musetalk_dir, wav2lip_dir=fake_wav2lip(tmp_path / "W"))
    )
    backends = build_backends(both)
    assert backends.lipsync is not None and backends.lipsync.name == "musetalk-1.5"
    assert manifest(both, "gpu-1", backends).runtimes["svd"]["lipsync"] == ["musetalk-1.5", "embedded-visemes"]
    assert "lipsync" not in manifest(both, "gpu-1", backends).runtimes["sadtalker"]


def test_the_svd_render_lip_syncs_with_musetalk_when_configured(musetalk_dir: Path, tmp_path: Path) -> None:
    backends = build_backends(Settings(_env_file=None, gpu=GpuSettings(musetalk_dir=musetalk_dir)))
    assert isinstance(backends.lipsync, MuseTalk)
    backends.lipsync.face_size = 64  # the path is under test, not the pixels: a 16× cheaper tiny VAE pass
    options = RenderSettings(duration_seconds=5, resolution="480p", aspect_ratio="16:9", fps=25, captions=False)
    inp = RenderInput(
        job_id="job-musetalk",
        node_id="render",
        pipeline=RenderPlan(variant="svd", params={**options.model_dump()}),
        script=Script(stage="A quiet library", narrative="Hello there. Books are quiet friends."),
        profile=ProfileRef(id="prof-0a1b2c3d"),
        options=options,
    )
    beats: list[dict[str, Any]] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details[0])
    store = FakeStore()
    result = env.run(RenderActivities(store, tmp_path / "work", backends).render_video, inp)
    assert result.video.rendering["lipsync"] == "musetalk-1.5"
    assert result.video.rendering["image_to_video"] == "ken-burns"
    assert "base_clip" in {a.kind for a in result.assets}, "MuseTalk worked on the uploaded base clip"
    lipsync = [b["percent"] for b in beats if b["stage"] == "lipsync"]
    assert lipsync and lipsync == sorted(lipsync)
