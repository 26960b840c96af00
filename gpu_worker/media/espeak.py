"""eSpeak NG through ctypes: formant speech with word and phoneme events, IPA for other engines, its languages.

The library comes from `espeakng-loader` (GPL-3.0; see the README's licence table). It keeps
global state and is not thread-safe: one lock guards every call into it.
"""

import ctypes
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpu_worker.media.speech import Segment, SpokenSentence, VoiceParams, trim_silence
from schemas.speech import count_words, normalize_language

logger = logging.getLogger(__name__)

RUNTIME_ID = "espeak-ng"
DEFAULT_WPM = 165  # espeak-ng's own default rate

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS, _INITIALIZE_PHONEME_IPA = 0x0001, 0x0002
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK = 0
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_PHONEMES_IPA = 0x02  # espeak_TextToPhonemes mode: IPA, no separator between phonemes
_EVENT_END_OF_LIST, _EVENT_WORD, _EVENT_PHONEME = 0, 1, 7


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """`espeak_EVENT` of speak_lib.h."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character position in the text
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds
        ("sample", ctypes.c_int),  # sample offset in this synthesis
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))
_lock = threading.Lock()
_engine: "_Engine | None" = None


@dataclass(frozen=True)
class _Mark:
    kind: int  # _EVENT_WORD or _EVENT_PHONEME
    sample: int
    text_position: int
    length: int
    phoneme: str


class _Engine:
    """The loaded library, its sample rate, and what the callback collected during one synthesis."""

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
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        self.data = Path(espeakng_loader.get_data_path())
        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_PHONEME_IPA
        self.sample_rate = int(self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, bytes(self.data), options))
        if self.sample_rate <= 0:
            raise RuntimeError("espeak-ng failed to initialize")
        self.chunks: list[np.ndarray] = []
        self.marks: list[_Mark] = []
        self._callback = _CALLBACK(self._on_samples)  # keep a reference: ctypes does not
        self.lib.espeak_SetSynthCallback(self._callback)
        logger.info("espeak-ng ready at %d Hz", self.sample_rate)

    def _on_samples(self, wav: "ctypes._Pointer[ctypes.c_short]", n: int, events: "ctypes._Pointer[_Event]") -> int:
        if wav and n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events and events[i].type != _EVENT_END_OF_LIST:
            e = events[i]
            if e.type in (_EVENT_WORD, _EVENT_PHONEME):
                phoneme = e.id.string.decode("utf-8", "replace") if e.type == _EVENT_PHONEME else ""
                self.marks.append(_Mark(e.type, e.sample, e.text_position, e.length, phoneme))
            i += 1
        return 0

    def set_voice(self, voice: VoiceParams, speed: float) -> None:
        variant = voice.voice
        if variant is not None and not (
            re.fullmatch(r"[\w ]+", variant) and (self.data / "voices" / "!v" / variant).is_file()
        ):
            raise ValueError(f"unknown speech voice variant: {variant!r}")
        name = voice.language if variant is None else f"{voice.language}+{variant}"
        if self.lib.espeak_SetVoiceByName(name.encode()) != _EE_OK:
            raise ValueError(f"unknown speech language: {voice.language!r}")
        rate = (voice.rate_wpm or DEFAULT_WPM) * speed
        self.lib.espeak_SetParameter(_RATE, int(np.clip(rate, 80, 450)), 0)
        self.lib.espeak_SetParameter(_PITCH, int(np.clip(voice.pitch, 0, 100)), 0)
        self.lib.espeak_SetParameter(_RANGE, int(np.clip(voice.pitch_range, 0, 100)), 0)
        self.lib.espeak_SetParameter(_VOLUME, 100, 0)

    def say(self, text: str) -> tuple[np.ndarray, list[_Mark]]:
        self.chunks, self.marks = [], []
        raw = text.encode() + b"\0"
        buf = ctypes.create_string_buffer(raw)
        err = self.lib.espeak_Synth(buf, len(raw), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if err != _EE_OK:
            raise RuntimeError(f"espeak_Synth failed with code {err}")
        samples = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
        return samples, self.marks

    def phonemes(self, text: str) -> str:
        buf = ctypes.create_string_buffer(text.encode())
        cursor = ctypes.c_void_p(ctypes.addressof(buf))
        clauses: list[str] = []
        while cursor.value:  # one clause per call; espeak-ng advances the cursor (NULL at the end)
            out = self.lib.espeak_TextToPhonemes(ctypes.byref(cursor), _CHARS_UTF8, _PHONEMES_IPA)
            if out:
                clauses.append(out.decode().strip())
        return " ".join(c for c in clauses if c)

    def languages(self) -> list[str]:
        """Language tags of the installed voices (`en-us`, `de`, `pt-br`, …), in the library's order."""

        class _Voice(ctypes.Structure):
            _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p), ("identifier", ctypes.c_char_p)]

        self.lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        voices = self.lib.espeak_ListVoices(None)
        found: list[str] = []
        i = 0
        while voices[i]:
            # `languages` is a list of (priority byte, NUL-terminated name); the first is the voice's own.
            tag = voices[i].contents.languages[1:].decode("ascii", "replace")
            if tag and normalize_language(tag) not in found:
                found.append(normalize_language(tag))
            i += 1
        return found


