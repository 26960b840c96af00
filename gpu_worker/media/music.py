"""Music beds under the narration: calm or upbeat loops synthesised here, or the caller's track fitted to the video.

The synthesised beds are composed in code (no recordings): a chord progression voiced as pads or
plucks, a bass line, an arpeggio and, for `upbeat`, a kick and hi-hats made from filtered noise
bursts. Every note has smooth attack and release ramps, and notes ringing past the loop's end are
wrapped to its start, so a bed tiles without a click at the seam. The seed picks the key, the
progression and the arpeggio pattern.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

logger = logging.getLogger(__name__)

MusicKind = Literal["calm", "upbeat"]

# Triads on the major scale's degrees, in semitones above the key's tonic.
_I, _II, _IV, _V, _VI = (0, 4, 7), (2, 5, 9), (5, 9, 12), (7, 11, 14), (9, 12, 16)
_RMS = 10 ** (-18 / 20)  # a bed's level before mixing: -18 dBFS RMS, well clear of clipping
_PEAK = 0.9


@dataclass(frozen=True)
class _Style:
    bpm: float
    bars: int
    beats_per_chord: int
    progressions: tuple[tuple[tuple[int, int, int], ...], ...]
    tonics: tuple[int, ...]  # MIDI notes the key may start on


_STYLES: dict[MusicKind, _Style] = {
    "calm": _Style(72, 8, 8, ((_I, _VI, _IV, _V), (_I, _V, _VI, _IV), (_VI, _IV, _I, _V)), (57, 58, 60, 62)),
    "upbeat": _Style(112, 8, 4, ((_VI, _IV, _I, _V), (_I, _V, _VI, _IV), (_I, _IV, _II, _V)), (60, 62, 64, 65)),
}


def loop_seconds(kind: MusicKind) -> float:
    """How long one loop of a synthesised bed lasts (8 bars of 4/4 at the kind's tempo)."""
    style = _STYLES[kind]
    return style.bars * 4 * 60 / style.bpm


def _hz(midi: float) -> float:
    return float(440.0 * 2 ** ((midi - 69) / 12))


def _ramp(n: int) -> np.ndarray:
    """A raised-cosine rise over `n` samples (0 → 1), smooth at both ends."""
    return np.asarray(0.5 - 0.5 * np.cos(np.pi * np.arange(n) / max(n, 1)), dtype=np.float64)


def _envelope(n: int, rate: int, attack: float, release: float, decay: float | None = None) -> np.ndarray:
    """Attack ramp, then held (or decaying with time constant `decay`), then a release ramp to silence."""
    env = np.ones(n) if decay is None else np.exp(-np.arange(n) / (decay * rate))
    a, r = min(int(attack * rate), n // 2), min(int(release * rate), n // 2)
    env[:a] *= _ramp(a)
    env[n - r :] *= _ramp(r)[::-1]
    return env


def _place(loop: np.ndarray, start: int, note: np.ndarray) -> None:
    """Add `note` into the circular `loop` at `start`, wrapping what rings past the end to the beginning."""
    n = loop.size
    start %= n
    while note.size:
        take = min(note.size, n - start)
        loop[start : start + take] += note[:take]
        note, start = note[take:], 0


def _pad(freq: float, seconds: float, rate: int) -> np.ndarray:
    """A soft, slowly swelling pad: two slightly detuned triangle-ish voices (odd harmonics only)."""
    n = int((seconds + 1.6) * rate)
    t = np.arange(n) / rate
    wave = sum(
        np.sin(2 * np.pi * f * k * t) / k**2 for f in (freq, freq * 1.004) for k in (1, 3, 5)
    )  # triangle's 1/k² harmonics
    return np.asarray(wave * _envelope(n, rate, attack=1.2, release=1.6), dtype=np.float64)


def _pluck(freq: float, rate: int, decay: float) -> np.ndarray:
    """A plucked note: harmonics that die away faster the higher they are."""
    n = int(decay * 5 * rate)
    t = np.arange(n) / rate
    wave = sum(np.sin(2 * np.pi * freq * k * t) * np.exp(-t * k / decay) / k**1.5 for k in range(1, 7))
    return np.asarray(wave * _envelope(n, rate, attack=0.006, release=0.05), dtype=np.float64)


def _bass(freq: float, seconds: float, rate: int) -> np.ndarray:
    n = int(seconds * rate)
    t = np.arange(n) / rate
    wave = np.sin(2 * np.pi * freq * t) + 0.25 * np.sin(4 * np.pi * freq * t)
    return np.asarray(wave * _envelope(n, rate, attack=0.01, release=0.06, decay=seconds * 1.5))


def _kick(rate: int) -> np.ndarray:
    n = int(0.35 * rate)
    t = np.arange(n) / rate
    phase = 2 * np.pi * np.cumsum(48 + 70 * np.exp(-t / 0.03)) / rate  # a pitch drop, not a click
    return np.asarray(np.sin(phase) * _envelope(n, rate, attack=0.003, release=0.05, decay=0.09))


def _hat(rate: int, rng: np.random.Generator, decay: float) -> np.ndarray:
    """A hi-hat tick: a noise burst, high-passed twice (first differences), decaying fast."""
    n = int(decay * 6 * rate)
    noise = np.diff(rng.standard_normal(n + 2), n=2) / 4
    return np.asarray(noise * _envelope(n, rate, attack=0.001, release=0.01, decay=decay))


def _soften(loop: np.ndarray, rate: int, cutoff: float) -> np.ndarray:
    """A gentle circular low-pass (FFT): takes the edge off the highs and keeps the loop seamless."""
    spectrum = np.fft.rfft(loop)
    freqs = np.fft.rfftfreq(loop.size, 1 / rate)
    spectrum /= np.sqrt(1 + (freqs / cutoff) ** 4)  # second-order Butterworth magnitude
    return np.fft.irfft(spectrum, n=loop.size)


def _voiced(chord: tuple[int, ...], tonic: int, low: int, high: int) -> list[int]:
    """The chord's notes folded into `[low, high)`, so the harmony moves by small steps."""
    notes = []
    for degree in chord:
        note = tonic + degree
        while note >= high:
            note -= 12
        while note < low:
            note += 12
        notes.append(note)
    return sorted(notes)


def _compose(kind: MusicKind, rate: int, seed: int) -> np.ndarray:
    """One loop of the bed, unnormalised."""
    style, rng = _STYLES[kind], np.random.default_rng(seed)
    beat = 60 / style.bpm
    loop = np.zeros(int(round(loop_seconds(kind) * rate)))
    tonic = int(rng.choice(style.tonics))
    progression = style.progressions[int(rng.integers(len(style.progressions)))]
    pattern = [(0, 1, 2, 1), (0, 2, 1, 2), (0, 1, 2, 3)][int(rng.integers(3))]
    chords = style.bars * 4 // style.beats_per_chord
    for c in range(chords):
        chord = progression[c % len(progression)]
        t0, span = c * style.beats_per_chord * beat, style.beats_per_chord * beat
        pad = _voiced(chord, tonic, tonic - 5, tonic + 8)
        root = _voiced(chord[:1], tonic, tonic - 29, tonic - 17)[0]
        high = [*_voiced(chord, tonic, tonic + 7, tonic + 20), _voiced(chord, tonic, tonic + 7, tonic + 20)[0] + 12]
        if kind == "calm":
            for note in pad:
                _place(loop, int(t0 * rate), 0.30 * _pad(_hz(note), span, rate))
            _place(loop, int(t0 * rate), 0.35 * _bass(_hz(root), span, rate))
            for step in range(int(span / beat)):  # one gentle note a beat
                note = high[pattern[step % 4]]
                velocity = 0.14 * (1 - 0.2 * rng.random())
                _place(loop, int((t0 + step * beat) * rate), velocity * _pluck(_hz(note), rate, decay=0.9))
        else:
            for note in pad:
                _place(loop, int(t0 * rate), 0.10 * _pad(_hz(note), span, rate))
            for step in range(int(span / beat) * 2):  # eighth notes: bass on beats, plucks on each, hi-hats between
                at = int((t0 + step * beat / 2) * rate)
                if step % 2 == 0:
                    octave = 12 if step % 4 == 2 else 0
                    _place(loop, at, 0.40 * _bass(_hz(root + octave), beat * 0.45, rate))
                note = high[pattern[step % 4]]
                _place(loop, at, 0.16 * (1 - 0.25 * rng.random()) * _pluck(_hz(note), rate, decay=0.25))
                _place(loop, at + int(beat / 4 * rate), 0.12 * _hat(rate, rng, decay=0.02))
            for step in range(int(span / beat)):
                _place(loop, int((t0 + step * beat) * rate), (0.45 if step % 2 == 0 else 0.3) * _kick(rate))
    return _soften(loop, rate, cutoff=3500.0 if kind == "calm" else 7000.0)


def music_bed(kind: MusicKind, seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """A synthesised music bed: the kind's loop tiled to `seconds` (no fades; see `fit_to_length`).

    A whole number of loops (`loop_seconds(kind)` each) ends exactly where it starts.

    Args:
        kind: `calm` (slow pads, a soft bass and one arpeggio note a beat) or `upbeat` (a faster
            bass line, plucked eighth notes, a soft kick and hi-hats).
        seconds: How long the bed lasts.
        sample_rate: Samples per second (the narration's).
        seed: Picks the key, progression and arpeggio; the same seed gives the same bed.

    Returns:
        Mono float64 samples at -18 dBFS RMS, peaks under 0.9.
    """
    if kind not in _STYLES:
        raise ValueError(f"unknown music kind: {kind!r}")
    loop = _compose(kind, sample_rate, seed)
    loop *= min(_RMS / max(float(np.sqrt(np.mean(loop**2))), 1e-9), _PEAK / max(float(np.abs(loop).max()), 1e-9))
    return np.resize(loop, int(round(seconds * sample_rate)))


def decode_audio(path: Path, sample_rate: int) -> np.ndarray:
    """Decode the first audio stream of any file PyAV (FFmpeg) reads to mono float at `sample_rate`.

    Raises:
        ValueError: The file has no audio stream or does not decode.
    """
    import av

    chunks: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            stream = next(iter(container.streams.audio), None)
            if stream is None:
                raise ValueError(f"{path.name} has no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            for frame in container.decode(stream):
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    except av.FFmpegError as exc:
        raise ValueError(f"{path.name} does not decode as audio: {exc}") from exc
    return np.concatenate(chunks).astype(np.float64) if chunks else np.zeros(0)


def fit_to_length(
    track: np.ndarray,
    samples: int,
    sample_rate: int,
    *,
    fade_in: float = 1.0,
    fade_out: float = 2.0,
    crossfade: float = 0.05,
) -> np.ndarray:
    """Loop (with an equal-power crossfade at each seam) or trim a track to `samples`, then fade it in and out.

    Fades are shortened to a quarter of the length each for short videos. Pass `crossfade=0` for
    a track that already loops seamlessly.
    """
    if track.size == 0:
        return np.zeros(samples)
    out = np.zeros(samples + track.size)
    c = min(int(crossfade * sample_rate), track.size // 4)
    head = np.sin(np.pi / 2 * np.arange(c) / max(c, 1))  # equal power: head² + tail² = 1
    pos = 0
    while pos < samples:
        piece = track.copy()
        if c:
            if pos:
                piece[:c] *= head
            piece[-c:] *= head[::-1] if pos + track.size - c < samples else 1.0
        out[pos : pos + piece.size] += piece
        pos += track.size - c
    out = out[:samples]
    fin, fout = min(int(fade_in * sample_rate), samples // 4), min(int(fade_out * sample_rate), samples // 4)
    out[:fin] *= _ramp(fin)
    out[samples - fout :] *= _ramp(fout)[::-1]
    return out


def music_track(music: MusicKind | Path, seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """The bed for a video: synthesised (`calm`, `upbeat`) or decoded from an upload, fitted and faded.

    Args:
        music: A kind to synthesise, or the path of the caller's audio file.
        seconds: The video's length.
        sample_rate: The narration's sample rate.
        seed: The synthesised bed's variation.

    Returns:
        Mono float64 samples lasting `seconds`, faded in over about 1 s and out over about 2 s.
    """
    n = int(round(seconds * sample_rate))
    if isinstance(music, Path):
        track = decode_audio(music, sample_rate)
        loud = np.flatnonzero(np.abs(track) > 1e-3 * max(float(np.abs(track).max(initial=0.0)), 1e-9))
        track = track[loud[0] : loud[-1] + 1] if loud.size else track  # silence at its ends would gap the loop
        logger.info("music: %s, %.1f s looped or trimmed to %.1f s", music.name, track.size / sample_rate, seconds)
        return fit_to_length(track, n, sample_rate)
    return fit_to_length(music_bed(music, seconds, sample_rate, seed), n, sample_rate, crossfade=0.0)
