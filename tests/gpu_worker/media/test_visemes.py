"""Visemes: phoneme → mouth shape, co-articulation, and lips that really close for p/b/m."""

import numpy as np
import pytest

from gpu_worker.media.speech import Segment
from gpu_worker.media.visemes import REST, is_bilabial, mouth_track, viseme

FPS = 25.0


def timeline(*spans: tuple[str, float, float]) -> list[Segment]:
    return [Segment(p, start, end) for p, start, end in spans]


@pytest.mark.parametrize(
    ("phoneme", "check"),
    [
        ("p", lambda v: v.closed == 1 and v.open == 0),
        ("ˈb", lambda v: v.closed == 1),  # stress marks do not matter
        ("m", lambda v: v.closed == 1),
        ("ˈuː", lambda v: v.spread < -0.5),  # rounded
        ("w", lambda v: v.spread < -0.5),
        ("ˈo", lambda v: v.spread < -0.5),
        ("iː", lambda v: v.spread > 0.5),  # wide
        ("ɛ", lambda v: v.spread > 0.5),
        ("ˈɑː", lambda v: v.open > 0.8),  # open
        ("a", lambda v: v.open > 0.8),
        ("f", lambda v: v.tuck == 1 and v.open < 0.2),  # teeth on lip
        ("v", lambda v: v.tuck == 1),
    ],
)
def test_each_phoneme_class_has_its_mouth_shape(phoneme: str, check: object) -> None:
    pose, dominance = viseme(phoneme)
    assert dominance > 0
    assert check(pose)  # type: ignore[operator]


def test_unknown_symbols_get_a_neutral_shape_and_multi_letter_ones_their_first_known_letter() -> None:
    assert viseme("☃")[0].closed == 0 and 0 < viseme("☃")[0].open < 0.5
    assert viseme("aɪ")[0].open > 0.8
    assert viseme("mː")[0] == viseme("m")[0]
    assert is_bilabial("ˈp") and not is_bilabial("t")


def test_lips_close_over_a_bilabial_even_when_it_is_shorter_than_a_frame() -> None:
    # "a p a": the p lasts 15 ms, less than one 40 ms frame, and starts between two frames.
    track = mouth_track(timeline(("a", 0.10, 0.30), ("p", 0.305, 0.32), ("a", 0.32, 0.52)), FPS, 20)
    frames_in_p = [i for i in range(20) if 0.30 <= i / FPS <= 0.33]
    assert frames_in_p, "the closure must land on a frame"
    assert all(track.closed[i] == 1 and track.open[i] == 0 for i in frames_in_p)
    assert track.open[5] > 0.8 and track.open[11] > 0.8  # the vowels around it open wide


def test_an_open_vowel_opens_at_least_twice_as_wide_as_neutral_consonants() -> None:
    track = mouth_track(timeline(("t", 0.0, 0.2), ("ɑː", 0.2, 0.4), ("t", 0.4, 0.6)), FPS, 15)
    assert track.open[7] >= 2 * track.open[2]


def test_rounding_is_anticipated_before_the_rounded_vowel() -> None:
    # Co-articulation: the lips start rounding during the consonant before "uː".
    plain = mouth_track(timeline(("t", 0.0, 0.2), ("ə", 0.2, 0.4)), FPS, 10)
    rounded = mouth_track(timeline(("t", 0.0, 0.2), ("uː", 0.2, 0.4)), FPS, 10)
    assert rounded.spread[4] < plain.spread[4] - 0.1  # frame 4 (0.16 s) is still the "t"
    assert rounded.spread[7] < -0.7


def test_the_mouth_rests_closed_in_pauses_and_without_speech() -> None:
    track = mouth_track(timeline(("a", 0.0, 0.3), ("a", 1.5, 1.8)), FPS, 50)
    pause = [i for i in range(50) if 0.6 <= i / FPS <= 1.2]
    assert all(track.pose(i) == REST for i in pause)
    silent = mouth_track([], FPS, 10)
    assert len(silent) == 10 and np.all(silent.closed == 1) and np.all(silent.open == 0)


def test_poses_stay_in_range() -> None:
    rng = np.random.default_rng(3)
    symbols = ["p", "a", "uː", "iː", "f", "t", "ʃ", "ə", "m", "k"]
    t, spans = 0.0, []
    for _ in range(200):
        d = float(rng.uniform(0.01, 0.2))
        spans.append((str(rng.choice(symbols)), t, t + d))
        t += d + float(rng.choice([0.0, 0.0, 0.3]))
    track = mouth_track(timeline(*spans), FPS, int(t * FPS) + 5)
    for values, lo, hi in ((track.open, 0, 1), (track.spread, -1, 1), (track.closed, 0, 1), (track.tuck, 0, 1)):
        assert values.dtype == np.float32 and np.all(values >= lo - 1e-6) and np.all(values <= hi + 1e-6)
