"""Wav2Lip and SadTalker subprocess wrappers against fake checkouts that honour the real command lines.

A fake checkout is acceptable only here (issue 3): what is under test is the wrapper's contract
(arguments, working directory, `ffmpeg` on the PATH, outputs found, timeout, cancellation, errors).
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from temporalio.exceptions import ApplicationError

from gpu_worker.backends.sadtalker import SadTalker
from gpu_worker.backends.wav2lip import Wav2Lip
from gpu_worker.media.encode import encode_frames, probe
from gpu_worker.media.pipeline import RenderCancelled
from gpu_worker.media.speech import VoiceParams
from gpu_worker.media.voices import synthesize

from .fakes import fake_sadtalker, fake_wav2lip

SIZE = (160, 96)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize("Hello there.", tmp_path_factory.mktemp("speech") / "speech.wav", VoiceParams()).path


@pytest.fixture(scope="module")
def face_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frames = (np.full((SIZE[1], SIZE[0], 3), 40 + 4 * i, np.uint8) for i in range(25))
    out = tmp_path_factory.mktemp("face") / "base.mp4"
    encode_frames(frames, SIZE, 25, out)
    return out


def _first_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def _last_call(root: Path) -> dict[str, object]:
    return json.loads((root / "last_call.json").read_text())  # type: ignore[no-any-return]


def test_wav2lip_runs_the_real_command_line_and_returns_its_video(tmp_path, speech, face_video) -> None:
    root = fake_wav2lip(tmp_path / "Wav2Lip")
    beats: list[float] = []
    out = Wav2Lip(root, extra_args=["--resize_factor", "1"]).lipsync(face_video, speech, tmp_path / "job", beats.append)
    call = _last_call(root)
    ckpt = str((root / "checkpoints" / "wav2lip_gan.pth").resolve())
    assert call["argv"] == [
        "--checkpoint_path", ckpt, "--face", "face.mp4", "--audio", "speech.wav", "--outfile", "result.mp4",
        "--resize_factor", "1",
    ]  # fmt: skip
    assert call["cwd"] == str(tmp_path / "job" / "wav2lip"), "its temp/ files stay in this render's scratch folder"
    info = probe(out)
    assert (info.width, info.height) == SIZE and info.has_audio
    corner = _first_frame(out)[:20, :40].astype(int)
    assert corner[..., 0].mean() > 180 and corner[..., 1].mean() < 80, "the tool's own drawing is in the output"
    assert beats and all(0 <= b < 1 for b in beats)


def _portrait(tmp_path: Path, name: str = "portrait.png") -> Path:
    portrait = tmp_path / name
    Image.new("RGB", SIZE, (200, 180, 160)).save(portrait)
    return portrait


def test_sadtalker_runs_in_its_checkout_and_returns_the_timestamped_video(tmp_path, speech) -> None:
    root = fake_sadtalker(tmp_path / "SadTalker")
    portrait = _portrait(tmp_path)
    before = sorted(p.name for p in root.iterdir())
    out = SadTalker(root).animate(portrait, speech, tmp_path / "job", lambda _f: None)
    call = _last_call(root)
    assert call["cwd"] == str(root.resolve())
    argv = call["argv"]
    assert isinstance(argv, list)
    assert argv[:8] == [
        "--driven_audio", str(speech.resolve()), "--source_image", str(portrait.resolve()),
        "--result_dir", str((tmp_path / "job" / "sadtalker").resolve()),
        "--checkpoint_dir", str((root / "checkpoints").resolve()),
    ]  # fmt: skip
    assert argv[8:] == ["--still", "--preprocess", "full"]
    assert call["loaded"] == ["SadTalker_V0.0.2_256.safetensors", "mapping_00109-model.pth.tar"]
    assert out.parent == (tmp_path / "job" / "sadtalker").resolve()
    assert re.fullmatch(r"\d{4}_\d\d_\d\d_\d\d\.\d\d\.\d\d\.mp4", out.name), "inference.py names it by the time"
    assert list(out.parent.iterdir()) == [out], "without --verbose its intermediate folder is removed"
    assert sorted(p.name for p in root.iterdir()) == sorted([*before, "last_call.json"]), (
        "its <uuid>.mp4 temp files are gone"
    )
    info = probe(out)
    assert (info.width, info.height) == SIZE and info.has_audio and info.fps == 25


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--still", "--preprocess", "fullbody"], "invalid choice: 'fullbody'"),
        (["--still", "--image_size", "512"], "unrecognized arguments: --image_size 512"),
        (["--batch_size", "two"], "invalid int value: 'two'"),
        (["--still", "--preprocess"], "expected one argument"),
        (["--cropping", "full"], "unrecognized arguments: --cropping full"),
    ],
    ids=["choice", "name", "type", "no-value", "unknown"],
)
def test_sadtalker_argument_errors_stop_the_worker_as_inference_py_would_stop_the_render(
    tmp_path, speech, args, problem
) -> None:
    root = fake_sadtalker(tmp_path / "SadTalker")
    with pytest.raises(ApplicationError) as info:
        SadTalker(root, extra_args=args)
    assert info.value.type == "MissingWeights" and info.value.non_retryable
    assert "APP_GPU__SADTALKER_ARGS" in info.value.message and problem in info.value.message
    # The stand-in's own argparse refuses the same command line (exit 2), as the real inference.py does.
    cmd = [sys.executable, str(root / "inference.py"), "--driven_audio", str(speech), *args]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
    assert done.returncode == 2 and problem in done.stderr


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--size", "384"], "--size 384 has no released weights"),
        (["--enhancer", "codeformer"], "--enhancer codeformer is not one SadTalker loads"),
        (["--enhancer", "gfpgan", "--background_enhancer", "realesrgan"], "--background_enhancer downloads"),
        (["--result_dir", "elsewhere"], "--result_dir is set by the backend"),
        (["--batch_size", "0"], "--batch_size must be at least 1"),
    ],
)
def test_sadtalker_arguments_that_would_fail_late_or_download_are_refused_at_start_up(tmp_path, args, problem) -> None:
    root = fake_sadtalker(tmp_path / "SadTalker")
    with pytest.raises(ApplicationError) as info:
        SadTalker(root, extra_args=args)
    assert info.value.type == "MissingWeights" and problem in info.value.message


def test_sadtalker_size_512_needs_the_512_checkpoint(tmp_path, speech) -> None:
    root = fake_sadtalker(tmp_path / "SadTalker")
    args = ["--still", "--preprocess", "full", "--size", "512"]
    with pytest.raises(ApplicationError, match="lack SadTalker_V0.0.2_512.safetensors") as info:
        SadTalker(root, extra_args=args)
    assert info.value.type == "MissingWeights"
    (root / "checkpoints" / "SadTalker_V0.0.2_512.safetensors").write_bytes(b"not really weights")
    out = SadTalker(root, extra_args=args).animate(_portrait(tmp_path), speech, tmp_path / "job", lambda _f: None)
    assert _last_call(root)["loaded"] == ["SadTalker_V0.0.2_512.safetensors", "mapping_00109-model.pth.tar"]
    assert (probe(out).width, probe(out).height) == SIZE, "full pastes the face back into the portrait"


@pytest.mark.parametrize(
    ("preprocess", "mapping", "size"),
    [("full", "mapping_00109-model.pth.tar", SIZE), ("crop", "mapping_00229-model.pth.tar", (256, 256))],
)
def test_sadtalker_mapping_checkpoint_and_video_size_follow_preprocess(
    tmp_path, speech, preprocess, mapping, size
) -> None:
    root = fake_sadtalker(tmp_path / "SadTalker")
    out = SadTalker(root, extra_args=["--still", "--preprocess", preprocess]).animate(
        _portrait(tmp_path), speech, tmp_path / "job", lambda _f: None
    )
    assert _last_call(root)["loaded"] == ["SadTalker_V0.0.2_256.safetensors", mapping]
    assert (probe(out).width, probe(out).height) == size
    (root / "checkpoints" / mapping).unlink()
    with pytest.raises(ApplicationError, match=f"lack {mapping}"):
        SadTalker(root, extra_args=["--still", "--preprocess", preprocess])


def test_sadtalker_without_safetensors_needs_the_old_checkpoints(tmp_path) -> None:
    root = fake_sadtalker(tmp_path / "SadTalker")
    (root / "checkpoints" / "SadTalker_V0.0.2_256.safetensors").unlink()
    with pytest.raises(ApplicationError, match=f"SadTalker checkpoints {root / 'checkpoints'}") as info:
        SadTalker(root)
    assert info.value.type == "MissingWeights"
    assert "lack wav2lip.pth, auido2pose_00140-model.pth" in info.value.message


def test_sadtalker_without_checkpoints_fails_at_start_up(tmp_path) -> None:
    root = fake_sadtalker(tmp_path / "SadTalker")
    for ckpt in (root / "checkpoints").iterdir():
        ckpt.unlink()
    with pytest.raises(ApplicationError, match=f"SadTalker checkpoints {root / 'checkpoints'}") as info:
        SadTalker(root)
    assert info.value.type == "MissingWeights"


@pytest.mark.parametrize(
    ("args", "removed"),
    [
        (None, "alignment_WFLW_4HG.pth"),
        (None, "detection_Resnet50_Final.pth"),
        (["--still", "--preprocess", "full", "--enhancer", "gfpgan"], "parsing_parsenet.pth"),
        (["--still", "--preprocess", "full", "--enhancer", "gfpgan"], "GFPGANv1.4.pth"),
        (["--still", "--preprocess", "full", "--enhancer", "RestoreFormer"], "RestoreFormer.pth"),
    ],
)
def test_sadtalker_face_weights_are_checked_in_the_checkouts_gfpgan_folder(tmp_path, speech, args, removed) -> None:
    root = fake_sadtalker(tmp_path / "SadTalker")
    (root / "gfpgan" / "weights" / removed).unlink(missing_ok=True)
    with pytest.raises(ApplicationError) as info:
        SadTalker(root, extra_args=args)
    assert info.value.type == "MissingWeights"
    assert f"lacks gfpgan/weights/{removed}" in info.value.message and str(root.resolve()) in info.value.message
    # Without the check the stand-in, like the real inference.py, would try to download it at the render.
    root = fake_sadtalker(tmp_path / "Checked")
    (root / "gfpgan" / "weights" / removed).write_bytes(b"not really weights")
    backend = SadTalker(root, extra_args=args)
    (root / "gfpgan" / "weights" / removed).unlink(missing_ok=True)
    with pytest.raises(ApplicationError) as late:
        backend.animate(_portrait(tmp_path), speech, tmp_path / "job", lambda _f: None)
    assert late.value.type == "BackendFailed" and "Temporary failure in name resolution" in late.value.message


def test_sadtalker_enhancer_doubles_the_video_and_may_read_the_checkouts_checkpoints(tmp_path, speech) -> None:
    root = fake_sadtalker(tmp_path / "SadTalker")
    model = root / "gfpgan" / "weights" / "GFPGANv1.4.pth"
    model.rename(root / "checkpoints" / model.name)  # its second place, relative to the working directory
    backend = SadTalker(root, extra_args=["--still", "--preprocess", "full", "--enhancer", "gfpgan"])
    out = backend.animate(_portrait(tmp_path), speech, tmp_path / "job", lambda _f: None)
    assert (probe(out).width, probe(out).height) == (2 * SIZE[0], 2 * SIZE[1])
    assert out.parent == (tmp_path / "job" / "sadtalker").resolve() and out.name.endswith(".mp4")


def test_sadtalker_verbose_keeps_intermediates_but_the_final_video_is_returned(tmp_path, speech) -> None:
    root = fake_sadtalker(tmp_path / "SadTalker")
    portrait = _portrait(tmp_path)
    out = SadTalker(root, extra_args=["--still", "--preprocess", "full", "--verbose"]).animate(
        portrait, speech, tmp_path / "job", lambda _f: None
    )
    kept = out.parent / out.stem
    assert kept.is_dir() and sorted(p.name for p in kept.glob("*.mp4")) == [f"portrait##{speech.stem}.mp4"]
    assert list(out.parent.glob("*.mp4")) == [out]


def test_sadtalker_never_returns_an_earlier_attempts_video(tmp_path, speech) -> None:
    root = fake_sadtalker(tmp_path / "SadTalker")
    portrait = _portrait(tmp_path)
    SadTalker(root).animate(portrait, speech, tmp_path / "job", lambda _f: None)
    (root / "MODE").write_text("nooutput")  # the retry finds no face and exits 0 without a video
    with pytest.raises(ApplicationError) as info:
        SadTalker(root).animate(portrait, speech, tmp_path / "job", lambda _f: None)
    assert info.value.type == "BackendFailed" and "wrote no video" in info.value.message


@pytest.mark.parametrize(
    ("make", "missing"),
    [
        (lambda root: root, "has no inference.py"),
        (lambda root: (fake_wav2lip(root), (root / "checkpoints" / "wav2lip_gan.pth").unlink())[0], "wav2lip_gan.pth"),
    ],
    ids=["no-checkout", "no-checkpoint"],
)
def test_wav2lip_broken_checkout_fails_at_start_up_naming_the_path(tmp_path, make, missing) -> None:
    root = tmp_path / "Wav2Lip"
    root.mkdir()
    make(root)
    with pytest.raises(ApplicationError) as info:
        Wav2Lip(root)
    assert info.value.type == "MissingWeights" and info.value.non_retryable
    assert str(root) in info.value.message and missing in info.value.message


def test_a_checkout_missing_its_dependencies_is_a_non_retryable_error_naming_it(tmp_path, speech, face_video) -> None:
    root = fake_wav2lip(tmp_path / "Wav2Lip", mode="broken")
    with pytest.raises(ApplicationError) as info:
        Wav2Lip(root).lipsync(face_video, speech, tmp_path / "job", lambda _f: None)
    err = info.value
    assert err.type == "MissingWeights" and err.non_retryable
    assert f"Wav2Lip checkout {root.resolve()}" in err.message and "No module named 'face_detection'" in err.message


def test_a_crash_is_retryable_and_carries_the_tail_of_stderr(tmp_path, speech, face_video) -> None:
    root = fake_wav2lip(tmp_path / "Wav2Lip", mode="crash")
    with pytest.raises(ApplicationError) as info:
        Wav2Lip(root).lipsync(face_video, speech, tmp_path / "job", lambda _f: None)
    err = info.value
    assert err.type == "BackendFailed" and not err.non_retryable
    assert "exited with 1" in err.message and "CUDA out of memory" in err.message


def test_no_output_is_a_non_retryable_error(tmp_path, speech) -> None:
    root = fake_sadtalker(tmp_path / "SadTalker", mode="nooutput")
    portrait = tmp_path / "portrait.png"
    Image.new("RGB", SIZE).save(portrait)
    with pytest.raises(ApplicationError) as info:
        SadTalker(root).animate(portrait, speech, tmp_path / "job", lambda _f: None)
    assert info.value.type == "BackendFailed" and info.value.non_retryable
    assert "wrote no video" in info.value.message and "Can't get the coeffs" in info.value.message


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _children() -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def test_our_timeout_kills_the_tool(tmp_path, speech, face_video) -> None:
    root = fake_wav2lip(tmp_path / "Wav2Lip", mode="hang")
    before = set(_children())
    started = time.monotonic()
    with pytest.raises(ApplicationError) as info:
        Wav2Lip(root, timeout=1.0).lipsync(face_video, speech, tmp_path / "job", lambda _f: None)
    assert time.monotonic() - started < 10
    assert info.value.type == "BackendTimeout" and not info.value.non_retryable
    assert "ran past 1 s" in info.value.message
    assert not [pid for pid in _children() if pid not in before and _alive(pid)]


def test_cancellation_kills_the_tool(tmp_path, speech, face_video) -> None:
    root = fake_wav2lip(tmp_path / "Wav2Lip", mode="hang")
    before = set(_children())
    started = time.monotonic()

    def progress(_fraction: float) -> None:
        if time.monotonic() - started > 0.5:
            raise RenderCancelled("cancelled")

    with pytest.raises(RenderCancelled):
        Wav2Lip(root).lipsync(face_video, speech, tmp_path / "job", progress)
    assert time.monotonic() - started < 10
    assert not [pid for pid in _children() if pid not in before and _alive(pid)]
