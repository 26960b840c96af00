"""`RenderActivities.render_video` as an activity: heartbeats, frame sizes, captions, cancellation, failures.

Runs the real embedded renderer inside `temporalio.testing.ActivityEnvironment` with an
in-memory object store; small sizes (480p, a few seconds of speech) keep the module fast.
"""

import os
import shutil
import threading
import wave
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import ActivityEnvironment

import gpu_worker.backends.render as stages
import gpu_worker.media.pipeline as pipeline
from core.storage import parse_s3_uri, s3_uri
from gpu_worker.media.encode import EncodeError
from gpu_worker.media.voices import Narrator
from gpu_worker.rendering import RENDER_STAGES, RenderActivities
from schemas.media import frame_size
from schemas.speech import split_sentences
from schemas.tasks import ProfileRef, RenderInput, RenderPlan, RenderResult, RenderSettings, Script
from tests.conftest import astronaut_png

STAGE = "A quiet library with tall wooden shelves"
SHORT = "Hello there. Books are quiet friends."  # about 2.5 s of speech
LONGER = (
    "Hello, and welcome. Today we visit a library. The shelves are tall and full of stories. "
    "Every book waits for a reader. Let us open one together, and see where it takes us."
)
SILENCE = 200  # int16 amplitude under which espeak-ng output counts as silence (as in speech.trim_silence)


class FakeStore:
    """Objects as files in a temporary directory, indexed by `s3://` URI in a dict."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects: dict[str, Path] = {}

    def put_file(
        self, bucket: str, key: str, path: Path, content_type: str = "application/octet-stream"
    ) -> tuple[str, int]:
        uri = s3_uri(bucket, key)
        dest = self.root / bucket / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        self.objects[uri] = dest
        return uri, dest.stat().st_size

    def download(self, uri: str, dest: Path) -> Path:
        parse_s3_uri(uri)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.objects[uri], dest)
        return dest

    def exists(self, uri: str) -> bool:
        return uri in self.objects

    def get_bytes(self, uri: str) -> bytes:
        return self.objects[uri].read_bytes()

    def path(self, uri: str) -> Path:
        return self.objects[uri]


def render_input(
    variant: str = "svd",
    aspect_ratio: str = "16:9",
    captions: bool = False,
    narrative: str = SHORT,
    portrait_uri: str | None = None,
    job_id: str = "job-test",
    duration_seconds: float = 5,
) -> RenderInput:
    options = RenderSettings(
        duration_seconds=duration_seconds, resolution="480p", aspect_ratio=aspect_ratio, fps=25, captions=captions
    )
    return RenderInput(
        job_id=job_id,
        node_id="render",
        pipeline=RenderPlan(variant=variant, portrait_uri=portrait_uri),  # type: ignore[arg-type]
        script=Script(stage=STAGE, narrative=narrative),
        profile=ProfileRef(),
        options=options,
    )


def run(acts: RenderActivities, inp: RenderInput, env: ActivityEnvironment | None = None) -> RenderResult:
    env = env or ActivityEnvironment()
    return env.run(acts.render_video, inp)


@pytest.fixture
def store(tmp_path: Path) -> FakeStore:
    return FakeStore(tmp_path / "store")


@pytest.fixture
def acts(store: FakeStore, tmp_path: Path) -> RenderActivities:
    return RenderActivities(store, tmp_path / "work")  # type: ignore[arg-type]


def _probe(path: Path) -> tuple[int, int, str, str | None]:
    with av.open(str(path)) as container:
        video = container.streams.video[0].codec_context
        audio = next(iter(container.streams.audio), None)
        return video.width, video.height, video.name, audio.codec_context.name if audio is not None else None


def _parse_srt(text: str) -> list[tuple[float, float, str]]:
    def seconds(stamp: str) -> float:
        h, m, rest = stamp.strip().split(":")
        s, ms = rest.split(",")
        return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000

    cues = []
    for block in text.strip().split("\n\n"):
        lines = block.strip().splitlines()
        start, end = lines[1].split("-->")
        cues.append((seconds(start), seconds(end), " ".join(lines[2:])))
    return cues


# ---------------------------------------------------------------- one full render, looked at from several sides


@pytest.fixture(scope="module")
def captioned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An svd render with captions and a real portrait, with every heartbeat it sent."""
    root = tmp_path_factory.mktemp("captioned")
    store = FakeStore(root / "store")
    portrait_uri, _ = store.put_file("uploads", "local/face.png", astronaut_png(root / "face.png"), "image/png")
    heartbeats: list[dict[str, Any]] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: heartbeats.append(details[0])
    # Every progress update heartbeats (not at most once a second), so the test does not depend on render speed.
    acts = RenderActivities(store, root / "work", heartbeat_interval=0.0)  # type: ignore[arg-type]
    inp = render_input("svd", captions=True, narrative=LONGER, portrait_uri=portrait_uri, duration_seconds=10)
    result = run(acts, inp, env)
    return {"store": store, "result": result, "heartbeats": heartbeats, "work": root / "work", "input": inp}


