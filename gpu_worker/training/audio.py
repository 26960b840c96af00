"""Voice clip analysis: decode to mono 16 kHz, loudness-normalise, F0 (YIN) and syllable rate."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpu_worker.training.errors import InvalidInputError

SAMPLE_RATE = 16_000
MIN_VOICED_SECONDS = 1.0
MAX_CLIP_SECONDS = 300.0  # longer clips are analysed on their first five minutes
TARGET_DBFS = -20.0  # RMS of the active (speech) frames after normalisation
SILENT_DBFS = -55.0  # a clip whose loudest 25 ms stays below this is silence
F0_MIN, F0_MAX = 65.0, 400.0
_HOP = 160  # 10 ms
_WINDOW = 400  # YIN integration window (25 ms)
_MAX_LAG = int(SAMPLE_RATE / F0_MIN)
_MIN_LAG = int(SAMPLE_RATE / F0_MAX)
_YIN_THRESHOLD = 0.15
_VOICED_APERIODICITY = 0.45
_ACTIVE_RANGE_DB = 35.0  # frames this far below the loudest frame are pauses
_PAUSE_SECONDS = 0.3  # gaps longer than this do not count as speaking time
_YIN_BLOCK = 1000  # frames per FFT block (10 s of audio, ~30 MB of spectra)


@dataclass(frozen=True)
class ClipStats:
    """What one clip measured; the voice is fitted from these."""

    duration_s: float
    voiced_s: float
    speech_s: float
    f0_median_hz: float
    f0_p10_hz: float
    f0_p90_hz: float
    f0_spread_semitones: float
    syllables: int
    syllable_rate: float
    gain_db: float


def decode(path: Path, name: str, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode any audio (or video with audio) file to mono float32 at 16 kHz (or `rate`) with PyAV.

    Args:
        path: The local file.
        name: How errors name the clip (its URI).
        rate: The sample rate to resample to (voice cloning takes 22.05 kHz).

    Returns:
        The samples in [-1, 1].

    Raises:
        InvalidInputError: The file has no decodable audio stream.
    """
    import av

    chunks: list[np.ndarray] = []
    limit = int(MAX_CLIP_SECONDS * rate)
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise InvalidInputError(f"{name} has no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            total = 0
            for frame in container.decode(container.streams.audio[0]):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                    total += chunks[-1].size
                if total >= limit:
                    break
            else:
                chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    except (av.FFmpegError, UnicodeDecodeError) as err:
        raise InvalidInputError(f"{name} is not a decodable audio file: {err}") from err
    samples = np.concatenate(chunks)[:limit] if chunks else np.zeros(0, np.float32)
    return np.nan_to_num(samples.astype(np.float32))


def _frames(x: np.ndarray, length: int) -> np.ndarray:
    """Overlapping frames every 10 ms (zero-padded at the end)."""
    count = max(1, 1 + (x.size - 1) // _HOP)
    padded = np.concatenate([x, np.zeros(count * _HOP + length - x.size, np.float32)])
    return np.lib.stride_tricks.sliding_window_view(padded, length)[::_HOP][:count]


def _db(values: np.ndarray) -> np.ndarray:
    result: np.ndarray = 10.0 * np.log10(np.maximum(values, 1e-12))
    return result


def normalise(samples: np.ndarray, name: str) -> tuple[np.ndarray, float, np.ndarray]:
    """Scale the clip so its speech frames sit at -20 dBFS RMS (peaks kept below full scale).

    Args:
        samples: Mono samples.
        name: How errors name the clip.

    Returns:
        `(normalised samples, gain in dB, per-frame energy in dB after normalisation)`.

    Raises:
        InvalidInputError: The clip is silent.
    """
    energy = _db(np.mean(_frames(samples, 400) ** 2, axis=1))  # 25 ms frames
    loudest = float(energy.max()) if samples.size else -math.inf
    if samples.size == 0 or loudest < SILENT_DBFS:
        raise InvalidInputError(f"{name} is silent (loudest passage {loudest:.0f} dBFS)")
    active = energy > loudest - _ACTIVE_RANGE_DB
    level = float(_db(np.array([np.mean(10 ** (energy[active] / 10))]))[0])
    peak = float(np.abs(samples).max())
    gain_db = min(TARGET_DBFS - level, 20 * math.log10(0.99 / peak))
    return samples * np.float32(10 ** (gain_db / 20)), gain_db, energy + gain_db


def _cmnd(frames: np.ndarray) -> np.ndarray:
    """YIN's cumulative mean normalised difference for a block of frames, lags 0.._MAX_LAG."""
    frames = frames.astype(np.float64)
    size = 1 << (2 * _WINDOW + _MAX_LAG).bit_length()
    # d(lag) = sum (x[j] - x[j+lag])^2 over the window = e(0) + e(lag) - 2 * acf(lag), the acf by FFT.
    acf = np.fft.irfft(np.conj(np.fft.rfft(frames[:, :_WINDOW], size)) * np.fft.rfft(frames, size), size)
    squares = np.concatenate([np.zeros((frames.shape[0], 1)), np.cumsum(frames**2, axis=1)], axis=1)
    lags = np.arange(_MAX_LAG + 1)
    shifted_energy = squares[:, lags + _WINDOW] - squares[:, lags]
    diff = np.maximum(shifted_energy[:, :1] + shifted_energy - 2 * acf[:, : _MAX_LAG + 1], 0.0)
    cumulative = np.cumsum(diff[:, 1:], axis=1)
    cmnd: np.ndarray = np.ones_like(diff)
    cmnd[:, 1:] = diff[:, 1:] * np.arange(1, _MAX_LAG + 1) / np.maximum(cumulative, 1e-12)
    return cmnd


def yin(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-10 ms-frame F0 (Hz) and aperiodicity with YIN (de Cheveigné & Kawahara, 2002).

    Args:
        samples: Mono samples at 16 kHz.

    Returns:
        `(f0, aperiodicity)`, one value per frame; f0 is NaN where no period was found.
    """
    frames = _frames(samples, _WINDOW + _MAX_LAG + 1)
    cmnd = np.concatenate([_cmnd(frames[i : i + _YIN_BLOCK]) for i in range(0, frames.shape[0], _YIN_BLOCK)])
    f0 = np.full(cmnd.shape[0], np.nan)
    aperiodicity = np.ones(cmnd.shape[0])
    for i, row in enumerate(cmnd):
        below = np.flatnonzero(row[_MIN_LAG:] < _YIN_THRESHOLD)
        lag = _MIN_LAG + (below[0] if below.size else int(np.argmin(row[_MIN_LAG:])))
        while lag + 1 <= _MAX_LAG and row[lag + 1] < row[lag]:
            lag += 1  # walk down to the local minimum
        aperiodicity[i] = row[lag]
        if _MIN_LAG < lag < _MAX_LAG:  # parabolic interpolation of the minimum
            a, b, c = row[lag - 1], row[lag], row[lag + 1]
            shift = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c > 0 else 0.0
            f0[i] = SAMPLE_RATE / (lag + shift)
    return f0, aperiodicity


def _syllable_peaks(energy_db: np.ndarray, voiced: np.ndarray) -> int:
    """Count syllable nuclei: voiced local maxima of the smoothed energy that stand 2 dB above the dips."""
    smooth = np.convolve(energy_db, np.ones(5) / 5, mode="same")
    count, last = 0, -100
    for i in range(1, smooth.size - 1):
        if not voiced[i] or smooth[i] < smooth[i - 1] or smooth[i] < smooth[i + 1] or i - last < 8:
            continue
        lo, hi = max(0, i - 12), min(smooth.size, i + 13)
        if smooth[i] - max(smooth[lo:i].min(), smooth[i + 1 : hi].min()) >= 2.0:
            count, last = count + 1, i
    return count


def _speaking_seconds(active: np.ndarray) -> float:
    """Time from the first to the last active frame, minus pauses longer than 0.3 s."""
    idx = np.flatnonzero(active)
    if idx.size == 0:
        return 0.0
    gaps = np.diff(idx) - 1
    long_gaps = gaps[gaps * _HOP / SAMPLE_RATE > _PAUSE_SECONDS].sum()
    return float((idx[-1] - idx[0] + 1 - long_gaps) * _HOP / SAMPLE_RATE)


def analyse(samples: np.ndarray, name: str) -> ClipStats:
    """Measure a decoded clip: loudness, voiced time, F0 distribution and syllable rate.

    Args:
        samples: Mono float samples at 16 kHz.
        name: How errors name the clip (its URI).

    Returns:
        The clip's statistics.

    Raises:
        InvalidInputError: The clip is silent or has less than one second of voiced speech.
    """
    normalised, gain_db, energy = normalise(samples, name)
    active = energy > max(float(energy.max()) - _ACTIVE_RANGE_DB, SILENT_DBFS)
    f0, aperiodicity = yin(normalised)
    voiced = active & (aperiodicity < _VOICED_APERIODICITY) & np.isfinite(f0)
    voiced_s = float(voiced.sum() * _HOP / SAMPLE_RATE)
    if voiced_s < MIN_VOICED_SECONDS:
        raise InvalidInputError(
            f"{name} has {voiced_s:.2f} s of voiced speech; each clip needs at least {MIN_VOICED_SECONDS:.0f} s"
        )
    pitches = f0[voiced]
    semitones = 12 * np.log2(pitches / np.median(pitches))
    speech_s = _speaking_seconds(active)
    syllables = _syllable_peaks(energy, voiced)
    return ClipStats(
        duration_s=round(samples.size / SAMPLE_RATE, 3),
        voiced_s=round(voiced_s, 3),
        speech_s=round(speech_s, 3),
        f0_median_hz=round(float(np.median(pitches)), 2),
        f0_p10_hz=round(float(np.percentile(pitches, 10)), 2),
        f0_p90_hz=round(float(np.percentile(pitches, 90)), 2),
        f0_spread_semitones=round(float(np.percentile(semitones, 90) - np.percentile(semitones, 10)), 3),
        syllables=syllables,
        syllable_rate=round(syllables / max(speech_s, 1e-6), 3),
        gain_db=round(gain_db, 2),
    )
