"""The worker's voices and the one way a narration is spoken: pick the engine, fit the length, assemble the timeline.

Engines: Piper neural voices (the default where one speaks the language), eSpeak NG for every
other language, and the Coqui TTS backend when configured. A job names a voice id from the
manifest (`voice`), or gets the first voice for its language. With XTTS v2 configured, the voice
`profile` (one entry per language XTTS speaks, listed last so it is never a default) speaks in
the profile's cloned voice; a job whose profile has no clone gets the language's default voice.
"""

import functools
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from gpu_worker.backends.base import SpeechBackend
from gpu_worker.media import espeak
from gpu_worker.media.captions import can_draw
from gpu_worker.media.piper import PiperModel, PiperVoice, joe_voice
from gpu_worker.media.speech import SpeechResult, SpokenSentence, Timing, VoiceParams, assemble, spoken_length
from schemas.capabilities import VoiceInfo
from schemas.speech import (
    MAX_SLOW_DOWN,
    MAX_SPEED_UP,
    MIN_SPEECH_COVERAGE,
    PROFILE_VOICE,
    estimate_spoken_seconds,
    split_sentences,
    voices_for,
)

logger = logging.getLogger(__name__)

Progress = Callable[[float], None]

# Measured words per minute of narration (bench/speech.py prints them): what the duration estimate uses.
PIPER_WPM = 200.0
ESPEAK_WPM = 200.0
CLONE_WPM = 165.0  # XTTS's pace is not measured here (no real weights): an ordinary reading pace
_TAIL = 0.03  # fitted speech ends this share of the video before its end, so the last word is not cut
_FILL = 0.85  # speech shorter than MIN_SPEECH_COVERAGE is slowed towards this share of the video

ESPEAK_LICENSE = "GPL-3.0-or-later (eSpeak NG)"
PIPER_JOE_LICENSE = (
    "voice: CC0 dataset (joe), fine-tuned from lessac (Blizzard 2011 corpus: non-commercial terms reported)"
)


