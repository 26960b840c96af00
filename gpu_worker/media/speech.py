"""Text-to-speech with libespeak-ng through ctypes: real speech, no model weights."""

import ctypes
import logging
import re
import threading
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK = 0
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_SENTENCE_PAUSE_S = 0.35
_EDGE_PAD_S = 0.04
_SILENCE_LEVEL = 200  # int16 amplitude below which a sample counts as silence
_PHONEMES_IPA = 0x02  # espeak_TextToPhonemes mode: IPA, no separator between phonemes

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
# espeak-ng keeps global state and is not thread-safe: one lock guards every call into it.
_lock = threading.Lock()
_engine: "_Engine | None" = None
_SENTENCE_END = re.compile(r"(?<=[.!?;:…])\s+|\n\s*\n")


@dataclass(frozen=True)
class VoiceParams:
    """How the narrator sounds.

    Attributes:
        language: espeak-ng language or voice name (`en`, `en-us`, `de`, `fr`, …).
        voice: optional espeak-ng variant (`f3`, `m2`, `klatt`, …) applied on top of the language.
        rate_wpm: speaking rate in words per minute (80-450).
        pitch: base pitch, 0-100.
        pitch_range: pitch variation, 0-100 (0 is monotone).
    """

    language: str = "en"
    voice: str | None = None
    rate_wpm: int = 165
    pitch: int = 50
    pitch_range: int = 50


@dataclass(frozen=True)
class Segment:
    """One spoken sentence and when it is heard, in seconds from the start of the audio."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class SpeechResult:
    """A synthesized narration: the WAV file and its sentence timings."""

    path: Path
    duration: float
    sample_rate: int
    segments: list[Segment] = field(default_factory=list)


class _Engine:
    """The loaded library, its sample rate and the callback's sample buffer."""

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self.lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        self.data = Path(espeakng_loader.get_data_path())
        self.sample_rate = int(self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, bytes(self.data), 0))
        if self.sample_rate <= 0:
            raise RuntimeError("espeak-ng failed to initialize")
        self.chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._on_samples)  # keep a reference: ctypes does not
        self.lib.espeak_SetSynthCallback(self._callback)
        logger.info("espeak-ng ready at %d Hz", self.sample_rate)

    def _on_samples(self, wav: "ctypes._Pointer[ctypes.c_short]", n: int, _events: int | None) -> int:
        if wav and n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def set_voice(self, voice: VoiceParams) -> None:
        variant = voice.voice
        if variant is not None and not (
            re.fullmatch(r"[\w ]+", variant) and (self.data / "voices" / "!v" / variant).is_file()
        ):
            raise ValueError(f"unknown speech voice variant: {voice.voice!r}")
        name = voice.language if voice.voice is None else f"{voice.language}+{voice.voice}"
        if self.lib.espeak_SetVoiceByName(name.encode()) != _EE_OK:
            raise ValueError(f"unknown speech language: {voice.language!r}")
        self.lib.espeak_SetParameter(_RATE, int(np.clip(voice.rate_wpm, 80, 450)), 0)
        self.lib.espeak_SetParameter(_PITCH, int(np.clip(voice.pitch, 0, 100)), 0)
        self.lib.espeak_SetParameter(_RANGE, int(np.clip(voice.pitch_range, 0, 100)), 0)
        self.lib.espeak_SetParameter(_VOLUME, 100, 0)

    def say(self, text: str) -> np.ndarray:
        self.chunks = []
        raw = text.encode() + b"\0"
        buf = ctypes.create_string_buffer(raw)
        err = self.lib.espeak_Synth(buf, len(raw), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if err != _EE_OK:
            raise RuntimeError(f"espeak_Synth failed with code {err}")
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)

    def phonemes(self, text: str) -> str:
        buf = ctypes.create_string_buffer(text.encode())
        cursor = ctypes.c_void_p(ctypes.addressof(buf))
        clauses: list[str] = []
        while cursor.value:  # one clause per call; espeak-ng advances the cursor (NULL at the end)
            out = self.lib.espeak_TextToPhonemes(ctypes.byref(cursor), _CHARS_UTF8, _PHONEMES_IPA)
            if out:
                clauses.append(out.decode().strip())
        return " ".join(c for c in clauses if c)


