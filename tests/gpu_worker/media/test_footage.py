"""Scenes from the caller's own media: cut at sentence starts, stills filled without bars or stretching,
clips trimmed or looped and silent, the presenter composed over every frame."""

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageDraw
from temporalio.exceptions import ApplicationError

from gpu_worker.backends.render import MEDIA_MONTAGE, UPLOADED_MEDIA
from gpu_worker.media.faces import detect_face
from gpu_worker.media.footage import (
    CROSSFADE_SECONDS,
    PresenterOverlay,
    Scene,
    UnreadableMedium,
    clip_frames,
    montage,
    plan_scenes,
    prepare_still,
)
from gpu_worker.media.pipeline import RenderOutputs, render_still_video
from gpu_worker.media.scene import presenter_layer
from gpu_worker.media.speech import Segment, VoiceParams
from gpu_worker.rendering import RenderActivities
from schemas import names
from tests.api.test_media_uploads import YELLOW, write_clip
from tests.gpu_worker.test_rendering import FakeStore, render_input, run

from .conftest import FPS, SIZE

RED, GREEN, BLUE = (220, 40, 40), (40, 190, 60), (40, 80, 230)
SENTENCES = (
    "Hello and welcome to the tour. Here is the green garden. Now the blue lake. Then a short film. Last, red again."
)
TONE_HZ = 3000


def _sentences(*starts: float) -> list[Segment]:
    return [Segment(f"s{i}", start, start + 0.8) for i, start in enumerate(starts)]


