"""Loudness of the delivered soundtrack and ducking of the music bed (`python -m bench.sound [--smoke]`; prints markdown tables).

Loudness: one topic's offline narration, written for 20 s and for 60 s, is spoken once per
length and rendered by `render_still_video` (what the GPU worker delivers) with every bed:
`none`, `calm`, `upbeat` and an "uploaded" MP3 made here (a loud stereo 44.1 kHz loop with
silence at both ends, encoded by FFmpeg's libmp3lame), at `musicVolume` 0.25, for both variants,
and with the beds at volume 1.0 for the first variant. Every render of one length reuses the same
narration (`bench.speech.Replay`), so rows differ only by the bed. Measured on the delivered
mp4's audio stream decoded by PyAV (not on `loudnorm`'s report): integrated loudness by
pyloudnorm (ITU-R BS.1770-4) and true peak as the peak of the 4× oversampled signal
(`scipy.signal.resample_poly`), then again by FFmpeg's `ebur128=peak=true`. The true peak of
`soundtrack.wav` (before the AAC encode) shows what the codec adds. Target (issue): −14 ± 1 LUFS
integrated and ≤ −1 dBTP, on both measurements. The soundtrack step (mixing, ducking, loudness
normalisation, measurement) runs beside the frames in a render, so its own wall time is measured
by making the same soundtrack again, alone.

Ducking: `mix_stems` on the same narrations with each bed at volume 0.25 and 1.0 (and, in the
full run, on the narration written for 10 s and fitted to 20 s, whose sentence pauses are long
enough for the bed to come up between sentences: the voice's own pauses, about 0.45 s, are
shorter than the 0.6 s over which ducking holds). On the stems: the bed's RMS under speech minus
the speech's RMS there, where "under speech" is (a) the timeline's spans that ducking uses and
(b) an independent mask, the 20 ms windows of the speech stem within 30 dB of its loudest window.
Target: ≤ −10 dB on both. The worst single sentence, and the bed where it is fully up (the duck
envelope at 0, the fade-in and fade-out left out: the level `musicVolume` sets, 20·log10(volume)
dB by design), are shown for reference, not judged.

A full run takes about 3 minutes on 2 busy cores; `--smoke` (the 5 s narration, the svd variant,
every bed at 0.25; the ducking rows at 5 s; about 20 s) is what the test suite runs.
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import statistics
import subprocess
import tempfile
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench._common import machine, out, quiet_logging, table
from bench.speech import TOPICS, VARIANTS, Replay, render, topic_narration
from gpu_worker.media.encode import ffmpeg_exe
from gpu_worker.media.loudness import measure_loudness
from gpu_worker.media.sound import Music, duck_envelope, finish_soundtrack, mix_stems, rms_db
from gpu_worker.media.speech import SpeechResult, VoiceParams
from gpu_worker.media.voices import default_narrator

logger = logging.getLogger("bench.sound")

DURATIONS, SMOKE_DURATIONS = (20.0, 60.0), (5.0,)
STRETCHED = (10.0, 20.0)  # a narration written for 10 s, fitted to 20 s: longer pauses between sentences
BEDS = ("calm", "upbeat", "uploaded")
VOLUMES = (0.25, 1.0)
DEFAULT_VOLUME = 0.25
TARGET_LUFS, LUFS_TOLERANCE, MAX_TRUE_PEAK = -14.0, 1.0, -1.0
MAX_UNDER_SPEECH_DB = -10.0
_VOICED_DB = -30.0  # a 20 ms window of the speech stem within this of its loudest window is speech
_UPLOAD_RATE = 44_100
_FADES_S = (1.0, 2.0)  # `music.fit_to_length`'s fade-in and fade-out, each at most a quarter of the video
_MIN_BETWEEN_S = 0.2  # less bed between sentences than this is not measured (n/a)


@dataclass(frozen=True)
class Level:
    """One render of the loudness table."""

    variant: str
    music: str
    volume: float
    seconds: float
    render_s: float
    soundtrack_s: float
    lufs: float  # pyloudnorm on the decoded mp4
    true_peak: float  # 4× oversampled peak of the decoded mp4
    ebur_lufs: float  # FFmpeg `ebur128` on the mp4
    ebur_peak: float
    wav_peak: float  # 4× oversampled peak of `soundtrack.wav`, before AAC


@dataclass(frozen=True)
class Ducked:
    """One mix of the ducking table; levels in dB relative to the speech's RMS under speech."""

    narration: str
    music: str
    volume: float
    duck_db: float
    up_s: float  # seconds of bed fully up (not ducked, not fading)
    between: float  # its level there; NaN when under `_MIN_BETWEEN_S`
    spans: float
    voiced: float
    worst_sentence: float