def test_render_uploads_video_and_every_asset_under_the_node_prefix(captioned) -> None:
    result: RenderResult = captioned["result"]
    store: FakeStore = captioned["store"]
    kinds = {a.kind: a for a in result.assets}
    assert set(kinds) == {"video", "thumbnail", "audio", "scene", "captions"}  # no base clip: Ken Burns of `scene`
    for asset in result.assets:
        bucket, key = parse_s3_uri(asset.uri)
        assert (bucket, key.rsplit("/", 1)[0]) == ("artifacts", "jobs/job-test/render")
        assert store.exists(asset.uri) and asset.size_bytes == store.path(asset.uri).stat().st_size > 0
    assert result.video.uri == kinds["video"].uri and result.video.thumbnail_uri == kinds["thumbnail"].uri
    assert result.video.variant == "svd" and result.video.duration > 4
    assert _probe(store.path(result.video.uri))[2:] == ("h264", "aac")
    assert not any(captioned["work"].rglob("*.mp4")), "the scratch directory is cleaned up"


def test_heartbeats_carry_stage_progress_and_never_go_backwards(captioned) -> None:
    beats: list[dict[str, Any]] = captioned["heartbeats"]
    assert len(beats) >= 5
    for beat in beats:
        assert {"stage", "percent", "stage_index", "stage_count"} <= set(beat), beat
        assert beat["stage_count"] == len(RENDER_STAGES) and 0 <= beat["stage_index"] < beat["stage_count"]
        assert 0 <= beat["percent"] <= 100
    percents = [b["percent"] for b in beats]
    assert percents == sorted(percents), percents
    indices = [b["stage_index"] for b in beats]
    assert indices == sorted(indices), [(b["stage"], b["stage_index"]) for b in beats]
    stages = list(dict.fromkeys(b["stage"] for b in beats if b["stage"] in RENDER_STAGES))
    assert stages == list(RENDER_STAGES), stages  # every stage reported, in order
    assert beats[-1]["stage"] == "upload" and beats[-1]["percent"] > 90
    animate = [b["percent"] for b in beats if b["stage"] == "animate"]
    assert len(set(animate)) >= 2, "progress moves inside the long stage"


def test_captions_follow_the_words_and_partition_the_audio(captioned) -> None:
    result: RenderResult = captioned["result"]
    store: FakeStore = captioned["store"]
    assets = {a.kind: a for a in result.assets}
    captions = {a.content_type: a for a in result.assets if a.kind == "captions"}
    assert set(captions) == {"application/x-subrip", "text/vtt", "text/x-ssa"}
    cues = _parse_srt(store.get_bytes(captions["application/x-subrip"].uri).decode())
    # Short cues of whole words, never across a sentence; their timing is checked against the rendered
    # audio itself below (a fresh synthesis would differ: the neural voice samples its durations).
    assert " ".join(c[2] for c in cues).split() == LONGER.split()
    sentences = [s.split() for s in split_sentences(LONGER)]
    assert all(any(" ".join(c[2].split()) in " ".join(s) for s in sentences) for c in cues)
    with wave.open(str(store.path(assets["audio"].uri)), "rb") as wav:
        rate = wav.getframerate()
        samples = np.abs(np.frombuffer(wav.readframes(wav.getnframes()), np.int16).astype(np.int32))
    duration = len(samples) / rate
    # The cues are ordered, disjoint and inside the audio; every sound is inside a cue, every cue has sound.
    bounds = [t for c in cues for t in c[:2]]
    assert bounds == sorted(bounds) and bounds[0] >= 0 and bounds[-1] <= duration + 0.001
    inside = np.zeros(len(samples), bool)
    frame = int(0.04 * rate)  # what a viewer can tell apart at 25 fps
    for start, end, text in cues:
        cue = slice(int(start * rate), int(np.ceil(end * rate)))
        inside[max(0, cue.start - frame) : cue.stop + frame] = True
        assert samples[cue].max() > 10 * SILENCE, f"cue {text!r} is silent"
    outside = np.flatnonzero(samples * ~inside > SILENCE)
    assert outside.size == 0, f"speech outside every cue at {outside[:5] / rate} s"
    assert result.video.duration == pytest.approx(duration, abs=0.01)


