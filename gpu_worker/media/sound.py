"""The finished soundtrack: the narration over a ducked music bed, loudness-normalised to -14 LUFS and -1 dBTP.

`finish_soundtrack` is the whole stage: `mix_stems` levels the bed (`gpu_worker.media.music`)
against the speech and ducks it under speech, then `gpu_worker.media.loudness` normalises the mix
and measures the written file.
"""

import logging
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from gpu_worker.media.loudness import Loudness, loudness_normalise, write_wav
from gpu_worker.media.music import MusicKind, music_track
from gpu_worker.media.speech import SpeechResult

logger = logging.getLogger(__name__)

Music = Literal["none"] | MusicKind | Path  # `options.music`: a path is the caller's uploaded file
Span = tuple[float, float]

_MERGE_GAP_S = 0.6  # the bed stays down through shorter pauses instead of pumping between words
_ATTACK_S, _RELEASE_S = 0.1, 0.15  # the duck is fully down 50 ms before speech and rises after it ends
_GUARD_S = 0.05
_MIN_DUCK_DB = 12.0  # under speech the bed is always well down (broadcast beds sit 15-25 dB under the voice)
_UNDER_SPEECH_DB = -10.0  # the bed's RMS under speech, relative to the speech's, at most...
_DUCK_MARGIN_DB = 3.0  # ...with this much to spare


@dataclass(frozen=True)
class Stems:
    """The speech and the levelled, ducked, faded bed as mono float samples, and where speech is heard."""

    speech: np.ndarray
    music: np.ndarray
    sample_rate: int
    spans: list[Span]
    duck_db: float = 0.0  # how far the bed is lowered under speech

    def mix(self) -> np.ndarray:
        """Speech plus bed."""
        return np.asarray(self.speech + self.music)


@dataclass(frozen=True)
class Soundtrack:
    """The normalised mix and what was measured on it.

    Attributes:
        loudness: The written WAV and its integrated loudness and true peak.
        music: `none`, `calm`, `upbeat`, or the uploaded file's name.
        duck_db: How far the bed was lowered under speech.
        music_under_speech_db: The bed's RMS under speech minus the speech's, on the stems (None without a bed).
    """

    loudness: Loudness
    music: str
    duck_db: float = 0.0
    music_under_speech_db: float | None = None

    @property
    def path(self) -> Path:
        """The normalised WAV to mux."""
        return self.loudness.path


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path.name}: expected 16-bit PCM")
        data = np.frombuffer(wav.readframes(wav.getnframes()), np.int16).reshape(-1, wav.getnchannels())
        return data.mean(axis=1) / 32768.0, wav.getframerate()


def _mask(spans: Sequence[Span], n: int, rate: int) -> np.ndarray:
    mask = np.zeros(n, bool)
    for a, b in spans:
        mask[max(0, int(a * rate)) : max(0, int(b * rate))] = True
    return mask


def rms_db(samples: np.ndarray, mask: np.ndarray | None = None) -> float:
    """RMS level in dBFS of `samples` (where `mask` is True); -120 for silence."""
    part = samples if mask is None else samples[mask]
    return float(20 * np.log10(max(float(np.sqrt(np.mean(part**2))) if part.size else 0.0, 1e-6)))


def _merge(spans: Sequence[Span], gap: float) -> list[Span]:
    merged: list[Span] = []
    for a, b in sorted(spans):
        if merged and a - merged[-1][1] < gap:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def speech_spans(speech: SpeechResult, samples: np.ndarray, *, merge_gap: float = _MERGE_GAP_S) -> list[Span]:
    """Where the narration is heard: its words and sentences, or (without a timeline) its loud 20 ms frames.

    Spans closer than `merge_gap` are joined.
    """
    spans: list[Span] = [(s.start, s.end) for s in (*speech.words, *speech.segments)]
    if not spans:
        hop = int(0.02 * speech.sample_rate)
        frames = samples[: samples.size // hop * hop].reshape(-1, hop)
        loud = np.flatnonzero(np.sqrt(np.mean(frames**2, axis=1)) > 10 ** (-40 / 20))
        spans = [(i * hop / speech.sample_rate, (i + 1) * hop / speech.sample_rate) for i in loud]
    return _merge(spans, merge_gap)


def duck_envelope(spans: Sequence[Span], n: int, rate: int) -> np.ndarray:
    """0 away from speech, 1 under it: raised-cosine attack (100 ms, over before speech starts), release 150 ms."""
    env = np.zeros(n)
    for a, b in spans:
        lo, hi = int((a - _GUARD_S) * rate), int((b + _GUARD_S) * rate)
        env[max(lo, 0) : max(hi, 0)] = 1.0
        for start, length, rising in ((lo - int(_ATTACK_S * rate), int(_ATTACK_S * rate), True),
                                      (hi, int(_RELEASE_S * rate), False)):  # fmt: skip
            ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(length) / length)
            ramp = ramp if rising else ramp[::-1]
            i0, i1 = max(start, 0), min(start + length, n)
            if i1 > i0:
                env[i0:i1] = np.maximum(env[i0:i1], ramp[i0 - start : i1 - start])
    return env