def make_upload(path: Path, seconds: float = 7.0) -> Path:
    """A stand-in for a user's upload: a loud stereo loop (saw chords, bass, kick, snare) as an MP3 at 44.1 kHz.

    Half a second of silence at each end, as many real files have; mastered with peaks at -0.5 dBFS.
    """
    rate, rng = _UPLOAD_RATE, np.random.default_rng(7)
    t = np.arange(int(seconds * rate)) / rate
    beat = 60 / 96
    left, right = np.zeros(t.size), np.zeros(t.size)
    for bar, root in enumerate((57, 53, 48, 55) * 4):
        at = (t >= bar * 4 * beat) & (t < (bar + 1) * 4 * beat)
        for i, step in enumerate((0, 4, 7)):
            hz = 440 * 2 ** ((root + step - 69) / 12)
            saw = sum(np.sin(2 * np.pi * hz * k * t[at]) / k for k in range(1, 12))
            (left if i % 2 else right)[at] += 0.25 * saw
            (right if i % 2 else left)[at] += 0.12 * saw
        bass = 0.6 * np.sin(2 * np.pi * 440 * 2 ** ((root - 24 - 69) / 12) * t[at])
        left[at] += bass
        right[at] += bass
    for b in range(int(seconds / beat)):
        start, n = int(b * beat * rate), int(0.2 * rate)
        hit = (
            np.sin(2 * np.pi * 55 * np.arange(n) / rate) * np.exp(-np.arange(n) / (0.05 * rate))
            if b % 2 == 0
            else rng.standard_normal(n) * np.exp(-np.arange(n) / (0.04 * rate)) * 0.7
        )
        end = min(start + n, t.size)
        left[start:end] += hit[: end - start]
        right[start:end] += hit[: end - start]
    stereo = np.stack([left, right], axis=1)
    stereo *= 10 ** (-0.5 / 20) / np.abs(stereo).max()
    pad = np.zeros((rate // 2, 2))
    pcm = np.round(np.concatenate([pad, stereo, pad]) * 32767).astype(np.int16)
    wav = path.with_suffix(".wav")
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(wav), "-c:a", "libmp3lame",
           "-b:a", "192k", str(path)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    wav.unlink()
    return path


def decoded(path: Path) -> tuple[np.ndarray, int]:
    """The first audio stream at its own rate as float samples, one row per channel (PyAV)."""
    import av

    chunks: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=stream.rate)
        for frame in container.decode(stream):
            chunks += [f.to_ndarray() for f in resampler.resample(frame)]
        chunks += [f.to_ndarray() for f in resampler.resample(None)]
        rate = int(stream.rate)
    if not chunks:
        raise RuntimeError(f"{path}: the audio stream decoded to nothing")
    return np.concatenate(chunks, axis=1).astype(np.float64), rate


def true_peak(samples: np.ndarray) -> float:
    """dBTP: the peak of each channel oversampled 4× (`resample_poly`), the highest one."""
    from scipy.signal import resample_poly  # type: ignore[import-untyped]

    peak = float(np.abs(resample_poly(samples, 4, 1, axis=1)).max())
    return float(20 * np.log10(max(peak, 1e-12)))


def integrated(samples: np.ndarray, rate: int) -> float:
    """pyloudnorm's integrated loudness (LUFS) of channel-rows `samples`."""
    import pyloudnorm  # type: ignore[import-untyped]

    return float(pyloudnorm.Meter(rate).integrated_loudness(samples.T))


def speak(seconds: float, work: Path, written_for: float | None = None) -> SpeechResult:
    """The topic narration written for `written_for` (default `seconds`) s, spoken and fitted to `seconds`."""
    text = topic_narration(TOPICS[0], written_for or seconds)
    wav = work / f"speech-{written_for or seconds:g}-in-{seconds:g}.wav"
    return default_narrator().speak(text, wav, VoiceParams(language="en"), seconds)


def music_of(bed: str, upload: Path) -> Music:
    """A bed's name as `render_still_video` and `mix_stems` take it."""
    kinds: dict[str, Music] = {"none": "none", "calm": "calm", "upbeat": "upbeat", "uploaded": upload}
    return kinds[bed]


def level(variant: str, bed: str, volume: float, speech: SpeechResult, upload: Path, out_dir: Path) -> Level:
    """Render with `bed` under the recorded narration and measure the delivered mp4's loudness and true peak.

    The render makes its soundtrack beside the frames, so the step's own time is measured by making
    the same soundtrack again on its own.
    """
    result, wall = render(
        variant, "replayed", out_dir, speech.duration, music=music_of(bed, upload), music_volume=volume,
        narrator=Replay(speech),
    )  # fmt: skip
    start = time.perf_counter()
    finish_soundtrack(speech, out_dir / "soundtrack-again.wav", music_of(bed, upload), volume)
    soundtrack_s = time.perf_counter() - start
    samples, rate = decoded(result.video)
    wav, _ = decoded(out_dir / "soundtrack.wav")
    ebur_lufs, ebur_peak = measure_loudness(result.video)
    row = Level(
        variant, bed, volume, result.duration, wall, soundtrack_s, integrated(samples, rate),
        true_peak(samples), ebur_lufs, ebur_peak, true_peak(wav),
    )  # fmt: skip
    logger.info(
        "%s, %s at %.2f, %.0f s: %.2f LUFS, %.2f dBTP; soundtrack %.2f s of %.1f s",
        variant, bed, volume, result.duration, row.lufs, row.true_peak, row.soundtrack_s, wall,
    )  # fmt: skip
    shutil.rmtree(out_dir, ignore_errors=True)
    return row


def _mask(spans: Sequence[tuple[float, float]], n: int, rate: int) -> np.ndarray:
    mask = np.zeros(n, bool)
    for a, b in spans:
        mask[max(0, int(a * rate)) : max(0, int(b * rate))] = True
    return mask


def voiced(speech: np.ndarray, rate: int) -> np.ndarray:
    """Samples in 20 ms windows of `speech` within `_VOICED_DB` of its loudest window (independent of the timeline)."""
    hop = rate // 50
    n = speech.size // hop * hop
    window = np.sqrt(np.mean(speech[:n].reshape(-1, hop) ** 2, axis=1))
    mask = np.zeros(speech.size, bool)
    mask[:n] = np.repeat(window >= window.max() * 10 ** (_VOICED_DB / 20), hop)
    return mask


def ducked(narration: str, bed: str, volume: float, speech: SpeechResult, upload: Path) -> Ducked:
    """Mix the stems and measure the bed against the speech under speech and away from it."""
    stems = mix_stems(speech, music_of(bed, upload), volume)
    rate, n = stems.sample_rate, stems.speech.size
    spans, heard = _mask(stems.spans, n, rate), voiced(stems.speech, rate)
    speech_db = rms_db(stems.speech, spans)

    def under(mask: np.ndarray) -> float:
        return rms_db(stems.music, mask) - rms_db(stems.speech, mask)

    sentences = [_mask([(s.start, s.end)], n, rate) for s in speech.segments]
    between = duck_envelope(stems.spans, n, rate) == 0
    between[: min(int(_FADES_S[0] * rate), n // 4)] = False
    between[n - min(int(_FADES_S[1] * rate), n // 4) :] = False
    level_between = rms_db(stems.music, between) - speech_db if between.sum() >= _MIN_BETWEEN_S * rate else math.nan
    return Ducked(
        narration, bed, volume, stems.duck_db, float(between.sum() / rate), level_between, under(spans), under(heard),
        max((under(m) for m in sentences if m.any()), default=math.nan),
    )  # fmt: skip


def _db(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1f}"


def verdict(misses: Sequence[tuple[str, bool]]) -> str:
    """PASS, or FAIL and the targets missed."""
    missed = [name for name, bad in misses if bad]
    return "PASS" if not missed else "FAIL: " + ", ".join(missed)


def report_loudness(rows: list[Level]) -> None:
    """The loudness table: both measurements of each delivered mp4 against −14 ± 1 LUFS and ≤ −1 dBTP."""
    out("## Loudness of the delivered mp4 (decoded; pyloudnorm + 4× oversampled peak, and FFmpeg `ebur128`)")
    out()
    body = []
    for r in rows:
        off = (abs(r.lufs - TARGET_LUFS) > LUFS_TOLERANCE, abs(r.ebur_lufs - TARGET_LUFS) > LUFS_TOLERANCE)
        result = verdict([("LUFS", any(off)), ("dBTP", max(r.true_peak, r.ebur_peak) > MAX_TRUE_PEAK)])
        body.append([
            r.variant, r.music, f"{r.volume:.2f}", f"{r.seconds:.0f}", f"{r.lufs:.2f}", f"{r.true_peak:.2f}",
            f"{r.ebur_lufs:.1f}", f"{r.ebur_peak:.1f}", f"{r.wav_peak:.2f}", f"{r.soundtrack_s:.2f}",
            f"{r.render_s:.1f}", result,
        ])  # fmt: skip
    header = [
        "variant", "music", "volume", "video s", "LUFS (pyloudnorm)", "dBTP (4×)", "LUFS (ebur128)",
        "dBTP (ebur128)", "dBTP of WAV before AAC", "soundtrack s", "render s", "result (−14 ± 1 LUFS, ≤ −1 dBTP)",
    ]  # fmt: skip
    out(table(header, body))
    out()


def report_step(rows: list[Level]) -> None:
    """The soundtrack step's wall time by length and bed (median over the renders), beside the render's."""
    out("## Soundtrack step (mix, duck, loudness normalisation, measurement), made beside the frames")
    out()
    keys = sorted(
        {(r.seconds, r.music, r.volume) for r in rows}, key=lambda k: (k[0], (["none", *BEDS]).index(k[1]), k[2])
    )
    body = []
    for seconds, music, volume in keys:
        same = [r for r in rows if (r.seconds, r.music, r.volume) == (seconds, music, volume)]
        step, wall = statistics.median(r.soundtrack_s for r in same), statistics.median(r.render_s for r in same)
        body.append([f"{seconds:.0f}", music, f"{volume:.2f}", len(same), f"{step:.2f}", f"{wall:.1f}", f"{step / wall * 100:.0f}%"])  # fmt: skip
    out(
        table(
            ["video s", "music", "volume", "renders", "soundtrack s (median)", "render s (median)", "step ÷ render"],
            body,
        )
    )
    out()


def report_ducking(rows: list[Ducked]) -> None:
    """The ducking table: the bed under speech relative to the speech, on the stems, against ≤ −10 dB."""
    out("## Ducking on the stems (`mix_stems`): bed RMS minus speech RMS, dB")
    out()
    body = [
        [
            r.narration, r.music, f"{r.volume:.2f}", f"{r.duck_db:.1f}", f"{r.up_s:.2f}", _db(r.between),
            f"{r.spans:.1f}", f"{r.voiced:.1f}", _db(r.worst_sentence),
            verdict([("spans", r.spans > MAX_UNDER_SPEECH_DB), ("voiced", r.voiced > MAX_UNDER_SPEECH_DB)]),
        ]
        for r in rows
    ]  # fmt: skip
    header = [
        "narration", "music", "volume", "duck dB", "bed up s", "bed up level", "under speech (spans)",
        "under speech (voiced 20 ms)", "worst sentence", "result (≤ −10 dB)",
    ]  # fmt: skip
    out(table(header, body))
    out()
    out(
        "Under speech: (spans) the timeline's word and sentence spans that ducking uses; (voiced 20 ms) the "
        f"speech stem's 20 ms windows within {-_VOICED_DB:.0f} dB of its loudest. Bed up: where the duck envelope is "
        "fully up, fades left out (the level `musicVolume` sets, 20·log10(volume) dB by design; n/a: under "
        f"{_MIN_BETWEEN_S:g} s of it), against the speech's level under the spans."
    )
    out()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its tables; any failure to render, decode or measure raises."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="5 s, svd only, every bed at volume 0.25 (CI)")
    args = parser.parse_args(argv)
    quiet_logging()
    durations = SMOKE_DURATIONS if args.smoke else DURATIONS
    renders = [(VARIANTS[0], bed, DEFAULT_VOLUME) for bed in ("none", *BEDS)]
    if not args.smoke:
        renders += [(VARIANTS[0], bed, 1.0) for bed in BEDS]
        renders += [(variant, bed, DEFAULT_VOLUME) for variant in VARIANTS[1:] for bed in ("none", *BEDS)]
    start = time.perf_counter()
    levels: list[Level] = []
    ducks: list[Ducked] = []
    with tempfile.TemporaryDirectory(prefix="bench-sound-") as tmp:
        work = Path(tmp)
        upload = make_upload(work / "upload.mp3")
        for seconds in durations:
            speech = speak(seconds, work)
            if seconds == durations[0]:  # warm up the face mesh, the scene and ffmpeg outside the timings
                for variant in dict.fromkeys(v for v, _, _ in renders):
                    level(variant, "none", DEFAULT_VOLUME, speech, upload, work / "warmup")
            ducks += [ducked(f"{seconds:g} s", bed, volume, speech, upload) for bed in BEDS for volume in VOLUMES]
            for i, (variant, bed, volume) in enumerate(renders):
                levels.append(level(variant, bed, volume, speech, upload, work / f"r{seconds:g}-{i}"))
        if not args.smoke:  # sentence pauses over the merge gap: the bed comes up between sentences
            (written, seconds), label = STRETCHED, f"{STRETCHED[0]:g} s text in {STRETCHED[1]:g} s"
            speech = speak(seconds, work, written)
            ducks += [ducked(label, bed, volume, speech, upload) for bed in BEDS for volume in VOLUMES]
    out(f"# Sound benchmark ({machine()})")
    out()
    out(
        f'Narration: the offline writer\'s "{TOPICS[0]}" for {", ".join(f"{s:g}" for s in durations)} s, spoken '
        "once per length by the default voice and fitted to it; uploaded: a 7 s loud stereo MP3 (44.1 kHz, "
        "192 kb/s) made by this benchmark."
    )
    out()
    report_loudness(levels)
    report_step(levels)
    report_ducking(ducks)
    out(f"Total benchmark wall time {time.perf_counter() - start:.0f} s.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
