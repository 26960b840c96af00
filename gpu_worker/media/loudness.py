"""Loudness: normalise audio to an integrated LUFS target under a true-peak ceiling, and measure it.

`loudness_normalise` runs FFmpeg's `loudnorm` twice (measure, then a linear gain with the measured
values). Speech peaks sit far above its loudness (a Piper voice: about 21 dB, against the 13 dB
that -14 LUFS under -1 dBTP allows), so a linear gain to the target would clip; `loudnorm` would
then fall back to its dynamic mode, a slow automatic gain that swells the music bed in pauses.
Instead the peaks are first made smaller here: a phase rotation (all-pass filters, inaudible)
makes the asymmetric voice waveform more symmetric, then a look-ahead limiter takes off what is
still over, by as much as measurement shows the linear gain needs. `measure_loudness` checks the
written file independently with FFmpeg's `ebur128`.
"""

import json
import logging
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpu_worker.media.encode import MUX_AUDIO, EncodeError, ffmpeg_exe
from gpu_worker.media.music import decode_audio
from gpu_worker.media.speech import write_pcm16

logger = logging.getLogger(__name__)

RATE = 48_000  # what `loudness_normalise` writes
# The linear gain leaves true peaks 0.3-0.9 dB under the ceiling: `ebur128` reports to 0.1 dB, and
# FFmpeg's AAC encoder (with `-aac_coder fast`) adds up to about 0.1 dB.
_HEADROOM_DB = (0.3, 0.9)
_CODED_MARGIN_DB = 0.2  # twice the 0.1 dB resolution of the ebur128 measurement
_MAX_LIMIT_DB = 12.0  # beyond this, limiting is audible pumping: the target is lowered a little instead...
_MAX_QUIETER_DB = 0.8  # ...by up to this much; beyond, `loudnorm`'s dynamic mode takes over
# The audio options the mux must use (`encode.VideoWriter`): the codec whose overshoots count. FFmpeg's
# default AAC coder (`twoloop`) has glitches that lift true peaks by up to 3 dB at random places;
# the `fast` coder stays within about 0.1 dB of the WAV.
_ROTATOR_HZ = (120.0, 240.0, 480.0, 960.0)


@dataclass(frozen=True)
class Loudness:
    """A normalised file and its loudness as `ebur128` measures it on the written file."""

    path: Path
    integrated_lufs: float
    true_peak_dbtp: float
    limited_db: float = 0.0  # how far the loudest peak was limited before the linear gain
    mode: str = "linear"  # `loudnorm`'s normalisation type: `linear`, or `dynamic` when limiting fell short
    coded_true_peak_dbtp: float | None = None  # after a round trip through the mux's codec


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    """Write mono float samples (-1..1) as a 16-bit PCM WAV."""
    write_pcm16(path, np.clip(np.round(samples * 32767), -32768, 32767), rate)


def _ffmpeg(args: list[str]) -> str:
    """Run ffmpeg at info log level (where `loudnorm` and `ebur128` print their reports); return stderr."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostats", "-y", *args], capture_output=True, check=False)
    stderr = proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        raise EncodeError(f"ffmpeg exited with {proc.returncode}: {stderr[-2000:]}")
    return stderr


def _loudnorm(
    src: Path, target: float, peak: float, out: Path | None = None, first: dict[str, str] | None = None
) -> dict[str, str]:
    """One `loudnorm` pass: measure (`first` None), or normalise linearly into `out` with the first pass's report."""
    options = f"I={target}:TP={peak}:LRA=50:print_format=json"  # LRA=50: a wide range must not forbid linear mode
    if first is not None:
        measured = ":".join(f"measured_{k}={first[f'input_{k.lower()}']}" for k in ("I", "TP", "LRA", "thresh"))
        options += f":{measured}:offset={first['target_offset']}:linear=true"
    sink = [str(out), "-ar", str(RATE), "-c:a", "pcm_s16le"] if out is not None else ["-f", "null", "-"]
    stderr = _ffmpeg(["-i", str(src), "-map", "0:a:0", "-af", f"loudnorm={options}", "-ac", "1", *sink])
    report = stderr[stderr.rfind("{") : stderr.rfind("}") + 1]
    return {k: str(v) for k, v in json.loads(report).items()}


def measure_loudness(path: Path) -> tuple[float, float]:
    """Integrated loudness (LUFS) and true peak (dBTP) of a file's first audio stream, by FFmpeg's `ebur128`.

    Raises:
        EncodeError: ffmpeg failed or printed no summary.
    """
    stderr = _ffmpeg(["-i", str(path), "-map", "0:a:0", "-af", "ebur128=peak=true", "-f", "null", "-"])
    summary = stderr[stderr.rfind("Summary:") :]
    integrated = re.search(r"I:\s+(-?[\d.]+|-inf) LUFS", summary)
    peak = re.search(r"True peak:\s+Peak:\s+(-?[\d.]+|-inf) dBFS", summary)
    if integrated is None or peak is None:
        raise EncodeError(f"ebur128 printed no summary for {path.name}: {stderr[-500:]}")
    return float(integrated.group(1)), float(peak.group(1))


