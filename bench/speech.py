"""Intelligibility and length of the delivered narration (`python -m bench.speech [--smoke]`; prints markdown tables).

Intelligibility: each text group (Harvard sentence lists 1-3 from `bench/data/harvard_sentences.txt`,
each spoken as one narration, and the offline writer's narrations of three fixed topics) is rendered
with `render_still_video` (what the GPU worker delivers) for both variants, and the same text is
spoken directly by the same Piper voice and by eSpeak NG. PocketSphinx 5.1.1 with its default
en-us acoustic model, language model and dictionary (nothing derived from the texts) transcribes
the audio at 16 kHz mono int16: the delivered mp4's audio stream decoded with PyAV, the references'
WAVs resampled the same way. Word error rates use jiwer on lower-cased text without punctuation.
Targets (issue 11): delivered WER ≤ 0.5× eSpeak NG's and ≤ 1.10× the direct Piper voice's.
With music: the first variant's render is repeated with `music: calm` (default `musicVolume`
0.25) on the very same narration (`Replay` hands the first render's speech back instead of
speaking again, so the two mp4s differ only by the bed); target: its WER ≤ 1.10× the WER without music.

Duration: one topic's offline narration written for 5, 10, 20 and 60 s and rendered with that
`duration_seconds`, for both variants. The video and audio streams of the mp4 are measured
separately; speech coverage is the timeline's speech seconds over the video; the longest pause
is the longest silence inside the speech, measured on the mp4's audio. Targets: ±5 % on both
streams, coverage ≥ 75 %, no pause over 1.5 s. The voices' words per minute measured on the
narrations (words ÷ seconds of the sentences' audio, pauses excluded) calibrate the manifest's
`words_per_minute`.

Piper's sampling noise is not seeded (onnxruntime's random ops), so the same text spoken twice
differs slightly: per-text WERs of the delivered and direct Piper audio move by a few hundredths
from run to run, which the mean over six texts smooths but does not remove.

The full run takes about 5.5 minutes on 2 busy cores; `--smoke` (one Harvard list, one topic written
for 10 s, the 5 s duration, svd only (with and without calm music); about a minute) is what the test suite runs so the benchmark keeps working.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import math
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from activities.script_writer import OfflineScriptWriter
from bench._common import machine, out, quiet_logging, table
from bench.recognizer import RATE, Recognizer, normalise, pcm16k, word_error_rate
from gpu_worker.media.music import MusicKind
from gpu_worker.media.pipeline import RenderOutputs, render_still_video
from gpu_worker.media.sound import Music
from gpu_worker.media.speech import SpeechResult, VoiceParams
from gpu_worker.media.voices import Narrator, Progress, default_narrator
from schemas.media import frame_size
from schemas.speech import DURATION_TOLERANCE, MIN_SPEECH_COVERAGE, count_words
from schemas.tasks import ScriptInput

logger = logging.getLogger("bench.speech")

HARVARD = Path(__file__).parent / "data" / "harvard_sentences.txt"
TOPICS = ("how volcanoes form", "why the sky is blue", "the history of the bicycle")
TOPIC_SECONDS = 30.0  # the topic narrations' requested length, about one Harvard list's
SMOKE_TOPIC_SECONDS = 10.0
DURATIONS = (5.0, 10.0, 20.0, 60.0)
VARIANTS = ("svd", "sadtalker")
PIPER = "piper:en_US-joe-medium"
ESPEAK = "espeak-ng:en-us"
REFERENCES = {"Piper direct": PIPER, "eSpeak NG": ESPEAK}
RESOLUTION, FPS = "480p", 25
STAGE = "A friendly presenter in a bright studio, with a large backdrop of a landscape."
MAX_PAUSE_S = 1.5
TARGET_VS_ESPEAK, TARGET_VS_PIPER = 0.5, 1.10
MUSIC: MusicKind = "calm"  # the bed the first variant is rendered with a second time
TARGET_VS_SILENT = 1.10  # its WER ≤ 1.10× the same video's without music
_SILENCE_RMS = 100  # int16 RMS of a 20 ms window below which it counts as silence (about -50 dBFS)


def delivered(variant: str) -> str:
    """The source name of a variant's delivered mp4."""
    return f"{variant} mp4"