class Narrator:
    """Speaks narrations with the worker's voices; Piper models load once, on first use."""

    def __init__(self, coqui: SpeechBackend | None = None, piper_models: list[PiperModel] | None = None) -> None:
        self._coqui = coqui
        self._piper_models = {m.voice_id: m for m in (piper_models if piper_models is not None else [joe_voice()])}
        self._piper: dict[str, PiperVoice] = {}
        self._lock = threading.Lock()
        self._voices: list[VoiceInfo] | None = None

    @property
    def clone_engine(self) -> str | None:
        """The runtime id of the configured voice-cloning backend (`coqui-xtts`), or None."""
        return self._coqui.name if self._coqui is not None and getattr(self._coqui, "clones_voices", False) else None

    def voices(self) -> list[VoiceInfo]:
        """Every voice, preferred first: Coqui (configured on purpose), Piper, eSpeak NG per language, then `profile`."""
        if self._voices is None:
            found: list[VoiceInfo] = []
            if self._coqui is not None and self.clone_engine is None:
                found.append(
                    VoiceInfo(id="coqui", language="en", engine="coqui", license="the configured model's own",
                              commercial="unclear", words_per_minute=165.0)
                )  # fmt: skip
            found += [
                VoiceInfo(id=voice_id, language="en-us", engine="piper", license=PIPER_JOE_LICENSE,
                          commercial="unclear", words_per_minute=PIPER_WPM)
                for voice_id in self._piper_models
            ]  # fmt: skip
            found += [
                VoiceInfo(id=f"espeak-ng:{tag}", language=tag, engine="espeak-ng", license=ESPEAK_LICENSE,
                          commercial="yes", words_per_minute=ESPEAK_WPM, captions=can_draw(tag))
                for tag in espeak.languages()
            ]  # fmt: skip
            if self.clone_engine is not None:
                found += [
                    VoiceInfo(id=PROFILE_VOICE, language=tag, engine=self.clone_engine,
                              license=getattr(self._coqui, "license", "the configured model's own"),
                              commercial="no", words_per_minute=CLONE_WPM, captions=can_draw(tag))
                    for tag in getattr(self._coqui, "languages", [])
                ]  # fmt: skip
            self._voices = found
        return self._voices

    def load(self) -> None:
        """Load every Piper voice now (about 0.7 s each) instead of in the first render that speaks with it."""
        for voice_id in self._piper_models:
            self._piper_voice(voice_id)

    def runtime_ids(self) -> list[str]:
        """The speech stage's runtime ids for the manifest, preferred first."""
        ids = [self._coqui.name] if self._coqui is not None else []
        return [*ids, *self._piper_models, espeak.RUNTIME_ID]

    def speak(
        self,
        text: str,
        out_wav: Path,
        voice: VoiceParams,
        target_seconds: float | None = None,
        seed: int = 0,
        progress: Progress | None = None,
    ) -> SpeechResult:
        """Speak `text`, fitted to `target_seconds` when given, into a WAV with its timeline.

        Fitting: speech longer than the video (less a short tail) is spoken up to `MAX_SPEED_UP` faster;
        speech covering less than `MIN_SPEECH_COVERAGE` is spoken up to `MAX_SLOW_DOWN` slower; then
        pauses and a tail of silence make the audio exactly `target_seconds` long (never cut).

        Raises:
            ValueError: nothing to say, or a voice or language no engine has (bad input: not retryable).
        """
        sentences = split_sentences(text)
        if not sentences:
            raise ValueError("nothing to say: the narrative is empty")
        report = progress or (lambda _f: None)
        chosen = self._choose(voice)
        speed = voice.pace
        if target_seconds is not None:  # aim from the estimate first, so that one synthesis usually fits
            speed *= _fitted_speed(estimate_spoken_seconds(text, chosen.words_per_minute, voice.pace), target_seconds)
        spoken, rate, timing = self._say(chosen, sentences, voice, speed, seed, report)
        if target_seconds is not None:
            length = spoken_length(spoken, rate)
            correction = _fitted_speed(length, target_seconds)
            fitted = min(max(speed * correction, voice.pace * (1 - MAX_SLOW_DOWN)), voice.pace / (1 - MAX_SPEED_UP))
            if abs(fitted / speed - 1) > 0.01:
                logger.info("speech %.2f s for a %.2f s video: speaking %.2f× as fast", length, target_seconds, fitted)
                spoken, rate, timing = self._say(chosen, sentences, voice, fitted, seed, report)
        runtime = chosen.engine if chosen.engine in (espeak.RUNTIME_ID, self.clone_engine) else chosen.id
        return assemble(spoken, rate, out_wav, runtime=runtime, timing=timing, target_seconds=target_seconds)

    def _choose(self, voice: VoiceParams) -> VoiceInfo:
        voices = self.voices()
        if voice.voice_id == PROFILE_VOICE:
            clone = voice.clone
            if clone is None or clone.engine != self.clone_engine:
                # No clone (trained before cloning, or not here): the voice a job naming none gets, at the
                # profile's pace; an eSpeak NG default still takes the profile's fitted variant and pitch.
                return self._default(voice.language)
            cloned = voices_for([v for v in voices if v.id == PROFILE_VOICE], voice.language)
            if not cloned:
                raise ValueError(f"the cloned voice ({clone.engine}) does not speak {voice.language!r}")
            return cloned[0]
        if voice.voice_id is not None:
            chosen = next((v for v in voices if v.id == voice.voice_id), None)
            if chosen is None:
                raise ValueError(f"unknown voice: {voice.voice_id!r}")
            return chosen
        if voice.voice is not None:  # an eSpeak NG variant (a trained profile, an old job): eSpeak NG speaks
            return VoiceInfo(id=f"espeak-ng:{voice.language}", language=voice.language, engine="espeak-ng",
                             license=ESPEAK_LICENSE, commercial="yes", words_per_minute=ESPEAK_WPM)  # fmt: skip
        return self._default(voice.language)

    def _default(self, language: str) -> VoiceInfo:
        """The first voice for `language`, as the API picks when a job names none (never `profile`: it needs a clone)."""
        matching = voices_for([v for v in self.voices() if v.id != PROFILE_VOICE], language)
        if not matching:
            raise ValueError(f"unknown speech language: {language!r}")
        return matching[0]

    def _say(
        self, chosen: VoiceInfo, sentences: list[str], voice: VoiceParams, speed: float, seed: int, progress: Progress
    ) -> tuple[list[SpokenSentence], int, Timing]:
        if chosen.engine == "piper":
            spoken, rate = self._piper_voice(chosen.id).speak_sentences(sentences, speed, progress)
            return spoken, rate, "exact"
        if chosen.engine in ("coqui", self.clone_engine) and self._coqui is not None:
            spoken, rate = self._coqui.speak_sentences(sentences, voice, speed, seed, progress)
            return spoken, rate, "estimated"
        language = chosen.language if chosen.engine == "espeak-ng" else voice.language
        params = VoiceParams(language, voice.voice, 165, voice.pitch, voice.pitch_range)
        spoken, rate = espeak.speak_sentences(sentences, params, speed)
        progress(1.0)
        return spoken, rate, "exact"

    def _piper_voice(self, voice_id: str) -> PiperVoice:
        with self._lock:
            if voice_id not in self._piper:
                self._piper[voice_id] = PiperVoice(self._piper_models[voice_id])
            return self._piper[voice_id]


@functools.cache
def default_narrator() -> Narrator:
    """The embedded voices (Piper, eSpeak NG), shared by every render that is not given a narrator."""
    return Narrator()


def _fitted_speed(length: float, target: float) -> float:
    """How much faster (> 1) or slower (< 1) to speak `length` seconds of speech for a `target` s video.

    At most `MAX_SPEED_UP` shorter and `MAX_SLOW_DOWN` longer: beyond that a voice sounds rushed or dragging.
    """
    if length > target * (1 - _TAIL):
        return float(min(length / (target * (1 - _TAIL)), 1 / (1 - MAX_SPEED_UP)))
    if length < target * MIN_SPEECH_COVERAGE:
        return float(max(length / (target * _FILL), 1 - MAX_SLOW_DOWN))
    return 1.0


def synthesize(text: str, out_wav: Path, voice: VoiceParams, target_seconds: float | None = None) -> SpeechResult:
    """Speak `text` with the default voices (what a render without model backends uses)."""
    return default_narrator().speak(text, out_wav, voice, target_seconds)
