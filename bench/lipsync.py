"""Lip-sync against an independent phone alignment (`python -m bench.lipsync [--smoke]`; prints markdown tables).

The mouth is driven by the speech runtime's own phoneme timeline (`visemes.mouth_track`), so it is
judged here against a timeline that did not drive it: PocketSphinx 5.1.1's forced alignment (default
en-us acoustic model and dictionary) of the narration text to the delivered audio, 16 kHz mono.
Every video frame (time `i / fps`) takes the class of the aligned phone covering it, ARPAbet:

- bilabial: P B M (the lips must meet);
- open vowel: AA AE AW AY. AH is left out: the dictionary has no stress marks, so its AH is mostly
  the unstressed schwa ("the", "a", "of"), which our visemes open only a little; it counts as neutral;
- rounded: UW UH OW W OY;
- neutral: every other speech phone (silence and PocketSphinx's noise phones are not counted).

The face mesh (`facemesh.face_mesh`) measures each frame: openness = inner-lip gap (points 13-14) ÷
mouth width (61-291), and the mouth width over its median in that video (the svd camera zooms).
Targets: bilabial frames with openness < 0.15 ≥ 80 %; mean openness of open vowels ÷ of bilabials
≥ 2; mean normalised width of rounded frames < of neutral frames.

Sources, per narration (Harvard sentences and the render benchmark's narration, each 10-20 s): the
mp4 of `render_still_video` for both variants (what the GPU worker delivers: blinks, head motion or
camera moves, H.264 and AAC), its audio decoded with PyAV and aligned; and, from the sadtalker
render's own speech WAV (aligned as a WAV), two sets of frames of the portrait framed as the
sadtalker variant frames it, mouth only (no blinks or head motion), measured before any encode:
the viseme mouth (`animate.talking_frames` with `mouth_track`) and the loudness-driven mouth it
replaced (`expressions.open_mouth` by `animate.loudness_envelope`), the baseline.

A last table compares the two timelines: PocketSphinx puts a bilabial's start 55-65 ms before
Piper's (its span takes in the stop's silent closure), its end 15-20 ms before. Piper's sampling
noise is not seeded, so the figures move by a few points from run to run.

The full run (4 narrations of about 13 s, 8 renders) takes about a minute on 2 cores; `--smoke`
(two sentences, sadtalker only) about 5 s, which the test suite runs so the benchmark keeps working.
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench._common import machine, out, quiet_logging, table
from bench.recognizer import RATE, normalise, pcm16k
from bench.render import SENTENCES
from bench.speech import FPS, RESOLUTION, harvard_lists, render, verdict
from gpu_worker.media.animate import loudness_envelope, talking_frames
from gpu_worker.media.expressions import open_mouth
from gpu_worker.media.facemesh import face_mesh
from gpu_worker.media.presenter import builtin_portrait, find_face, frame_portrait
from gpu_worker.media.speech import Segment
from gpu_worker.media.visemes import is_bilabial, mouth_track
from schemas.media import frame_size

logger = logging.getLogger("bench.lipsync")

VARIANTS = ("svd", "sadtalker")
CLASSES = ("bilabial", "open", "rounded", "neutral")
_PHONES = {
    **dict.fromkeys(("P", "B", "M"), "bilabial"),
    **dict.fromkeys(("AA", "AE", "AW", "AY"), "open"),
    **dict.fromkeys(("UW", "UH", "OW", "W", "OY"), "rounded"),
}
CLOSED_BELOW = 0.15  # openness under which the lips count as together
TARGET_CLOSED, TARGET_RATIO = 0.80, 2.0
VISEMES, LOUDNESS = "visemes, portrait frames", "loudness, portrait frames"
_MATCH_S = 0.15  # a PocketSphinx bilabial and one of our timeline's further apart than this are not the same
_SPHINX_FRAME_S = 0.01


@dataclass(frozen=True)
class Narration:
    """A text spoken as one narration."""

    name: str
    text: str


@dataclass(frozen=True)
class Phone:
    """One aligned ARPAbet phone, in seconds from the start of the audio."""

    name: str
    start: float
    end: float


@dataclass
class Measured:
    """Every measured frame of one source, pooled over the narrations."""

    classes: list[str | None] = field(default_factory=list)  # None: silence, noise or no phone
    openness: list[float] = field(default_factory=list)  # NaN: no face found in the frame
    width: list[float] = field(default_factory=list)  # mouth width ÷ its median in that video

    def of(self, cls: str) -> tuple[np.ndarray, np.ndarray]:
        """The openness and normalised widths of the frames of one class that show a face."""
        pick = [c == cls and not math.isnan(o) for c, o in zip(self.classes, self.openness, strict=True)]
        return np.asarray(self.openness)[pick], np.asarray(self.width)[pick]


def narrations(smoke: bool) -> list[Narration]:
    """Harvard lists 1-3 (first five sentences each) and the render benchmark's opening; two sentences for `--smoke`."""
    harvard = harvard_lists()
    if smoke:
        return [Narration("Harvard list 1, sentences 1-2", " ".join(harvard[0][:2]))]
    found = [Narration(f"Harvard list {i + 1}, sentences 1-5", " ".join(harvard[i][:5])) for i in range(3)]
    return [*found, Narration("render benchmark, sentences 1-5", " ".join(SENTENCES[:5]))]


