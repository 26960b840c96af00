"""Mouth shapes from the phoneme timeline: which viseme each phoneme makes, blended frame by frame.

Every speech runtime returns IPA phonemes with their times (see `speech.SpeechResult`). Each
phoneme maps to a target `MouthPose`; a frame's pose blends the targets of the phonemes around
it, each weighted by how strongly it dominates its neighbours and how far it is in time (the
Cohen-Massaro co-articulation model), so the lips round early for an "oo" and an "a" next to a
"p" is not fully open. Bilabials (p, b, m) then override the blend over their whole span: the
lips must really meet, even when the phoneme is shorter than a frame.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gpu_worker.media.speech import Segment

_STRESS_AND_LENGTH = str.maketrans("", "", "ˈˌːˑ")
_REST_AFTER_S = 0.25  # a gap longer than this between phonemes lets the mouth settle to rest
_ANTICIPATE_S = 0.02  # lips close slightly before a bilabial is heard and open slightly after
_RAMP_S = 0.03  # how long the lips take to move into and out of a bilabial closure
_DECAY = 28.0  # 1/s: how fast a phoneme's influence fades with distance from its centre


@dataclass(frozen=True)
class MouthPose:
    """One mouth shape.

    Attributes:
        open: jaw and lip aperture, 0 (lips together) to 1 (wide open "a").
        spread: lip corners, -1 (rounded, pushed forward: "oo", "w") to 1 (stretched: "ee").
        closed: lips pressed together, 0 to 1 (p, b, m; 1 forces `open` to 0).
        tuck: lower lip drawn under the upper teeth, 0 to 1 (f, v).
    """

    open: float = 0.0
    spread: float = 0.0
    closed: float = 0.0
    tuck: float = 0.0


REST = MouthPose(open=0.0, spread=0.0, closed=1.0)

# (pose, dominance): dominance says how strongly a phoneme holds its shape against its neighbours.
_VISEMES: dict[str, tuple[MouthPose, float]] = {}


def _define(phonemes: str, pose: MouthPose, dominance: float) -> None:
    for phoneme in phonemes.split():
        _VISEMES[phoneme] = (pose, dominance)


_define("p b m", MouthPose(open=0.0, spread=0.0, closed=1.0), 3.0)
_define("f v", MouthPose(open=0.12, spread=0.1, tuck=1.0), 2.5)
_define("u ʊ o ɔ w ɒ ʉ ɵ", MouthPose(open=0.35, spread=-0.9), 1.6)
_define("oʊ əʊ", MouthPose(open=0.4, spread=-0.8), 1.6)
_define("a ɑ æ ʌ aɪ aʊ ɐ", MouthPose(open=0.95, spread=0.15), 1.2)
_define("i ɪ e ɛ eɪ j", MouthPose(open=0.35, spread=0.8), 1.2)
_define("ə ɜ ɚ ɝ ᵻ", MouthPose(open=0.4, spread=0.1), 0.6)
_define("ʃ ʒ tʃ dʒ", MouthPose(open=0.2, spread=-0.5), 1.4)
_define("ɹ r ɾ", MouthPose(open=0.25, spread=-0.4), 0.9)
_define("θ ð", MouthPose(open=0.18, spread=0.25), 1.0)
_define("t d n l s z ɫ ʔ", MouthPose(open=0.2, spread=0.3), 0.5)
_define("k ɡ g ŋ x h ç", MouthPose(open=0.32, spread=0.1), 0.4)
_NEUTRAL = (MouthPose(open=0.3, spread=0.1), 0.5)


def viseme(phoneme: str) -> tuple[MouthPose, float]:
    """The target mouth pose of an IPA phoneme (stress and length marks ignored) and its dominance.

    Multi-letter phonemes not in the table fall back to their first known letter (eSpeak writes
    some affricates and diphthongs as one symbol, some as two).
    """
    key = phoneme.translate(_STRESS_AND_LENGTH).strip()
    if key in _VISEMES:
        return _VISEMES[key]
    for char in key:
        if char in _VISEMES:
            return _VISEMES[char]
    return _NEUTRAL


def is_bilabial(phoneme: str) -> bool:
    """True for p, b and m: the lips close completely."""
    return viseme(phoneme)[0].closed >= 1.0


@dataclass(frozen=True)
class MouthTrack:
    """Per-frame mouth poses as arrays of equal length (one value per video frame)."""

    open: np.ndarray
    spread: np.ndarray
    closed: np.ndarray
    tuck: np.ndarray

    def __len__(self) -> int:
        return len(self.open)

    def pose(self, frame: int) -> MouthPose:
        """The pose at one frame."""
        return MouthPose(
            float(self.open[frame]), float(self.spread[frame]), float(self.closed[frame]), float(self.tuck[frame])
        )


def mouth_track(phonemes: Sequence[Segment], fps: float, n_frames: int) -> MouthTrack:
    """Blend the phonemes' visemes into one pose per frame, frame `i` shown at `i / fps` seconds.

    Args:
        phonemes: the speech's phoneme timeline (IPA), in seconds from the start of the audio.
        fps: video frame rate.
        n_frames: number of frames to return.

    Returns:
        The per-frame track; frames far from any phoneme rest with the lips together.
    """
    t = np.arange(n_frames, dtype=np.float64) / fps
    fields = ("open", "spread", "closed", "tuck")
    rest = np.array([getattr(REST, f) for f in fields])
    if not phonemes:
        return MouthTrack(*(np.full(n_frames, v, np.float32) for v in rest))
    targets = np.array([[getattr(viseme(p.text)[0], f) for f in fields] for p in phonemes])
    dominance = np.array([viseme(p.text)[1] for p in phonemes])
    starts = np.array([p.start for p in phonemes])
    ends = np.array([p.end for p in phonemes])
    # Inside a phoneme's span its distance is 0: it dominates its own time fully.
    distance = np.maximum(np.maximum(starts[None, :] - t[:, None], t[:, None] - ends[None, :]), 0.0)
    weights = dominance[None, :] * np.exp(-_DECAY * distance)
    weights = np.where(distance == 0, weights * 4.0, weights)
    blended = weights @ targets / weights.sum(axis=1, keepdims=True)
    # Away from speech (pauses, lead-in, tail) the mouth settles to rest.
    gap = distance.min(axis=1)
    settle = np.clip((gap - _REST_AFTER_S / 3) / (_REST_AFTER_S / 2), 0.0, 1.0)[:, None]
    blended = blended * (1 - settle) + rest[None, :] * settle
    # Closure is not blended (a "p" would half-close its neighbours): only bilabials and rest close the lips.
    closure = _bilabial_closure(phonemes, t)
    blended[:, 2] = np.maximum(settle[:, 0], closure)
    blended[:, 0] *= 1.0 - blended[:, 2]  # pressed lips have no aperture
    blended[:, 3] *= 1.0 - closure
    return MouthTrack(*(blended[:, k].astype(np.float32) for k in range(4)))


def _bilabial_closure(phonemes: Sequence[Segment], t: np.ndarray) -> np.ndarray:
    """1 over every bilabial's span (widened a little), ramping to 0 over `_RAMP_S` on each side."""
    closure = np.zeros_like(t)
    for p in phonemes:
        if not is_bilabial(p.text):
            continue
        lo, hi = p.start - _ANTICIPATE_S, p.end + _ANTICIPATE_S
        before = np.clip((t - (lo - _RAMP_S)) / _RAMP_S, 0.0, 1.0)
        after = np.clip(((hi + _RAMP_S) - t) / _RAMP_S, 0.0, 1.0)
        closure = np.maximum(closure, np.minimum(before, after))
    return closure
