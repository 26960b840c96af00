"""Wav2Lip and SadTalker subprocess wrappers against fake checkouts that honour the real command lines.

A fake checkout is acceptable only here (issue 3): what is under test is the wrapper's contract
(arguments, working directory, `ffmpeg` on the PATH, outputs found, timeout, cancellation, errors).
"""

import json
import os
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


def test_sadtalker_runs_in_its_checkout_and_returns_the_timestamped_video(tmp_path, speech) -> None:
    root = fake_sadtalker(tmp_path / "SadTalker")
    portrait = tmp_path / "portrait.png"
    Image.new("RGB", SIZE, (200, 180, 160)).save(portrait)
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
    assert out.parent == (tmp_path / "job" / "sadtalker").resolve() and out.suffix == ".mp4"
    info = probe(out)
    assert (info.width, info.height) == SIZE and info.has_audio and info.fps == 25


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


def test_sadtalker_without_checkpoints_fails_at_start_up(tmp_path) -> None:
    root = fake_sadtalker(tmp_path / "SadTalker")
    (root / "checkpoints" / "SadTalker_V0.0.2_256.safetensors").unlink()
    with pytest.raises(ApplicationError, match=f"SadTalker checkpoints {root / 'checkpoints'}") as info:
        SadTalker(root)
    assert info.value.type == "MissingWeights"


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