# ---------------------------------------------------------------- frame sizes


@pytest.mark.parametrize(("aspect_ratio", "variant"), [("16:9", "sadtalker"), ("9:16", "sadtalker"), ("1:1", "svd")])
def test_aspect_ratio_gives_the_frame_size(acts, store, aspect_ratio: str, variant: str) -> None:
    result = run(acts, render_input(variant, aspect_ratio))
    size = frame_size("480p", aspect_ratio)
    assert _probe(store.path(result.video.uri)) == (*size, "h264", "aac")
    assert Image.open(store.path(result.video.thumbnail_uri or "")).size == size
    assert min(size) == 480 and size[0] % 2 == 0 and size[1] % 2 == 0


# ---------------------------------------------------------------- cancellation


def test_cancel_during_the_render_raises_cancelled_and_uploads_no_video(acts, store, tmp_path: Path) -> None:
    env = ActivityEnvironment()
    animating = threading.Event()
    beats: list[dict[str, Any]] = []

    def on_heartbeat(*details: Any) -> None:
        beats.append(details[0])
        if details[0]["stage"] == "animate":
            animating.set()

    env.on_heartbeat = on_heartbeat

    def cancel_once_animating() -> None:
        if animating.wait(30):
            env.cancel()

    canceller = threading.Thread(target=cancel_once_animating, daemon=True)
    canceller.start()
    with pytest.raises(CancelledError):
        run(acts, render_input("sadtalker", narrative=LONGER), env)
    canceller.join(5)
    assert animating.is_set() and beats[-1]["stage"] in ("animate", "encode")
    assert not [uri for uri in store.objects if uri.endswith(".mp4")], store.objects
    assert not any((tmp_path / "work").rglob("*.*")), "scratch files are removed"
    assert not _ffmpeg_children(), "the encoder was stopped"