def _measure(src: Path, target: float, ceiling: float) -> dict[str, str]:
    """`loudnorm`'s first-pass report, with integrated loudness and true peak as `ebur128` measures them.

    `loudnorm`'s own integrated figure can differ from `ebur128`'s (and pyloudnorm's) by 0.4 dB on
    a few seconds of limited speech; the linear gain is worked out from the figure the result is
    checked with.
    """
    report = _loudnorm(src, target, ceiling)
    integrated, peak = measure_loudness(src)
    return report | {"input_i": f"{integrated:.2f}", "input_tp": f"{max(peak, float(report['input_tp'])):.2f}"}


def rotate_phase(samples: np.ndarray, rate: int) -> np.ndarray:
    """Pass audio through second-order all-pass filters (120-960 Hz, Q 0.7), applied by FFT.

    Only phases change (the sound does not); a voice's lopsided glottal pulses become more
    symmetric, which lowers its peaks by 1-2 dB for free. Chunks of about 5 s are filtered with
    room for the filters' ring-out and overlap-added, so ten minutes need no more memory than five seconds.
    """
    chunk, tail = 1 << 18, rate // 2
    n = chunk + tail
    z = np.exp(-1j * 2 * np.pi * np.fft.rfftfreq(n, 1 / rate) / rate)
    response = np.ones_like(z)
    for hz in _ROTATOR_HZ:
        w0 = 2 * np.pi * hz / rate
        alpha, c = np.sin(w0) / (2 * 0.7), -2 * np.cos(w0)
        response *= ((1 - alpha) + c * z + (1 + alpha) * z**2) / ((1 + alpha) + c * z + (1 - alpha) * z**2)
    out = np.zeros(samples.size + n)
    for start in range(0, samples.size, chunk):
        out[start : start + n] += np.fft.irfft(np.fft.rfft(samples[start : start + chunk], n) * response, n)
    return out[: samples.size]