class Aligner:
    """PocketSphinx forced alignment of a known text (every word must be in its default dictionary)."""

    def __init__(self) -> None:
        from pocketsphinx import Decoder

        self._decoder = Decoder(samprate=RATE, loglevel="FATAL")

    def align(self, pcm: np.ndarray, text: str) -> list[Phone]:
        """The phones of `text` as heard in 16 kHz mono int16 audio."""
        words = normalise(text)
        unknown = [w for w in words.split() if self._decoder.lookup_word(w) is None]
        if unknown:
            raise ValueError(f"not in PocketSphinx's dictionary, so they cannot be aligned: {unknown}")
        d = self._decoder
        d.set_align_text(words)
        self._decode(pcm)  # the first pass finds the words,
        d.set_alignment()
        self._decode(pcm)  # the second, in alignment mode, their phones
        phones = [
            Phone(p.name, p.start * _SPHINX_FRAME_S, (p.start + p.duration) * _SPHINX_FRAME_S)
            for word in d.get_alignment()
            for p in word
        ]
        if not any(phone_class(p.name) for p in phones):
            raise RuntimeError("PocketSphinx aligned no speech phone")
        return phones

    def _decode(self, pcm: np.ndarray) -> None:
        self._decoder.start_utt()
        self._decoder.process_raw(pcm.tobytes(), full_utt=True)
        self._decoder.end_utt()


def phone_class(name: str) -> str | None:
    """The class of an ARPAbet phone; None for silence and noise."""
    if name == "SIL" or name.startswith("+"):
        return None
    return _PHONES.get(name, "neutral")


def frame_classes(phones: Sequence[Phone], n: int, fps: float) -> list[str | None]:
    """The class of the phone covering each frame's time `i / fps`."""
    starts = np.array([p.start for p in phones])
    found: list[str | None] = []
    for i in range(n):
        t = i / fps
        k = int(np.searchsorted(starts, t, side="right")) - 1
        found.append(phone_class(phones[k].name) if k >= 0 and t < phones[k].end else None)
    return found


def decoded(video: Path) -> Iterator[np.ndarray]:
    """The video stream's frames as RGB arrays."""
    import av

    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def measure(frames: Iterable[np.ndarray], phones: Sequence[Phone], fps: float, into: Measured) -> int:
    """Mesh every frame and add its class, openness and normalised width to `into`; returns the frame count."""
    openness, width = [], []
    for frame in frames:
        mesh = face_mesh(frame)
        openness.append(mesh.mouth_openness() if mesh is not None else math.nan)
        width.append(mesh.mouth_width() if mesh is not None else math.nan)
    if all(math.isnan(w) for w in width):
        raise RuntimeError("the face mesh found no face in any frame")
    median = float(np.nanmedian(width))
    into.classes += frame_classes(phones, len(openness), fps)
    into.openness += openness
    into.width += [w / median for w in width]
    return len(openness)