def _ffmpeg_children() -> list[int]:
    """Live ffmpeg processes started by this process (a cancelled render must not leave its encoder running)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" (", 1)
            comm, fields = rest.rsplit(") ", 1)
        except OSError:
            continue
        state, ppid = fields.split()[:2]
        if int(ppid) == os.getpid() and "ffmpeg" in comm and state != "Z":
            found.append(int(pid))
    return found


# ---------------------------------------------------------------- failure injection


def _boom(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("injected failure")


def _frames_fail_on_first(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("injected failure")
    yield  # a generator, like talking_frames: it fails when the first frame is pulled


def _encode_dies_mid_stream(frames: Any, *_args: Any, **_kwargs: Any) -> int:
    for i, _frame in enumerate(frames):
        if i == 10:
            raise EncodeError("ffmpeg stopped reading frames: No space left on device")
    raise AssertionError("unreachable")


def _thumbnail_fails(*_args: Any, **_kwargs: Any) -> Path:
    raise EncodeError("ffmpeg exited with 1: could not write thumbnail")


FAILURES = [
    # (variant, where the function lives, its name, replacement, stage named, partial outputs)
    ("svd", Narrator, "speak", _boom, "speech", set()),
    ("svd", stages, "render_backdrop", _boom, "scene", {"audio", "captions"}),
    ("sadtalker", stages, "frame_portrait", _boom, "scene", {"audio", "captions"}),
    ("svd", stages, "talking_frames", _frames_fail_on_first, "animate", {"audio", "scene", "captions"}),
    ("sadtalker", stages, "talking_frames", _frames_fail_on_first, "animate", {"audio", "scene", "captions"}),
    ("svd", pipeline, "encode_frames", _encode_dies_mid_stream, "encode", {"audio", "scene", "captions"}),
    ("svd", pipeline, "thumbnail", _thumbnail_fails, "thumbnail", {"audio", "scene", "captions", "video"}),
]


@pytest.mark.parametrize(
    ("variant", "owner", "target", "replacement", "stage", "partial"),
    FAILURES,
    ids=[f"{v}-{t}" for v, _o, t, *_ in FAILURES],
)
def test_a_failing_stage_names_itself_and_lists_the_outputs_already_uploaded(
    acts, store, monkeypatch, variant: str, owner: Any, target: str, replacement: Any, stage: str, partial: set[str]
) -> None:
    monkeypatch.setattr(owner, target, replacement)
    with pytest.raises(ApplicationError) as info:
        run(acts, render_input(variant, captions=True))
    err = info.value
    assert f"stage '{stage}'" in err.message, err.message
    assert err.type == "RenderStageFailed"
    listed = err.details[0]
    assert {a["kind"] for a in listed} == partial
    for asset in listed:
        assert store.exists(asset["uri"]) and asset["uri"].startswith("s3://artifacts/jobs/job-test/render/")
    assert set(store.objects) == {a["uri"] for a in listed}, "nothing uploaded that is not listed"


def test_bad_input_fails_at_once_instead_of_retrying(tmp_path: Path) -> None:
    store = FakeStore(tmp_path / "store")
    inp = render_input(variant="sadtalker").model_copy(update={"language": "xx-nope"})
    with pytest.raises(ApplicationError) as failure:
        ActivityEnvironment().run(RenderActivities(store, tmp_path / "work").render_video, inp)
    assert failure.value.type == "InvalidInput" and failure.value.non_retryable
    assert "stage 'speech'" in failure.value.message and "xx-nope" in failure.value.message


def test_a_portrait_without_a_face_fails_at_once_instead_of_retrying(acts, store, tmp_path: Path) -> None:
    from skimage import data

    Image.fromarray(data.chelsea()).save(tmp_path / "cat.png")
    portrait_uri, _ = store.put_file("uploads", "local/cat.png", tmp_path / "cat.png", "image/png")
    with pytest.raises(ApplicationError) as failure:
        run(acts, render_input("sadtalker", portrait_uri=portrait_uri))
    assert failure.value.type == "NoFaceInPortrait" and failure.value.non_retryable
    assert "stage 'scene'" in failure.value.message and "no face" in failure.value.message


# ---------------------------------------------------------------- the length the user asked for


def _stream_seconds(path: Path) -> tuple[float, float]:
    """Durations of the video stream and the audio stream, each measured on its own decoded frames."""
    with av.open(str(path)) as container:
        video = sum(1 for _ in container.decode(video=0)) / float(container.streams.video[0].average_rate)
    with av.open(str(path)) as container:
        audio = sum(f.samples / f.sample_rate for f in container.decode(audio=0))
    return video, audio


def _longest_frozen_run(path: Path) -> float:
    """Seconds of the longest run of frames a viewer would see as identical."""
    with av.open(str(path)) as container:
        fps = float(container.streams.video[0].average_rate)
        previous, run, longest = None, 0, 0
        for frame in container.decode(video=0):
            pixels = frame.to_ndarray(format="gray").astype(np.int16)
            same = previous is not None and np.abs(pixels - previous).mean() < 0.05
            run = run + 1 if same else 0
            longest = max(longest, run)
            previous = pixels
    return longest / fps


@pytest.mark.parametrize("variant", ["svd", "sadtalker"])
def test_the_video_lasts_what_was_asked_with_speech_covering_it_and_no_frozen_tail(
    acts, store, tmp_path: Path, variant: str
) -> None:
    result = run(acts, render_input(variant, narrative=LONGER, duration_seconds=12))
    assert result.video.rendering["speech"] == "piper:en_US-joe-medium"
    video_path = tmp_path / "video.mp4"
    video_path.write_bytes(store.get_bytes(result.video.uri))
    video_seconds, audio_seconds = _stream_seconds(video_path)
    assert video_seconds == pytest.approx(12, rel=0.05) and audio_seconds == pytest.approx(12, rel=0.05)
    with wave.open(str(store.path(next(a.uri for a in result.assets if a.kind == "audio"))), "rb") as wav:
        rate = wav.getframerate()
        samples = np.abs(np.frombuffer(wav.readframes(wav.getnframes()), np.int16).astype(np.int32))
    loud = np.flatnonzero(samples > SILENCE)
    assert (loud[-1] - loud[0]) / rate >= 0.75 * 12, "speech covers at least 75 % of the video"
    assert _longest_frozen_run(video_path) <= 0.5, "the presenter keeps moving through the closing silence"