def duck(
    speech: np.ndarray, bed: np.ndarray, spans: Sequence[Span], rate: int, music_volume: float
) -> tuple[np.ndarray, float]:
    """Level the bed against the speech and lower it under speech.

    Away from speech the bed's RMS is the speech's RMS times `music_volume`; under speech it is
    lowered by at least 6 dB and as far as the stems need for its RMS there to stay 13 dB under the
    speech's (the depth is measured, then corrected if the ramps left the bed louder than planned).

    Returns:
        The ducked bed (as long as `speech`) and how many dB it is lowered under speech.
    """
    mask = _mask(spans, speech.size, rate)
    speech_db = rms_db(speech, mask) if mask.any() else -20.0
    bed_db = rms_db(bed)
    volume_db = float(20 * np.log10(max(music_volume, 1e-6)))
    target = speech_db + _UNDER_SPEECH_DB - _DUCK_MARGIN_DB
    depth = max(_MIN_DUCK_DB, speech_db + volume_db - target)
    env = duck_envelope(spans, speech.size, rate)
    levelled = bed * 10 ** ((speech_db + volume_db - bed_db) / 20)
    ducked = levelled
    for _ in range(4):
        ducked = levelled * 10 ** (-depth * env / 20)
        excess = rms_db(ducked, mask) - target if mask.any() else 0.0
        if excess <= 0.01:
            break
        depth += excess
    logger.info("music: %.1f dB from the speech away from it, ducked %.1f dB under it", volume_db, depth)
    return np.asarray(ducked), depth


def compress_speech(samples: np.ndarray, rate: int, ratio: float = 3.0, threshold_db: float = -9.0) -> np.ndarray:
    """Even out loud and soft syllables: a compressor on the speech's 30 ms RMS (no make-up gain).

    Above `threshold_db` relative to the RMS of its active (not silent) parts, the level rises only
    `1 / ratio` dB per dB. A voice's loudest syllables then sit closer to its loudness, so the
    limiter before normalisation (`gpu_worker.media.loudness`) has a third as much to take off.
    """
    block = max(1, rate // 200)  # 5 ms
    nb = -(-samples.size // block)
    power = np.mean(np.pad(samples, (0, nb * block - samples.size)).reshape(nb, block) ** 2, axis=1)
    rms = np.sqrt(np.convolve(power, np.ones(6) / 6, mode="same")) + 1e-12
    active = rms > rms.max() * 10 ** (-40 / 20)
    threshold = np.sqrt(np.mean(rms[active] ** 2)) * 10 ** (threshold_db / 20) if active.any() else 1.0
    gain = np.where(rms > threshold, (rms / threshold) ** (1 / ratio - 1), 1.0)
    gain = np.convolve(np.pad(gain, 2, mode="edge"), np.ones(5) / 5, mode="valid")  # no steps between blocks
    return np.asarray(samples * np.interp(np.arange(samples.size), (np.arange(nb) + 0.5) * block, gain))


def mix_stems(speech: SpeechResult, music: Music = "none", music_volume: float = 0.25, seed: int = 0) -> Stems:
    """The narration and its bed (none, synthesised or uploaded), fitted to the narration's length and ducked.

    Args:
        speech: The narration (its WAV and timeline).
        music: `none`, `calm`, `upbeat`, or the path of the caller's audio file (any format FFmpeg reads).
        music_volume: 0-1, the bed's level away from speech relative to the speech (1: as loud).
        seed: The synthesised bed's variation.

    Returns:
        The stems at the narration's sample rate, the speech compressed (`compress_speech`).
    """
    if not 0 <= music_volume <= 1:
        raise ValueError(f"music volume {music_volume} is not within 0-1")
    samples, rate = _read_wav(speech.path)
    spans = speech_spans(speech, samples)
    samples = compress_speech(samples, rate)
    if music == "none" or music_volume <= 0:
        return Stems(samples, np.zeros_like(samples), rate, spans)
    bed = music_track(music, samples.size / rate, rate, seed)[: samples.size]
    ducked, depth = duck(samples, bed, spans, rate, music_volume)
    return Stems(samples, ducked, rate, spans, depth)


def finish_soundtrack(
    speech: SpeechResult, out: Path, music: Music = "none", music_volume: float = 0.25, seed: int = 0
) -> Soundtrack:
    """Mix the narration with its bed and normalise the mix to -14 LUFS, -1 dBTP: the audio to mux.

    Args:
        speech: The narration.
        out: The mono 48 kHz 16-bit WAV to write.
        music: `none`, `calm`, `upbeat`, or the path of the caller's uploaded audio file.
        music_volume: 0-1, the bed's level away from speech (`options.musicVolume`).
        seed: The synthesised bed's variation.

    Returns:
        The file and its measured loudness, true peak and ducking.
    """
    stems = mix_stems(speech, music, music_volume, seed)
    mixed = stems.mix()
    under = None
    if stems.music.any():
        mask = _mask(stems.spans, mixed.size, stems.sample_rate)
        under = rms_db(stems.music, mask) - rms_db(stems.speech, mask)
    with tempfile.TemporaryDirectory(prefix="mix-") as tmp:
        mix_wav = Path(tmp) / "mix.wav"
        write_wav(mix_wav, mixed / max(1.0, float(np.abs(mixed).max()) / 0.99), stems.sample_rate)
        result = loudness_normalise(mix_wav, out)
    name = music.name if isinstance(music, Path) else music
    return Soundtrack(result, name, stems.duck_db, under)