def timing_lags(phones: Sequence[Phone], ours: Sequence[Segment]) -> list[tuple[float, float]]:
    """How much later PocketSphinx's bilabials start and end than the nearest one of the timeline that drove it."""
    mine = [p for p in ours if is_bilabial(p.text)]
    if not mine:
        return []
    lags = []
    starts = np.array([p.start for p in mine])
    for phone in phones:
        if phone_class(phone.name) != "bilabial":
            continue
        k = int(np.argmin(np.abs(starts - phone.start)))
        if abs(starts[k] - phone.start) <= _MATCH_S:
            lags.append((phone.start - mine[k].start, phone.end - mine[k].end))
    return lags


def portrait_frames(wav: Path, phonemes: Sequence[Segment], n: int) -> dict[str, Iterator[np.ndarray]]:
    """The portrait framed as the sadtalker variant frames it, with the viseme mouth and with the loudness mouth."""
    face = builtin_portrait()
    box, lips = find_face(face)
    # The framing of `backends.render.RenderBackends._talking_head`.
    framed, framed_box = frame_portrait(face, frame_size(RESOLUTION, "16:9"), face_height=0.32, face_top=0.2, face=box)
    still = np.asarray(framed)

    def loud() -> Iterator[np.ndarray]:
        for amount in loudness_envelope(wav, FPS, n):
            frame = still.copy()
            open_mouth(frame, framed_box, float(amount))
            yield frame

    return {VISEMES: talking_frames(still, framed_box, lips, mouth_track(phonemes, FPS, n)), LOUDNESS: loud()}


Lags = dict[str, list[tuple[float, float]]]
"""Per audio source: the (start, end) lags of each matched bilabial, s."""


def run(texts: Sequence[Narration], variants: Sequence[str], work: Path) -> tuple[dict[str, Measured], Lags]:
    """Render, align and measure every narration; returns each source's pooled frames and the bilabials' lags."""
    aligner = Aligner()
    sources: dict[str, Measured] = {}
    lags: Lags = {}
    for k, narration in enumerate(texts):
        for variant in variants:
            result, wall = render(variant, narration.text, work / f"n{k}-{variant}", None)
            if result.speech is None:
                raise RuntimeError("render_still_video returned no speech timeline")
            phones = aligner.align(pcm16k(result.video), narration.text)
            n = measure(decoded(result.video), phones, FPS, sources.setdefault(f"{variant} mp4", Measured()))
            lags.setdefault(f"{variant} mp4 audio", []).extend(timing_lags(phones, result.speech.phonemes))
            logger.info("%s, %s: rendered in %.1f s, measured %d frames", narration.name, variant, wall, n)
            if variant != "sadtalker":
                continue
            wav_phones = aligner.align(pcm16k(result.audio), narration.text)
            frames = max(1, math.ceil(result.speech.duration * FPS))
            for name, made in portrait_frames(result.audio, result.speech.phonemes, frames).items():
                measure(made, wav_phones, FPS, sources.setdefault(name, Measured()))
            lags.setdefault("sadtalker speech WAV", []).extend(timing_lags(wav_phones, result.speech.phonemes))
    return sources, lags


@dataclass(frozen=True)
class Scores:
    """One source's figures against the targets."""

    closed: float  # fraction of bilabial frames with openness < CLOSED_BELOW
    n_bilabial: int
    open_mean: float
    bilabial_mean: float
    rounded_width: float
    neutral_width: float

    @property
    def ratio(self) -> float:
        """Mean openness of open vowels over that of bilabials."""
        return self.open_mean / self.bilabial_mean if self.bilabial_mean > 0 else math.inf

    def misses(self) -> list[str]:
        """The targets missed (NaN, from a class with no frames, misses)."""
        return [
            name
            for name, ok in (
                ("bilabial", self.closed >= TARGET_CLOSED),
                ("open ÷ bilabial", self.ratio >= TARGET_RATIO),
                ("rounding", self.rounded_width < self.neutral_width),
            )
            if not ok
        ]


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


def score(m: Measured) -> Scores:
    """The figures of one source."""
    bilabial, _ = m.of("bilabial")
    closed = float((bilabial < CLOSED_BELOW).mean()) if bilabial.size else math.nan
    return Scores(
        closed, bilabial.size, _mean(m.of("open")[0]), _mean(bilabial), _mean(m.of("rounded")[1]),
        _mean(m.of("neutral")[1]),
    )  # fmt: skip


