from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from gpu_worker.media.animate import blink_schedule, camera_path, ken_burns, talking_frames
from gpu_worker.media.encode import EncodeError, encode_frames, probe, thumbnail, upscale
from gpu_worker.media.facemesh import face_mesh
from gpu_worker.media.faces import detect_face, mouth_box
from gpu_worker.media.pipeline import RenderCancelled, RenderOutputs, render_still_video
from gpu_worker.media.presenter import NoFaceInPortrait, builtin_portrait, find_face, frame_portrait
from gpu_worker.media.scene import compose_presenter, render_backdrop
from gpu_worker.media.speech import Segment, VoiceParams
from gpu_worker.media.visemes import mouth_track

from .conftest import FPS, NARRATIVE, SIZE, STAGE


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


Box = tuple[int, int, int, int]


def _mouth_change(frames: list[np.ndarray], ref: list[np.ndarray] | np.ndarray, box: Box | list[Box]) -> np.ndarray:
    """Mean absolute difference in the (slightly enlarged) mouth box, per frame."""
    refs = ref if isinstance(ref, list) else [ref] * len(frames)
    boxes = box if isinstance(box, list) else [box] * len(frames)
    out = []
    for f, r, (x, y, w, h) in zip(frames, refs, boxes, strict=True):
        region = (slice(y - h // 2, y + h + h // 2), slice(x - w // 4, x + w + w // 4))
        out.append(np.abs(f[region].astype(np.int16) - r[region].astype(np.int16)).mean())
    return np.array(out)


def _speaking(out: RenderOutputs, n: int, margin: float) -> np.ndarray:
    assert out.speech is not None
    t = np.arange(n) / FPS
    return np.any([(t >= s.start - margin) & (t < s.end + margin) for s in out.speech.segments], axis=0)


@pytest.mark.parametrize("fixture", ["svd_render", "sadtalker_render"])
def test_video_is_h264_aac_as_long_as_the_speech(fixture: str, request: pytest.FixtureRequest):
    out, calls = request.getfixturevalue(fixture)
    info = probe(out.video)
    assert (info.video_codec, info.audio_codec, info.has_audio) == ("h264", "aac", True)
    assert (info.width, info.height, info.fps) == (*SIZE, FPS)
    assert info.duration == pytest.approx(out.duration, rel=0.05)
    frames = _frames(out.video)
    assert len(frames) == pytest.approx(out.duration * FPS, rel=0.05)
    assert np.abs(frames[0].astype(np.int16) - frames[-1].astype(np.int16)).mean() > 1.0  # it moves
    assert Image.open(out.thumbnail).size == SIZE
    assert Image.open(out.scene_image).size[0] >= SIZE[0]
    stages = [s for s, _ in calls]
    assert stages[0] == "speech" and stages[-1] == "done" and "animate" in stages
    fractions = [f for _, f in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_svd_mouth_moves_with_speech_while_the_camera_drifts(svd_render):
    out, _ = svd_render
    assert out.base_clip is None, "a Ken Burns move over scene.png is not encoded twice"
    assert [p.name for p in out.captions] == ["captions.srt", "captions.vtt", "captions.ass"]
    assert "-->" in out.captions[0].read_text()
    frames = _frames(out.video)
    faces = [detect_face(frame) for frame in frames]  # the camera moves: follow the face
    assert all(face is not None and face[0] > SIZE[0] // 2 for face in faces)  # the presenter sits at the right
    boxes = [mouth_box(face) for face in faces if face is not None]
    # Frame-to-frame change around the mouth: the slow camera drift is there all along, the mouth only while speaking.
    change = _mouth_change(frames[1:], frames[:-1], boxes[1:])
    n = len(change)
    speaking = _speaking(out, n + 1, margin=0.0)[1:]
    quiet = ~_speaking(out, n + 1, margin=0.12)[1:]
    assert change[speaking].mean() > 1.5 * change[quiet].mean()


def test_sadtalker_mouth_moves_more_while_speaking(sadtalker_render):
    out, _ = sadtalker_render
    assert out.base_clip is None and out.captions == []
    frames = _frames(out.video)
    face = detect_face(frames[0])
    assert face is not None
    x, y, w, h = mouth_box(face)
    # Head motion moves everything a little; the mouth moves a lot more, but only while speaking.
    mouth = np.array([f[y : y + h, x : x + w].astype(np.float32).std() for f in frames])
    speaking, quiet = _speaking(out, len(frames), 0.0), ~_speaking(out, len(frames), 0.12)
    assert np.abs(np.diff(mouth))[speaking[1:]].mean() > 2 * np.abs(np.diff(mouth))[quiet[1:]].mean()


def test_talking_frames_pose_the_mouth_and_blink():
    portrait, _ = frame_portrait(builtin_portrait(), (320, 240))
    face, lips = find_face(portrait)
    base = np.asarray(portrait)
    spans = [Segment("ɑː", 0.4, 0.52), Segment("m", 0.52, 0.6)]  # frame 0: rest; 11: "a"; 14: "m"
    track = mouth_track(spans, FPS, 18)
    frames = list(talking_frames(portrait, face, lips, track))
    change = _mouth_change(frames, base, mouth_box(face))
    assert change[11] > 2 * change[0]  # the open "a" changes the mouth far more than the resting lips
    mesh = [face_mesh(frame) for frame in frames]
    assert all(m is not None for m in mesh)
    assert mesh[11].mouth_openness() > 2 * mesh[14].mouth_openness()  # type: ignore[union-attr]
    assert mesh[14].mouth_openness() < 0.15  # type: ignore[union-attr]
    blinking = list(
        talking_frames(portrait, face, lips, mouth_track([], FPS, 3), blinks=np.array([0, 1, 0], np.float32))
    )
    assert np.abs(blinking[1].astype(np.int16) - base).mean() > np.abs(blinking[0].astype(np.int16) - base).mean()


def test_blinks_every_few_seconds():
    closure = blink_schedule(25 * 20, 25, seed=3)
    starts = np.flatnonzero(np.diff((closure > 0.5).astype(int)) == 1) / 25
    assert 3 <= len(starts) <= 7 and np.all(np.diff(starts) >= 2.9)


def test_ken_burns_moves_slowly_and_stays_inside():
    scene = render_backdrop(STAGE, (352, 198), seed=1)
    frames = list(ken_burns(scene, (320, 180), 50, seed=1))
    assert len(frames) == 50 and frames[0].shape == (180, 320, 3)
    steps = [np.abs(a.astype(np.int16) - b).mean() for a, b in zip(frames, frames[1:], strict=False)]
    assert 0 < max(steps) < 8
    for m in camera_path((352, 198), (320, 180), 50, seed=1):  # the view never leaves the source
        s, tx, ty = m[0, 0], m[0, 2], m[1, 2]
        assert tx <= 1e-6 and ty <= 1e-6 and s * 352 + tx >= 320 - 1e-6 and s * 198 + ty >= 180 - 1e-6


def test_backdrop_is_deterministic_and_follows_the_words():
    a = np.asarray(render_backdrop("A pine forest in spring", (160, 90), seed=7))
    b = np.asarray(render_backdrop("A pine forest in spring", (160, 90), seed=7))
    c = np.asarray(render_backdrop("A city office at night", (160, 90), seed=7))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a[60:, :, 1].mean() > a[60:, :, 0].mean()  # green ground in the forest


def test_compose_presenter_reports_where_the_face_is():
    scene, face = compose_presenter(render_backdrop(STAGE, (640, 360), seed=0), builtin_portrait())
    found = detect_face(np.asarray(scene))
    assert found is not None and _iou(found, face) > 0.5
    assert face[0] > 320


def test_detect_face_on_a_blank_image_is_none():
    assert detect_face(np.full((120, 160, 3), 128, np.uint8)) is None


def test_encode_thumbnail_upscale(tmp_path: Path, speech):
    n = int(speech.duration * 10) + 1
    frames = (np.full((64, 96, 3), i * 255 // n, np.uint8) for i in range(n))
    assert encode_frames(frames, (96, 64), 10, tmp_path / "v.mp4", audio=speech.path, preset="ultrafast") == n
    info = probe(tmp_path / "v.mp4")
    assert info.duration == pytest.approx(speech.duration, rel=0.05) and info.audio_codec == "aac"
    assert Image.open(thumbnail(tmp_path / "v.mp4", tmp_path / "t.jpg")).size == (96, 64)
    big = probe(upscale(tmp_path / "v.mp4", (192, 128), tmp_path / "big.mp4"))
    assert (big.width, big.height, big.has_audio) == (192, 128, True)


def test_failed_or_interrupted_encode_leaves_no_file(tmp_path: Path):
    def frames():
        yield np.zeros((64, 96, 3), np.uint8)
        raise RenderCancelled("stop")

    with pytest.raises(RenderCancelled):
        encode_frames(frames(), (96, 64), 10, tmp_path / "v.mp4")
    with pytest.raises(ValueError, match="does not match"):
        encode_frames([np.zeros((10, 10, 3), np.uint8)], (96, 64), 10, tmp_path / "w.mp4")
    with pytest.raises(EncodeError):
        encode_frames(
            [np.zeros((64, 96, 3), np.uint8)], (96, 64), 10, tmp_path / "x.mp4", audio=tmp_path / "missing.wav"
        )
    assert list(tmp_path.glob("*.mp4")) == []


def test_cancel_stops_the_render(tmp_path: Path):
    polls = iter(range(1000))
    with pytest.raises(RenderCancelled):
        render_still_video(
            STAGE,
            NARRATIVE,
            tmp_path,
            SIZE,
            FPS,
            VoiceParams(),
            None,
            "svd",
            False,
            progress=lambda *_: None,
            cancelled=lambda: next(polls) >= 3,
        )
    assert not (tmp_path / "video.mp4").exists() and not (tmp_path / "base.mp4").exists()
    with pytest.raises(ValueError, match="variant"):
        render_still_video(
            STAGE, NARRATIVE, tmp_path, SIZE, FPS, VoiceParams(), None, "wav2lip", False, lambda *_: None, lambda: False
        )


def test_a_portrait_without_a_face_fails_the_render_for_good(tmp_path: Path):
    from skimage import data

    cat = Image.fromarray(data.chelsea())
    args = ("", "Meow.", tmp_path, (320, 180), FPS, VoiceParams(), cat, "sadtalker", False)
    with pytest.raises(NoFaceInPortrait) as info:
        render_still_video(*args, progress=lambda *_: None, cancelled=lambda: False)
    assert info.value.type == "NoFaceInPortrait" and info.value.non_retryable
    assert not (tmp_path / "video.mp4").exists()