def with_music(variant: str) -> str:
    """The source name of a variant's delivered mp4 with the `MUSIC` bed under the same narration."""
    return f"{variant} mp4 + {MUSIC} music"


def sources(variants: Sequence[str]) -> list[str]:
    """Every transcribed source, in table order: the delivered mp4s, the one with music, the references."""
    return [*(delivered(v) for v in variants), with_music(variants[0]), *REFERENCES]


@dataclass(frozen=True)
class Group:
    """A text spoken as one narration; `seconds` is the delivered render's requested duration (None: as spoken)."""

    name: str
    text: str
    seconds: float | None


@dataclass
class Heard:
    """What PocketSphinx made of each source's audio of the groups, and how long the references' sentences took."""

    wer: dict[tuple[str, str], float] = field(default_factory=dict)  # (group, source) → WER
    hyp: dict[tuple[str, str], str] = field(default_factory=dict)
    runtimes: set[str] = field(default_factory=set)  # the delivered renders' recorded speech runtimes
    words: dict[str, int] = field(default_factory=dict)  # voice id → words spoken
    sentence_s: dict[str, float] = field(default_factory=dict)  # voice id → seconds of sentence audio


@dataclass(frozen=True)
class Timed:
    """One render of the duration table."""

    variant: str
    requested: float
    video_s: float
    audio_s: float
    speech_s: float
    pause_s: float
    wall_s: float


def harvard_lists() -> list[list[str]]:
    """The committed Harvard sentences, ten per list (comment lines start with `#`)."""
    lines = [ln.strip() for ln in HARVARD.read_text(encoding="utf-8").splitlines()]
    sentences = [ln for ln in lines if ln and not ln.startswith("#")]
    if len(sentences) % 10:
        raise ValueError(f"{HARVARD} holds {len(sentences)} sentences, not whole lists of 10")
    return [sentences[i : i + 10] for i in range(0, len(sentences), 10)]


def topic_narration(topic: str, seconds: float) -> str:
    """The offline writer's narration of `topic` for a `seconds` video, paced for the Piper voice as a job is."""
    wpm = next(v.words_per_minute for v in default_narrator().voices() if v.id == PIPER)
    inp = ScriptInput(job_id="bench", topic=topic, duration_seconds=seconds, words_per_minute=wpm)
    return asyncio.run(OfflineScriptWriter().write(inp)).narrative


class Replay(Narrator):
    """Speaks nothing: hands back a narration already spoken, whatever the text, so renders differ only after speech."""

    def __init__(self, speech: SpeechResult) -> None:
        super().__init__(piper_models=[])
        self._speech = speech

    def speak(
        self,
        text: str,
        out_wav: Path,
        voice: VoiceParams,
        target_seconds: float | None = None,
        seed: int = 0,
        progress: Progress | None = None,
    ) -> SpeechResult:
        """A copy of the recorded narration at `out_wav` (the arguments other than `out_wav` are ignored)."""
        out_wav.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._speech.path, out_wav)
        return dataclasses.replace(self._speech, path=out_wav)


def render(
    variant: str,
    narrative: str,
    out_dir: Path,
    seconds: float | None,
    *,
    music: Music = "none",
    music_volume: float = 0.25,
    narrator: Narrator | None = None,
    resolution: str = RESOLUTION,
    progress: Callable[[str, float], None] = lambda _stage, _fraction: None,
) -> tuple[RenderOutputs, float]:
    """What the GPU worker delivers (no model backends): the outputs and the wall seconds."""
    start = time.perf_counter()
    result = render_still_video(
        STAGE, narrative, out_dir,
        frame_size(resolution, "16:9"), FPS, VoiceParams(language="en"), None, variant, captions=False,
        progress=progress, cancelled=lambda: False, duration_seconds=seconds,
        narrator=narrator, music=music, music_volume=music_volume,
    )  # fmt: skip
    return result, time.perf_counter() - start


