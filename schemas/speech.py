"""Languages, voices and how long a narration takes to say: pure functions shared by the API, the writer and the renderer."""

import re
from collections.abc import Sequence

from schemas.capabilities import VoiceInfo

SENTENCE_PAUSE_SECONDS = 0.35  # the renderer's silence between two sentences
DURATION_TOLERANCE = 0.05  # a video lasts the requested duration within ±5 %
MIN_SPEECH_COVERAGE = 0.75  # speech covers at least this share of the video
MAX_SPEED_UP = 0.10  # speech estimated up to 10 % too long is spoken faster (length scale ≥ 0.9)
MAX_SLOW_DOWN = 0.10  # and speech that is too short is spoken up to 10 % slower

# The `voice` that asks for the profile's own voice: its clone where a cloning engine (XTTS v2) is
# configured and the profile was trained with one, else the language's default voice at its pace.
PROFILE_VOICE = "profile"

_SENTENCE_END = re.compile(r"(?<=[.!?;:…。！？])\s*|\n\s*\n")
_WORD = re.compile(r"\w+(?:['’]\w+)*")


def split_sentences(text: str) -> list[str]:
    """Split a narrative into sentences (the caption and timing unit), whitespace normalized, none empty."""
    parts = (" ".join(p.split()) for p in _SENTENCE_END.split(text))
    return [p for p in parts if p and _WORD.search(p)]


def count_words(text: str) -> int:
    """Words in `text` (runs of letters and digits; `don't` is one word)."""
    return len(_WORD.findall(text))


def normalize_language(tag: str) -> str:
    """`en_US` → `en-us`: BCP-47 in lower case, as requests and manifests spell languages."""
    return tag.replace("_", "-").lower()


def language_matches(requested: str, offered: str) -> bool:
    """Whether a voice or writer language `offered` serves a request for `requested`.

    Equal tags match, and a bare language matches its regions both ways (`en` ↔ `en-us`), but two
    different regions do not (`en-gb` is not served by an `en-us` voice).
    """
    requested, offered = normalize_language(requested), normalize_language(offered)
    if requested == offered:
        return True
    return requested == offered.split("-")[0] or offered == requested.split("-")[0]


def voices_for(voices: Sequence[VoiceInfo], language: str) -> list[VoiceInfo]:
    """The voices that speak `language`, exact tags first, in the manifest's order (neural voices come first)."""
    matching = [v for v in voices if language_matches(language, v.language)]
    return sorted(matching, key=lambda v: normalize_language(v.language) != normalize_language(language))


def estimate_spoken_seconds(text: str, words_per_minute: float, pace: float = 1.0) -> float:
    """How long `text` takes to say with a voice of `words_per_minute`, `pace` times faster (a profile's fitted pace).

    Args:
        text: The narrative.
        words_per_minute: The voice's measured pace at its default speed (the manifest's `words_per_minute`).
        pace: The speaker's pace relative to the voice's (1 = as the voice; 1.2 = 20 % faster).

    Returns:
        Seconds of audio including the pauses between sentences.
    """
    words = count_words(text)
    sentences = max(1, len(split_sentences(text)))
    return words * 60.0 / (words_per_minute * pace) + sentences * SENTENCE_PAUSE_SECONDS


def spoken_seconds_range(duration: float) -> tuple[float, float]:
    """The estimated spoken lengths a `duration` s video can hold: sped up or slowed down at most 10 %."""
    return duration * MIN_SPEECH_COVERAGE / (1 + MAX_SLOW_DOWN), duration * (1 + MAX_SPEED_UP)


def script_length_error(estimated: float, duration: float) -> str | None:
    """Why a script of `estimated` spoken seconds cannot fill a `duration` s video, or None when it can."""
    shortest, longest = spoken_seconds_range(duration)
    if estimated > longest:
        return (
            f"the script takes about {estimated:.1f} s to say, more than the {duration:g} s video can hold "
            f"(at most {longest:.1f} s): shorten it or ask for a longer durationSeconds"
        )
    if estimated < shortest:
        return (
            f"the script takes only about {estimated:.1f} s to say, too little for a {duration:g} s video "
            f"(speech must cover at least {MIN_SPEECH_COVERAGE:.0%} of it): lengthen it, or ask for a shorter "
            "durationSeconds if the minimum allows"
        )
    return None
