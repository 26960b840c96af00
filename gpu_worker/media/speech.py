"""What every speech runtime returns: the narration WAV with its sentence, word and phoneme timeline.

Runtimes (Piper, eSpeak NG, Coqui) speak sentence by sentence into `SpokenSentence`s; `assemble`
joins them with pauses, stretches the pauses and adds a tail so the audio lasts the requested
duration, and writes one WAV whose timeline sums to its length. Captions, the mouth and the
duration checks read that timeline, so they do not depend on which runtime spoke.
"""

import logging
import re
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from schemas.speech import SENTENCE_PAUSE_SECONDS, split_sentences

__all__ = ["split_sentences"]  # re-exported: runtimes split narratives the way the estimate counts them

logger = logging.getLogger(__name__)

_EDGE_PAD_S = 0.04
_LEAD_IN_S = 0.3  # at most this much silence before the first word when there is time to fill
_MIN_PAUSE_S = 0.15  # the shortest pause between sentences when speech must fit a short video
_MAX_PAUSE_S = 1.2  # stretched pauses between sentences stay under the 1.5 s a viewer reads as a gap
_SILENCE_LEVEL = 200  # int16 amplitude below which a sample counts as silence

Timing = Literal["exact", "estimated"]


@dataclass(frozen=True, eq=False)
class ClonedVoice:
    """A speaker's conditioning computed from their clips by `train_voice`, for the engine that made it.

    Attributes:
        engine: the speech runtime id that computed it and alone can use it (`coqui-xtts`).
        gpt_latents: XTTS's GPT conditioning latents, `(1, model dim, tokens)` float32.
        speaker_embedding: XTTS's speaker embedding (HiFi-GAN's d-vector), `(1, dim, 1)` float32.
    """

    engine: str
    gpt_latents: np.ndarray
    speaker_embedding: np.ndarray


@dataclass(frozen=True)
class VoiceParams:
    """How the narrator sounds.

    Attributes:
        language: BCP-47 language (`en-us`, `de`, …); espeak-ng names work too.
        voice: optional espeak-ng variant (`f3`, `m2`, `klatt`, …) applied on top of the language
            (kept under this name because trained profiles store it so).
        rate_wpm: speaking rate in words per minute; a trained profile's pace is `rate_wpm / 165`.
        pitch: base pitch, 0-100 (espeak-ng only).
        pitch_range: pitch variation, 0-100 (espeak-ng only).
        voice_id: the advertised voice to speak with (`piper:en_US-joe-medium`, `espeak-ng:de`, `profile`);
            None: the default.
        clone: the profile's cloned voice, when `voice_id` is `profile` and the profile has one.
    """

    language: str = "en"
    voice: str | None = None
    rate_wpm: int = 165
    pitch: int = 50
    pitch_range: int = 50
    voice_id: str | None = None
    clone: ClonedVoice | None = field(default=None, compare=False, repr=False)

    @property
    def pace(self) -> float:
        """The speaker's pace relative to a voice's default (a trained profile's fitted rate)."""
        return self.rate_wpm / 165


@dataclass(frozen=True)
class Segment:
    """A sentence, word or phoneme and when it is heard, in seconds from the start of the audio."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class SpokenSentence:
    """One sentence as a runtime spoke it: int16 samples, words and phonemes timed from the clip's start."""

    text: str
    samples: np.ndarray
    words: list[Segment] = field(default_factory=list)
    phonemes: list[Segment] = field(default_factory=list)


@dataclass(frozen=True)
class SpeechResult:
    """A synthesized narration: the WAV file, its sentence/word/phoneme timeline and who spoke it.

    Attributes:
        timing: `exact` when the runtime's own durations or events timed the words; `estimated` when
            they were spread proportionally over each sentence.
        runtime: the runtime id as the GPU manifest advertises it (`piper:en_US-joe-medium`, `espeak-ng`, `coqui`).
        speech_seconds: from the first word's start to the last word's end (what the coverage target measures).
    """

    path: Path
    duration: float
    sample_rate: int
    segments: list[Segment] = field(default_factory=list)
    words: list[Segment] = field(default_factory=list)
    phonemes: list[Segment] = field(default_factory=list)
    timing: Timing = "exact"
    runtime: str = "espeak-ng"

    @property
    def speech_seconds(self) -> float:
        """Time from the first sentence's start to the last one's end."""
        return self.segments[-1].end - self.segments[0].start if self.segments else 0.0


def trim_silence(samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
    """Cut leading and trailing silence of 16-bit samples, keeping a short pad so onsets are not clipped.

    Returns:
        The trimmed samples and the index of their first sample in `samples`.
    """
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > _SILENCE_LEVEL)
    if loud.size == 0:
        return samples[:0], 0
    pad = int(_EDGE_PAD_S * sample_rate)
    start = max(0, int(loud[0]) - pad)
    return samples[start : int(loud[-1]) + pad], start