def _engine_once() -> _Engine:
    global _engine
    if _engine is None:
        _engine = _Engine()
    return _engine


def languages() -> list[str]:
    """Every language eSpeak NG can speak, as lower-case BCP-47 tags."""
    with _lock:
        return _engine_once().languages()


def to_ipa(text: str, language: str) -> str:
    """IPA phonemes of `text` (what `espeak-ng --ipa` prints, without separators), clauses joined with a space.

    Raises:
        ValueError: the language is unknown to espeak-ng.
    """
    with _lock:
        engine = _engine_once()
        if engine.lib.espeak_SetVoiceByName(language.encode()) != _EE_OK:
            raise ValueError(f"unknown speech language: {language!r}")
        return engine.phonemes(text)


def speak_sentences(sentences: list[str], voice: VoiceParams, speed: float) -> tuple[list[SpokenSentence], int]:
    """Speak each sentence, with its words and phonemes timed from the synthesizer's own events.

    Args:
        sentences: The sentences, in order.
        voice: Language, optional variant, rate and pitch.
        speed: Rate multiplier on top of the voice's (1.1 = 10 % faster).

    Returns:
        The spoken sentences (silence trimmed) and their sample rate.

    Raises:
        ValueError: the language or variant is unknown to espeak-ng.
    """
    spoken = []
    with _lock:
        engine = _engine_once()
        engine.set_voice(voice, speed)
        rate = engine.sample_rate
        for sentence in sentences:
            samples, marks = engine.say(sentence)
            spoken.append(_timed(sentence, samples, marks, rate))
    return spoken, rate


def _timed(sentence: str, samples: np.ndarray, marks: list[_Mark], rate: int) -> SpokenSentence:
    trimmed, offset = trim_silence(samples, rate)
    last = offset + trimmed.size

    def at(sample: int) -> float:
        return float(np.clip((sample - offset) / rate, 0.0, trimmed.size / rate))

    # A phoneme lasts until the next phoneme event; a pause is a phoneme event with no name.
    phoneme_marks = [m for m in marks if m.kind == _EVENT_PHONEME]
    ends = [m.sample for m in phoneme_marks[1:]] + [last]
    phonemes = [
        Segment(m.phoneme, at(m.sample), at(end)) for m, end in zip(phoneme_marks, ends, strict=True) if m.phoneme
    ]
    # A spoken word ends where the next word or a pause begins; a written word ("1999", "it's") spans
    # every spoken word whose text position falls inside it.
    stops = sorted({m.sample for m in marks if m.kind == _EVENT_WORD or not m.phoneme} | {last})
    spoken = [m for m in marks if m.kind == _EVENT_WORD]
    words: list[Segment] = []
    for token in re.finditer(r"\S+", sentence):
        inside = [m for m in spoken if token.start() < m.text_position <= token.end()]
        if inside and count_words(token.group()):
            stop = next((b for b in stops if b > inside[-1].sample), last)
            words.append(Segment(token.group(), at(inside[0].sample), at(stop)))
    return SpokenSentence(sentence, trimmed, words, phonemes)