def limit_peaks(samples: np.ndarray, rate: int, ceiling_db: float, release: float = 0.08) -> np.ndarray:
    """A look-ahead peak limiter: no sample exceeds `ceiling_db` dBFS; gain moves smoothly (~5 ms in, `release` out).

    Gain is worked out on 1 ms blocks: each block needs `ceiling / peak`; that need is held 5 blocks
    either side (the look-ahead), recovers exponentially, then is averaged over 9 blocks, which keeps
    every block (and the interpolation between blocks) at or under its own need.
    """
    block, hold = max(1, rate // 1000), 5
    nb = -(-samples.size // block)
    peaks = np.abs(np.pad(samples, (0, nb * block - samples.size))).reshape(nb, block).max(axis=1)
    need = np.minimum(1.0, 10 ** (ceiling_db / 20) / np.maximum(peaks, 1e-12))
    held = np.lib.stride_tricks.sliding_window_view(np.pad(need, hold, constant_values=1.0), 2 * hold + 1).min(axis=1)
    recover = float(np.exp(-block / (release * rate)))
    gain = held.copy()
    for i in range(1, nb):  # 1000 steps a second: cheap in Python
        gain[i] = min(held[i], 1.0 - (1.0 - gain[i - 1]) * recover)
    smooth = np.convolve(np.pad(gain, hold - 1, mode="edge"), np.ones(2 * hold - 1) / (2 * hold - 1), mode="valid")
    centres = (np.arange(nb) + 0.5) * block
    return np.asarray(samples * np.interp(np.arange(samples.size), centres, smooth))


def _headroom(report: dict[str, str], target: float, ceiling: float) -> float:
    """How many dB under `ceiling` the true peaks would stay after the linear gain to `target`."""
    return ceiling - (float(report["input_tp"]) + target - float(report["input_i"]))


def _tame_peaks(
    src: Path, work: Path, first: dict[str, str], target: float, ceiling: float
) -> tuple[Path, dict[str, str], float]:
    """Rotate and limit `src`'s audio until a linear gain to `target` keeps true peaks under `ceiling`.

    Limiting lowers the loudness too, by an amount that depends on the audio, so the amount is
    searched for on measurements.

    Returns:
        The file to normalise, its measurement (`_measure`), and how far its peaks were limited (dB).
    """
    samples = rotate_phase(decode_audio(src, RATE), RATE)
    top = 20 * np.log10(max(float(np.abs(samples).max()), 1e-9))
    path = work / "tamed.wav"
    aim, tolerance = sum(_HEADROOM_DB) / 2, (_HEADROOM_DB[1] - _HEADROOM_DB[0]) / 2

    def attempt(limited: float) -> tuple[dict[str, str], float]:
        """Limit by `limited` dB into `path`; its measurement and how many dB its peaks would be too high."""
        write_wav(path, limit_peaks(samples, RATE, top - limited), RATE)
        report = _measure(path, target, ceiling)
        logger.debug("limited %.2f dB: %s", limited, report)
        return report, aim - _headroom(report, target, ceiling)

    # Secant steps on the last two points, kept inside the bracket (too little, enough) once there is one.
    low, high = (0.0, aim - _headroom(first, target, ceiling)), None  # (dB limited, dB too high)
    last, limited = low, low[1]
    for _ in range(6):
        report, miss = attempt(limited)
        if abs(miss) <= tolerance:
            return path, report, limited
        if miss > 0:
            low = max(low, (limited, miss))
        elif high is None or limited < high[0]:
            high = (limited, miss)
        (l0, m0), (l1, m1), last = last, (limited, miss), (limited, miss)
        limited = l1 - m1 * (l1 - l0) / (m1 - m0) if m1 != m0 else l1 + 2 * m1
        if high is None and limited <= low[0]:
            limited = low[0] + 2 * low[1]
        elif high is not None and not low[0] < limited < high[0]:
            limited = (low[0] + high[0]) / 2
        if low[0] >= _MAX_LIMIT_DB:
            break
        limited = min(limited, _MAX_LIMIT_DB)
    if high is None:  # `path` holds the last attempt; `loudnorm` will fall back to its dynamic mode
        logger.warning("true peaks %.1f dB too high after limiting %.1f dB", last[1], last[0])
        return path, report, last[0]
    report, _ = attempt(high[0])  # enough, if more than needed
    return path, report, high[0]


def _coded_peak(wav: Path, codec: Sequence[str], work: Path) -> float:
    """True peak (dBTP) of `wav` after a round trip through `codec` (lossy coding adds overshoots)."""
    coded = work / "coded.mka"  # Matroska holds any codec ffmpeg can encode
    _ffmpeg(["-i", str(wav), "-map", "0:a:0", *codec, str(coded)])
    return measure_loudness(coded)[1]


def loudness_normalise(
    src: Path,
    out: Path,
    target_lufs: float = -14.0,
    true_peak: float = -1.0,
    codec: Sequence[str] | None = MUX_AUDIO,
) -> Loudness:
    """Normalise a file's audio to `target_lufs` integrated with true peaks at or under `true_peak` dBTP.

    Two `loudnorm` passes: the first measures, the second applies one linear gain with the first's
    values. When that gain would push true peaks over the ceiling, the peaks are tamed first
    (module docstring) and measured again, so the second pass stays linear. Lossy coding lifts
    true peaks a little, so with `codec` the result is encoded the way the mux will encode it and,
    if that copy peaks over the ceiling, normalised again under a ceiling lowered by the overshoot.

    Args:
        src: Any audio or video file with an audio stream.
        out: The mono 48 kHz 16-bit WAV to write.
        target_lufs: Integrated loudness target.
        true_peak: True-peak ceiling in dBTP.
        codec: FFmpeg output options of the audio codec the WAV will be muxed with; None: no check.

    Returns:
        The written file, its loudness measured afterwards by `measure_loudness`, and the true peak
        after the codec.

    Raises:
        EncodeError: ffmpeg failed.
        ValueError: `src` has no decodable audio.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    ceiling, coded = true_peak, None
    with tempfile.TemporaryDirectory(prefix="loudnorm-") as tmp:
        for _ in range(3):
            source, first, limited = src, _measure(src, target_lufs, ceiling), 0.0
            if _headroom(first, target_lufs, ceiling) < _HEADROOM_DB[0]:
                source, first, limited = _tame_peaks(src, Path(tmp), first, target_lufs, ceiling)
            # Peaks still too high after the most limiting allowed: a little quieter, within the target's ±1 LU.
            quieter = min(max(_HEADROOM_DB[0] - _headroom(first, target_lufs, ceiling), 0.0), _MAX_QUIETER_DB)
            second = _loudnorm(source, target_lufs - quieter, ceiling, out, first)
            if codec is None:
                break
            coded = _coded_peak(out, codec, Path(tmp))
            if coded <= true_peak - _CODED_MARGIN_DB:
                break
            logger.info("true peak %.1f dBTP after the codec: normalising under a lower ceiling", coded)
            ceiling -= coded - true_peak + 2 * _CODED_MARGIN_DB
        if coded is not None and codec is not None and coded > true_peak:
            # Still over after the passes (loudnorm fell back to its dynamic mode): turn the whole file
            # down by the overshoot, which costs at most a fraction of the target's ±1 LU.
            excess = min(coded - true_peak + _CODED_MARGIN_DB, _MAX_QUIETER_DB)
            logger.warning("true peak %.2f dBTP after the codec: turning the mix down %.2f dB", coded, excess)
            write_wav(out, decode_audio(out, RATE) * 10 ** (-excess / 20), RATE)
            coded = _coded_peak(out, codec, Path(tmp))
    integrated, peak = measure_loudness(out)
    mode = second.get("normalization_type", "linear")
    logger.info(
        "loudness %.1f LUFS, %.1f dBTP (%.1f coded; %s; peaks limited %.1f dB) -> %s",
        integrated, peak, coded if coded is not None else peak, mode, limited, out,
    )  # fmt: skip
    return Loudness(out, integrated, peak, limited, mode, coded)