def speak(text: str, voice_id: str, out_wav: Path) -> SpeechResult:
    """A reference: the text spoken directly by one voice, at its own pace, no render."""
    return default_narrator().speak(text, out_wav, VoiceParams(language="en", voice_id=voice_id))


def sentence_seconds(speech: SpeechResult) -> float:
    """Seconds of the sentences' audio, the pauses between them excluded."""
    return sum(s.end - s.start for s in speech.segments)


def stream_seconds(video: Path) -> tuple[float, float]:
    """The mp4's video-stream and audio-stream durations, each measured on its own."""
    import av

    with av.open(str(video)) as container:
        streams = (container.streams.video[0], container.streams.audio[0])
        lengths = [float(s.duration * s.time_base) if s.duration and s.time_base else math.nan for s in streams]
    if math.isnan(lengths[0]):
        with av.open(str(video)) as container:
            last = None
            for frame in container.decode(video=0):
                last = frame
            rate = container.streams.video[0].average_rate
            lengths[0] = float(last.time + 1 / rate) if last is not None and last.time is not None and rate else 0.0
    if math.isnan(lengths[1]):
        lengths[1] = pcm16k(video).size / RATE
    return lengths[0], lengths[1]


def longest_pause(pcm: np.ndarray) -> float:
    """The longest silence between the first and the last audible 20 ms window, in seconds."""
    step = RATE // 50
    windows = pcm[: pcm.size // step * step].astype(np.float64).reshape(-1, step)
    loud = np.flatnonzero(np.sqrt((windows**2).mean(axis=1)) >= _SILENCE_RMS)
    if loud.size < 2:
        return 0.0
    return float((np.diff(loud).max() - 1) * step / RATE)


def groups(lists: Sequence[int], topics: Sequence[str], seconds: float) -> list[Group]:
    """The text groups: Harvard lists (1-based) as spoken, topic narrations written and rendered for `seconds`."""
    harvard = harvard_lists()
    found = [Group(f"Harvard list {i}", " ".join(harvard[i - 1]), None) for i in lists]
    found += [Group(f"topic: {t}", topic_narration(t, seconds), seconds) for t in topics]
    return found


def listen(texts: list[Group], variants: Sequence[str], work: Path) -> Heard:
    """Render and speak every group, transcribe every source, score them."""
    recognizer, heard = Recognizer(), Heard()
    for n, group in enumerate(texts):
        audio: dict[str, Path] = {}
        for variant in variants:
            result, wall = render(variant, group.text, work / f"g{n}-{variant}", group.seconds)
            heard.runtimes.add(result.rendering.get("speech", "?"))
            audio[delivered(variant)] = result.video
            logger.info("%s, %s: rendered %.1f s of video in %.1f s", group.name, variant, result.duration, wall)
            if variant == variants[0]:
                audio[with_music(variant)] = render_with_music(variant, result, group, work / f"g{n}-{variant}-{MUSIC}")
        for source, voice_id in REFERENCES.items():
            speech = speak(group.text, voice_id, work / f"g{n}-{voice_id.replace(':', '_')}.wav")
            heard.words[voice_id] = heard.words.get(voice_id, 0) + count_words(group.text)
            heard.sentence_s[voice_id] = heard.sentence_s.get(voice_id, 0.0) + sentence_seconds(speech)
            audio[source] = speech.path
        for source, path in audio.items():
            hyp = recognizer.transcribe(pcm16k(path))
            if not hyp:
                raise RuntimeError(f"PocketSphinx heard nothing in {source} of {group.name} ({path})")
            heard.hyp[group.name, source] = hyp
            heard.wer[group.name, source] = word_error_rate(group.text, hyp)
            logger.info("%s, %s: WER %.3f", group.name, source, heard.wer[group.name, source])
        for variant in variants:
            shutil.rmtree(work / f"g{n}-{variant}", ignore_errors=True)
        shutil.rmtree(work / f"g{n}-{variants[0]}-{MUSIC}", ignore_errors=True)
    return heard


def render_with_music(variant: str, silent: RenderOutputs, group: Group, out_dir: Path) -> Path:
    """The same render as `silent` (its narration replayed) with the `MUSIC` bed: the mp4."""
    if silent.speech is None:
        raise RuntimeError("render_still_video returned no speech timeline")
    result, wall = render(variant, group.text, out_dir, group.seconds, music=MUSIC, narrator=Replay(silent.speech))
    if result.rendering.get("music") is None:
        raise RuntimeError(f"the render with music: {MUSIC} does not say it carries a bed: {result.rendering}")
    logger.info("%s, %s with %s music: rendered in %.1f s", group.name, variant, MUSIC, wall)
    return result.video


def time_renders(topic: str, durations: Sequence[float], variants: Sequence[str], work: Path) -> list[Timed]:
    """Render `topic`'s narration written for each duration with that `duration_seconds`, and measure the mp4."""
    rows = []
    for seconds in durations:
        narrative = topic_narration(topic, seconds)
        for variant in variants:
            out_dir = work / f"d{seconds:g}-{variant}"
            result, wall = render(variant, narrative, out_dir, seconds)
            video_s, audio_s = stream_seconds(result.video)
            speech = result.speech
            if speech is None:
                raise RuntimeError("render_still_video returned no speech timeline")
            rows.append(
                Timed(
                    variant, seconds, video_s, audio_s, speech.speech_seconds, longest_pause(pcm16k(result.video)), wall
                )
            )
            logger.info("%g s, %s: video %.2f s, audio %.2f s, wall %.1f s", seconds, variant, video_s, audio_s, wall)
            shutil.rmtree(out_dir, ignore_errors=True)
    return rows


def verdict(ok: bool) -> str:
    """A target's outcome for a table cell."""
    return "PASS" if ok else "FAIL"


def report_intelligibility(
    texts: list[Group], heard: Heard, variants: Sequence[str], topic_seconds: float, transcripts: bool
) -> None:
    """Per-group WER, then each source's mean and the delivered/reference ratios against the targets."""
    heard_from = sources(variants)
    out("## Intelligibility: PocketSphinx 5.1.1 word error rate (default en-us model, LM and dictionary, 16 kHz)")
    out()
    out(
        f"Delivered: `render_still_video` mp4 at {RESOLUTION} {FPS} fps, speech runtime recorded as "
        f"{', '.join(sorted(heard.runtimes))}; Harvard lists rendered as long as spoken, topic narrations "
        f"written by the offline writer and rendered for {topic_seconds:g} s. `{with_music(variants[0])}`: the "
        f"{variants[0]} render again with `music: {MUSIC}` (volume 0.25) under the same narration. "
        f"References: `{PIPER}` and `{ESPEAK}` spoken directly to WAV. Lower is better."
    )
    out()
    rows = [[g.name, count_words(g.text), *(f"{heard.wer[g.name, s]:.3f}" for s in heard_from)] for g in texts]
    out(table(["text", "words", *heard_from], rows))
    out()
    mean = {s: statistics.fmean(heard.wer[g.name, s] for g in texts) for s in heard_from}
    out(table(["source", "mean WER"], [[s, f"{mean[s]:.3f}"] for s in heard_from]))
    out()
    pairs = [(delivered(v), ref, target) for v in variants
             for ref, target in (("eSpeak NG", TARGET_VS_ESPEAK), ("Piper direct", TARGET_VS_PIPER))]  # fmt: skip
    pairs.append((with_music(variants[0]), delivered(variants[0]), TARGET_VS_SILENT))
    ratios = []
    for source, ref, target in pairs:
        d = mean[source]
        ratio = d / mean[ref] if mean[ref] else (1.0 if d == 0 else math.inf)
        ratios.append([f"{source} ÷ {ref}", f"{d:.3f} ÷ {mean[ref]:.3f}", f"{ratio:.2f}", f"≤ {target:.2f}", verdict(ratio <= target)])  # fmt: skip
    out(table(["ratio of mean WER", "values", "ratio", "target", "result"], ratios))
    out()
    if transcripts:
        for g in texts:
            out(f"### {g.name}")
            out()
            out(f"- reference: {normalise(g.text)}")
            for s in heard_from:
                out(f"- {s}: {heard.hyp[g.name, s]}")
            out()


def report_pace(heard: Heard) -> None:
    """Measured words per minute of each reference voice next to the manifest's."""
    advertised = {v.id: v.words_per_minute for v in default_narrator().voices()}
    rows = []
    for voice_id in REFERENCES.values():
        wpm = heard.words[voice_id] * 60 / heard.sentence_s[voice_id]
        rows.append([voice_id, heard.words[voice_id], f"{heard.sentence_s[voice_id]:.1f}", f"{wpm:.0f}", f"{advertised.get(voice_id, math.nan):.0f}"])  # fmt: skip
    out("## Voice pace (calibrates the manifest's `words_per_minute`)")
    out()
    out("Words of every narration above ÷ seconds of their sentences' audio (pauses between sentences excluded).")
    out()
    out(table(["voice", "words", "sentence audio s", "measured wpm", "manifest wpm"], rows))
    out()


def report_durations(rows: list[Timed], topic: str) -> None:
    """The duration table with PASS/FAIL against ±5 % on both streams, coverage and the longest pause."""
    out(f'## Duration: offline narration of "{topic}" written and rendered for each `durationSeconds`')
    out()
    body = []
    for r in rows:
        v_err, a_err = (r.video_s / r.requested - 1) * 100, (r.audio_s / r.requested - 1) * 100
        coverage = r.speech_s / r.video_s if r.video_s else 0.0
        misses = [
            name
            for name, bad in (
                ("video ±5 %", abs(v_err) > DURATION_TOLERANCE * 100),
                ("audio ±5 %", abs(a_err) > DURATION_TOLERANCE * 100),
                ("coverage", coverage < MIN_SPEECH_COVERAGE),
                ("pause", r.pause_s > MAX_PAUSE_S),
            )
            if bad
        ]
        body.append([
            r.variant, f"{r.requested:g}", f"{r.video_s:.2f}", f"{v_err:+.1f}%", f"{r.audio_s:.2f}", f"{a_err:+.1f}%",
            f"{coverage * 100:.0f}%", f"{r.pause_s:.2f}", f"{r.wall_s:.1f}",
            "PASS" if not misses else "FAIL: " + ", ".join(misses),
        ])  # fmt: skip
    header = [
        "variant", "requested s", "video s", "video err", "audio s", "audio err", "speech coverage",
        "longest pause s", "render wall s", "result (±5 %, ≥75 %, ≤1.5 s)",
    ]  # fmt: skip
    out(table(header, body))
    out()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its tables; any failure to render, decode or recognise raises."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--smoke", action="store_true", help="one Harvard list, one 10 s topic, the 5 s duration, svd only (CI)"
    )
    parser.add_argument("--transcripts", action="store_true", help="also print every transcript")
    args = parser.parse_args(argv)
    quiet_logging()
    lists, topics, topic_seconds = (
        ([1], TOPICS[:1], SMOKE_TOPIC_SECONDS) if args.smoke else ([1, 2, 3], TOPICS, TOPIC_SECONDS)
    )
    durations, variants = ((5.0,), VARIANTS[:1]) if args.smoke else (DURATIONS, VARIANTS)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-speech-") as tmp:
        work = Path(tmp)
        texts = groups(lists, topics, topic_seconds)
        heard = listen(texts, variants, work)
        timed = time_renders(TOPICS[0], durations, variants, work)
    out(f"# Speech benchmark ({machine()})")
    out()
    report_intelligibility(texts, heard, variants, topic_seconds, args.transcripts)
    report_pace(heard)
    report_durations(timed, TOPICS[0])
    out(f"Total benchmark wall time {time.perf_counter() - start:.0f} s.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