def report(texts: Sequence[Narration], sources: dict[str, Measured], lags: Lags) -> None:
    """The targets table (one column per source), then frame counts and means per class, then timing."""
    names = list(sources)
    scores = {s: score(sources[s]) for s in names}
    out("## Lip-sync against PocketSphinx's phone alignment of the delivered audio")
    out()
    out(
        f"{len(texts)} narration(s) ({', '.join(t.name for t in texts)}), Piper via `render_still_video` at "
        f"{RESOLUTION} {FPS} fps. Openness = inner-lip gap ÷ mouth width (face mesh); width ÷ its median per "
        f"video. Open vowels AA AE AW AY; rounded UW UH OW W OY; bilabial P B M. Portrait frames: the sadtalker "
        "render's speech WAV, the portrait framed as sadtalker frames it, mouth only, not encoded."
    )
    out()
    figures = (
        (f"bilabial frames closed (openness < {CLOSED_BELOW})", f"≥ {TARGET_CLOSED:.0%}"),
        ("open vowels ÷ bilabials, mean openness", f"≥ {TARGET_RATIO:g}"),
        ("rounded vs neutral, mean width", "rounded < neutral"),
        ("result", "all three"),
    )
    cells = {name: _cells(scores[name]) for name in names}
    rows = [[figure, target, *(cells[name][k] for name in names)] for k, (figure, target) in enumerate(figures)]
    out(table(["figure", "target", *names], rows))
    out()
    report_classes(sources)
    report_timing(lags)


def _cells(s: Scores) -> tuple[str, str, str, str]:
    """One source's column of the targets table, in the order of its rows."""
    misses = s.misses()
    return (
        f"{s.closed:.0%} of {s.n_bilabial}",
        f"{s.ratio:.2f} ({s.open_mean:.3f} ÷ {s.bilabial_mean:.3f})",
        f"{s.rounded_width:.3f} vs {s.neutral_width:.3f} ({s.rounded_width / s.neutral_width - 1:+.1%})",
        verdict(not misses) + (f": {', '.join(misses)}" if misses else ""),
    )


def report_classes(sources: dict[str, Measured]) -> None:
    """Frames and mean openness and width of each class, per source."""
    rows = []
    for name, m in sources.items():
        no_face = sum(math.isnan(o) for o in m.openness)
        cells = [name, len(m.openness), no_face]
        for cls in CLASSES:
            openness, width = m.of(cls)
            cells.append(f"{openness.size}: {_mean(openness):.3f} / {_mean(width):.3f}")
        rows.append(cells)
    out("Frames per class: count: mean openness / mean normalised width.")
    out()
    out(table(["source", "frames", "no face", *CLASSES], rows))
    out()


def report_timing(lags: Lags) -> None:
    """The median lag of PocketSphinx's bilabials behind the timeline that drove the mouth, per audio source."""
    rows = []
    for name, found in lags.items():
        if found:
            on, off = (statistics.median(lag[k] for lag in found) * 1000 for k in (0, 1))
            rows.append([name, len(found), f"{on:+.0f}", f"{off:+.0f}"])
    out(
        "Timing: PocketSphinx's bilabials matched to the nearest one of the speech runtime's timeline "
        f"(within {_MATCH_S * 1000:.0f} ms); positive = PocketSphinx hears it later. Its phones last "
        f"at least 30 ms and are timed in {_SPHINX_FRAME_S * 1000:.0f} ms steps."
    )
    out()
    out(table(["audio", "matched bilabials", "median start lag ms", "median end lag ms"], rows))
    out()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its tables; any failure to render, decode, align or mesh raises."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="two sentences, the sadtalker variant only (CI)")
    args = parser.parse_args(argv)
    quiet_logging()
    texts = narrations(args.smoke)
    variants = VARIANTS[1:] if args.smoke else VARIANTS
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-lipsync-") as tmp:
        sources, lags = run(texts, variants, Path(tmp))
    out(f"# Lip-sync benchmark ({machine()})")
    out()
    report(texts, sources, lags)
    out(f"Total benchmark wall time {time.perf_counter() - start:.0f} s.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