def _still(path: Path, colour: tuple[int, int, int], size: tuple[int, int]) -> Path:
    """A flat colour with faint stripes (so a camera move shows) and a circle (so stretching shows)."""
    image = Image.new("RGB", size, colour)
    draw = ImageDraw.Draw(image)
    for y in range(0, size[1], 16):
        draw.line([(0, y), (size[0], y)], fill=tuple(c * 3 // 4 for c in colour), width=2)
    r = min(size) // 4
    draw.ellipse([size[0] // 2 - r, size[1] // 2 - r, size[0] // 2 + r, size[1] // 2 + r], fill=(250, 250, 250))
    image.save(path)
    return path


def test_scenes_cut_at_sentence_starts_and_cycle_through_the_media() -> None:
    media = [Path("a.png"), Path("b.mp4")]
    scenes = plan_scenes(media, _sentences(0.3, 2.0, 4.0, 6.0), FPS, 200)
    fade = round(CROSSFADE_SECONDS * FPS)
    assert [s.medium.name for s in scenes] == ["a.png", "b.mp4", "a.png", "b.mp4"]
    assert [(s.start, s.end) for s in scenes] == [(0, 50), (50 - fade, 100), (100 - fade, 150), (150 - fade, 200)]
    assert len({s.seed for s in scenes}) == 4, "each still moves its own way"


def test_sentences_too_close_to_a_cut_or_the_end_stay_in_the_scene() -> None:
    scenes = plan_scenes([Path("a.png")] * 3, _sentences(0.3, 0.9, 3.0, 7.6), FPS, 200)
    assert [(s.start, s.end) for s in scenes] == [(0, 75), (75 - round(CROSSFADE_SECONDS * FPS), 200)]
    assert plan_scenes([Path("a.png")], [], FPS, 10) == [Scene(Path("a.png"), 0, 10, 0)]


@pytest.mark.parametrize(("photo", "frame"), [((300, 200), (426, 240)), ((200, 300), (426, 240)),
                                              ((300, 200), (240, 426)), ((512, 512), (426, 240))])  # fmt: skip
def test_a_still_fills_the_frame_without_bars_or_stretching(tmp_path: Path, photo, frame) -> None:
    prepared = prepare_still(Image.open(_still(tmp_path / "p.png", RED, photo)), frame)
    assert prepared.shape[1] >= frame[0] and prepared.shape[0] >= frame[1]
    assert prepared.shape[1] / prepared.shape[0] == pytest.approx(frame[0] / frame[1], rel=0.01)
    edges = np.concatenate([prepared[:, :3].reshape(-1, 3), prepared[:, -3:].reshape(-1, 3),
                            prepared[:3].reshape(-1, 3), prepared[-3:].reshape(-1, 3)])  # fmt: skip
    assert edges.max(axis=1).min() > 60, "no black bars"
    ys, xs = np.nonzero(prepared.min(axis=2) > 235)  # the white circle
    assert (np.ptp(xs) + 1) / (np.ptp(ys) + 1) == pytest.approx(1.0, abs=0.05), "a circle stays a circle"
    other_orientation = (photo[0] - photo[1]) * (frame[0] - frame[1]) < 0
    if other_orientation:  # the whole photo, over a dimmed blur of itself on both sides
        sides = np.concatenate([prepared[:, :10], prepared[:, -10:]], axis=1).astype(float)
        assert sides.mean(axis=(0, 1))[0] < RED[0] * 0.85 and sides.std(axis=(0, 1)).max() < 40
        scale = min(prepared.shape[1] / photo[0], prepared.shape[0] / photo[1])
        assert np.ptp(ys) + 1 == pytest.approx(min(photo) // 2 * scale, rel=0.1), "the photo is whole"


def test_clip_frames_are_trimmed_or_looped_at_the_output_rate(tmp_path: Path) -> None:
    clip = tmp_path / "counter.mp4"
    with av.open(str(clip), "w") as out:  # 10 frames at 10 fps; frame k has brightness 20 k
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for k in range(10):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * k, np.uint8), format="rgb24")))
        out.mux(stream.encode())
    trimmed = [float(f.mean()) for f in clip_frames(clip, (80, 60), 25, 10)]
    assert len(trimmed) == 10 and trimmed == sorted(trimmed)
    looped = np.array([f.mean() for f in clip_frames(clip, (80, 60), 25, 60)])
    expected = 20 * (np.arange(60) % 25 * 10 // 25)  # output frame → source frame, restarting every 25 (1 s)
    assert np.abs(looped - expected).max() < 6


def test_a_sideways_phone_clip_is_shown_upright(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "phone.mp4", size=(96, 64), rotation=90)  # stored landscape, shown portrait
    frame = next(clip_frames(clip, (60, 120), 25, 1))
    assert frame.shape == (120, 60, 3)
    yellow = np.all(np.abs(frame.astype(int) - YELLOW) < 40, axis=2)
    assert yellow.all(axis=0).any() and yellow.sum() > 0.8 * frame.shape[0] * frame.shape[1]


def test_broken_media_fail_before_the_first_frame(tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(UnreadableMedium, match="broken.png is not a readable image"):
        montage([Scene(broken, 0, 5, 0)], SIZE, FPS)
    clip = tmp_path / "broken.webm"
    clip.write_bytes(b"\x1aE\xdf\xa3 nothing more")
    with pytest.raises(UnreadableMedium, match="broken.webm"):
        montage([Scene(clip, 0, 5, 0)], SIZE, FPS)


def test_the_presenter_overlay_matches_compose_presenter(tmp_path: Path) -> None:
    from gpu_worker.media.presenter import builtin_portrait
    from gpu_worker.media.scene import compose_presenter

    backdrop = Image.open(_still(tmp_path / "b.png", BLUE, SIZE))
    layer, box = presenter_layer(SIZE, builtin_portrait())
    composed, composed_box = compose_presenter(backdrop, builtin_portrait())
    overlaid = PresenterOverlay(layer).over(np.asarray(backdrop))
    assert np.abs(overlaid.astype(int) - np.asarray(composed, int)).max() <= 1
    assert box == composed_box


@pytest.fixture(scope="module")
def media_render(tmp_path_factory: pytest.TempPathFactory) -> RenderOutputs:
    """Three stills (one portrait-shaped) and a clip with a loud tone, behind five sentences."""
    folder = tmp_path_factory.mktemp("media")
    media = [
        _still(folder / "red.png", RED, (320, 200)),
        _still(folder / "green.jpg", GREEN, (200, 320)),
        _still(folder / "blue.webp", BLUE, (400, 240)),
        write_clip(folder / "clip.mov", seconds=3, tone_hz=TONE_HZ),  # longer than its scene: trimmed
    ]
    return render_still_video(
        "unused: the media are the scene", SENTENCES, folder / "out", SIZE, FPS, VoiceParams(), None, "svd",
        False, lambda *_: None, lambda: False, duration_seconds=11, media=media,
    )  # fmt: skip


def _decode(path: Path) -> tuple[list[np.ndarray], np.ndarray, int, int]:
    with av.open(str(path)) as container:
        audio_streams = len(container.streams.audio)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        rate = container.streams.audio[0].rate
        sound = np.concatenate([f.to_ndarray().mean(axis=0) for f in container.decode(audio=0)])
    return frames, sound, rate, audio_streams


def test_media_scenes_change_at_sentence_starts_with_the_presenter_in_front(media_render: RenderOutputs) -> None:
    out = media_render
    assert out.speech is not None and len(out.speech.segments) == 5
    assert out.rendering["scene"] == UPLOADED_MEDIA and out.rendering["image_to_video"] == MEDIA_MONTAGE
    frames, _, _, _ = _decode(out.video)
    # The left third never holds the presenter's card: its mean colour tells which medium is on screen.
    means = np.array([f[:, : SIZE[0] // 3].reshape(-1, 3).mean(axis=0) for f in frames])
    palette = np.array([RED, GREEN, BLUE, YELLOW], float)
    shown = np.argmin(np.linalg.norm(means[:, None] - palette[None] * 0.9, axis=2), axis=1)
    fade = round(CROSSFADE_SECONDS * FPS)
    # Runs of one medium; mid-crossfade blends (blue and yellow look green halfway) are too short to count.
    bounds = [0, *(np.flatnonzero(np.diff(shown)) + 1), len(shown)]
    runs = [(int(shown[a]), a) for a, b in zip(bounds, bounds[1:], strict=False) if b - a > fade + 1]
    assert [medium for medium, _ in runs] == [0, 1, 2, 3, 0], "in order, cycling"
    starts = [round(s.start * FPS) for s in out.speech.segments[1:]]
    assert all(start - fade <= first <= start + 1 for start, (_, first) in zip(starts, runs[1:], strict=True)), (
        starts,
        runs,
    )
    # Measured frame to frame: big jumps only inside the crossfades, small drift (camera, clip) elsewhere.
    jumps = np.abs(np.diff(means, axis=0)).max(axis=1)
    near_cut = np.zeros(len(jumps), bool)
    for start in starts:
        near_cut[max(0, start - fade - 2) : start + 1] = True
    assert jumps[~near_cut].max() < 6 and all(jumps[s - fade - 2 : s + 1].sum() > 60 for s in starts)
    still = means[5 : starts[0] - fade - 2]
    assert np.abs(frames[5].astype(int) - frames[starts[0] - fade - 3]).mean() > 1, "the still drifts (Ken Burns)"
    assert np.ptp(still, axis=0).max() < 12
    for i in (0, starts[1], starts[3] + 5, len(frames) - 1):
        face = detect_face(frames[i])
        assert face is not None and face[0] > SIZE[0] // 2, f"the presenter sits at the right in frame {i}"


def test_the_clips_sound_is_dropped(media_render: RenderOutputs) -> None:
    out = media_render
    assert out.speech is not None
    _, sound, rate, audio_streams = _decode(out.video)
    assert audio_streams == 1, "one soundtrack: the narration"
    start = out.speech.segments[3].start
    during_clip = sound[int(start * rate) : int((start + 1.2) * rate)]
    spectrum = np.abs(np.fft.rfft(during_clip * np.hanning(len(during_clip)))) ** 2
    freqs = np.fft.rfftfreq(len(during_clip), 1 / rate)
    tone = spectrum[np.abs(freqs - TONE_HZ) < 30].sum() / spectrum.sum()
    assert tone < 0.01, f"{tone:.1%} of the sound is the clip's {TONE_HZ} Hz tone"


def test_the_render_activity_downloads_the_media_in_order(tmp_path: Path) -> None:
    store = FakeStore(tmp_path / "store")
    uris = [
        store.put_file("uploads", "user-1/a.png", _still(tmp_path / "a.png", GREEN, (300, 200)))[0],
        store.put_file("uploads", "user-1/b.webm", write_clip(tmp_path / "b.webm"))[0],
    ]
    inp = render_input(duration_seconds=5)
    inp = inp.model_copy(update={"options": inp.options.model_copy(update={"media": uris})})
    result = run(RenderActivities(store, tmp_path / "work"), inp)  # type: ignore[arg-type]
    assert result.video.rendering["scene"] == UPLOADED_MEDIA
    scene = np.asarray(Image.open(store.path(next(a.uri for a in result.assets if a.kind == "scene"))))
    assert np.abs(scene[:, :100].reshape(-1, 3).mean(axis=0) - GREEN).max() < 40, "the first medium opens"

    broken = store.put_file("uploads", "user-1/c.png", tmp_path / "a.png")[0]
    store.path(broken).write_bytes(b"not a png")
    bad = inp.model_copy(update={"options": inp.options.model_copy(update={"media": [broken]})})
    with pytest.raises(ApplicationError) as failed:
        run(RenderActivities(store, tmp_path / "work2"), bad)  # type: ignore[arg-type]
    assert failed.value.type == names.ERR_INVALID_INPUT and failed.value.non_retryable


def test_media_are_for_the_svd_variant_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="svd"):
        render_still_video(
            "x", "Hello.", tmp_path, SIZE, FPS, VoiceParams(), None, "sadtalker", False,
            lambda *_: None, lambda: False, media=[tmp_path / "a.png"],
        )  # fmt: skip