def _engine_once() -> _Engine:
    global _engine
    if _engine is None:
        _engine = _Engine()
    return _engine


def split_sentences(text: str) -> list[str]:
    """Split a narrative into sentences (the caption and timing unit).

    Args:
        text: the narrative.

    Returns:
        Non-empty, whitespace-normalized sentences in order.
    """
    parts = (" ".join(p.split()) for p in _SENTENCE_END.split(text))
    return [p for p in parts if p]


def to_ipa(text: str, language: str) -> str:
    """IPA phonemes of `text` from libespeak-ng (what the `espeak-ng --ipa` program prints, without its separators).

    Args:
        text: words to transcribe (one clause or more).
        language: espeak-ng language or voice name (`en-us`, `de`, ...).

    Returns:
        The phonemes, clauses joined with a space.

    Raises:
        ValueError: the language is unknown to espeak-ng.
    """
    with _lock:
        engine = _engine_once()
        if engine.lib.espeak_SetVoiceByName(language.encode()) != _EE_OK:
            raise ValueError(f"unknown speech language: {language!r}")
        return engine.phonemes(text)


def trim_silence(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Cut leading and trailing silence of 16-bit samples, keeping a short pad so onsets are not clipped."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > _SILENCE_LEVEL)
    if loud.size == 0:
        return samples[:0]
    pad = int(_EDGE_PAD_S * sample_rate)
    return samples[max(0, loud[0] - pad) : loud[-1] + pad]


def synthesize(text: str, out_wav: Path, voice: VoiceParams) -> SpeechResult:
    """Speak `text` into a 16-bit mono WAV, one timed segment per sentence.

    Sentences are synthesized one by one and joined with a short pause, so the segment
    boundaries are exact sample positions, not estimates.

    Args:
        text: the narrative; must contain at least one word.
        out_wav: where to write the WAV file (parent directories are created).
        voice: language, variant, rate and pitch.

    Returns:
        The WAV path, its duration, sample rate and per-sentence segments.

    Raises:
        ValueError: the text is empty or the language/voice is unknown to espeak-ng.
    """
    sentences = split_sentences(text)
    if not sentences:
        raise ValueError("nothing to say: the narrative is empty")
    with _lock:
        engine = _engine_once()
        engine.set_voice(voice)
        rate = engine.sample_rate
        clips = [(s, trim_silence(engine.say(s), rate)) for s in sentences]
    return write_speech(clips, rate, out_wav)


def write_speech(clips: list[tuple[str, np.ndarray]], rate: int, out_wav: Path) -> SpeechResult:
    """Join trimmed per-sentence clips with short pauses into a 16-bit mono WAV, one segment per audible clip.

    Every speech runtime writes its narration this way, so captions and mouth timing do not depend on which spoke.

    Args:
        clips: `(sentence, int16 samples)` in order; empty clips are skipped.
        rate: their sample rate (the WAV's).
        out_wav: where to write the WAV file (parent directories are created).

    Returns:
        The WAV path, its duration, sample rate and per-sentence segments.
    """
    pause = np.zeros(int(_SENTENCE_PAUSE_S * rate), np.int16)
    pieces: list[np.ndarray] = [pause[: len(pause) // 2]]
    segments: list[Segment] = []
    cursor = len(pieces[0])
    for sentence, clip in clips:
        if clip.size == 0:
            continue
        segments.append(Segment(sentence, cursor / rate, (cursor + clip.size) / rate))
        pieces += [clip, pause]
        cursor += clip.size + pause.size
    audio = np.concatenate(pieces).astype(np.int16)
    out_wav.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(out_wav), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(audio.tobytes())
    duration = audio.size / rate
    logger.info("speech: %d sentences, %.2f s -> %s", len(segments), duration, out_wav)
    return SpeechResult(path=out_wav, duration=duration, sample_rate=rate, segments=segments)