def spoken_length(sentences: list[SpokenSentence], rate: int) -> float:
    """Seconds `assemble` needs for these sentences before any padding."""
    audible = [s for s in sentences if s.samples.size]
    return sum(s.samples.size for s in audible) / rate + len(audible) * SENTENCE_PAUSE_SECONDS


def assemble(
    sentences: list[SpokenSentence],
    rate: int,
    out_wav: Path,
    *,
    runtime: str,
    timing: Timing = "exact",
    target_seconds: float | None = None,
) -> SpeechResult:
    """Join spoken sentences with pauses into a 16-bit mono WAV and offset their timelines.

    With `target_seconds`, silence is added until the audio lasts exactly that long: a short
    lead-in, longer pauses between sentences (each under `_MAX_PAUSE_S`), the rest at the end,
    where the picture keeps moving. Audio already longer than the target is never cut.

    Args:
        sentences: The sentences in order; silent ones are skipped.
        rate: Their sample rate (the WAV's).
        out_wav: Where to write the WAV file (parent directories are created).
        runtime: The runtime id that spoke them (recorded in the result).
        timing: Whether their word timings are exact or estimated.
        target_seconds: The duration to pad to, or None for no padding.

    Returns:
        The WAV path, duration, sample rate and the sentence, word and phoneme timeline.
    """
    audible = [s for s in sentences if s.samples.size]
    pause = int(SENTENCE_PAUSE_SECONDS * rate)
    if target_seconds is not None and audible and spoken_length(audible, rate) > target_seconds:
        # Too long even at the fastest allowed pace: shorter pauses, down to a breath, before the video runs long.
        excess = spoken_length(audible, rate) - target_seconds
        pause = max(int(_MIN_PAUSE_S * rate), pause - int(excess / len(audible) * rate))
    lead, gap = pause // 2, pause
    spare = 0
    if target_seconds is not None and audible:
        spoken = sum(s.samples.size for s in audible) + len(audible) * pause
        spare = max(0, int(round(target_seconds * rate)) - spoken)
        extra_lead = min(spare // 5, int(_LEAD_IN_S * rate) - lead) if spare else 0
        lead += max(0, extra_lead)
        gaps = len(audible) - 1
        if gaps:
            gap += min((spare - max(0, extra_lead)) // (2 * gaps), max(0, int(_MAX_PAUSE_S * rate) - pause))
    pieces: list[np.ndarray] = [np.zeros(lead, np.int16)]
    segments: list[Segment] = []
    words: list[Segment] = []
    phonemes: list[Segment] = []
    cursor = lead
    for i, sentence in enumerate(audible):
        t0 = cursor / rate
        segments.append(Segment(sentence.text, t0, (cursor + sentence.samples.size) / rate))
        words += [Segment(w.text, t0 + w.start, t0 + w.end) for w in sentence.words]
        phonemes += [Segment(p.text, t0 + p.start, t0 + p.end) for p in sentence.phonemes]
        silence = gap if i < len(audible) - 1 else pause - pause // 2
        pieces += [sentence.samples.astype(np.int16), np.zeros(silence, np.int16)]
        cursor += sentence.samples.size + silence
    audio = np.concatenate(pieces)
    if target_seconds is not None:
        audio = np.concatenate([audio, np.zeros(max(0, int(round(target_seconds * rate)) - audio.size), np.int16)])
    write_pcm16(out_wav, audio, rate)
    duration = audio.size / rate
    logger.info("speech (%s): %d sentences, %.2f s -> %s", runtime, len(segments), duration, out_wav)
    return SpeechResult(out_wav, duration, rate, segments, words, phonemes, timing, runtime)


def estimate_timeline(sentence: str, samples: np.ndarray, rate: int) -> SpokenSentence:
    """A sentence from a runtime without durations: words spread over the clip in proportion to their letters."""
    tokens = re.findall(r"\S+", sentence)
    weights = np.array([max(1, len(re.sub(r"\W", "", t))) + 1 for t in tokens], dtype=float)
    edges = np.concatenate([[0.0], np.cumsum(weights)]) / max(weights.sum(), 1.0) * (samples.size / rate)
    words = [Segment(t, float(a), float(b)) for t, a, b in zip(tokens, edges[:-1], edges[1:], strict=True)]
    return SpokenSentence(sentence, samples, words, [])


def write_pcm16(path: Path, audio: np.ndarray, rate: int) -> None:
    """Write mono int16-range samples as a 16-bit PCM WAV (the directory is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(audio.astype(np.int16).tobytes())
