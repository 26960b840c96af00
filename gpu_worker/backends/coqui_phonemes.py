"""Coqui's `espeak` phonemizer served by libespeak-ng in-process, for hosts without the `espeak-ng` program.

Coqui's own `ESpeak` phonemizer runs the `espeak-ng` (or `espeak`) program, which is not a pip
package. Phoneme models (most released VITS models, e.g. `tts_models/en/vctk/vits`) name it in
their config (`"phonemizer": "espeak"`); when neither program is on the PATH this module puts a
stand-in under the same name that asks the libespeak-ng library of `espeakng-loader` (the one the
embedded speech runtime already uses) for the same IPA. Importing it imports `TTS`.
"""

from __future__ import annotations

import logging
import shutil

from TTS.tts.utils.text import phonemizers
from TTS.tts.utils.text.phonemizers.base import BasePhonemizer
from TTS.tts.utils.text.punctuation import Punctuation

from gpu_worker.media.espeak import to_ipa

logger = logging.getLogger(__name__)

_ALIASES = {"en": "en-us", "zh-cn": "cmn"}  # as Coqui's ESpeak


class LibEspeak(BasePhonemizer):  # type: ignore[misc]  # TTS is untyped
    """`espeak` phonemizer on libespeak-ng's `espeak_TextToPhonemes` (IPA, no separators, like `--ipa=1`)."""

    def __init__(
        self, language: str, punctuations: str = Punctuation.default_puncs(), keep_puncs: bool = True, **_: object
    ) -> None:
        super().__init__(_ALIASES.get(language, language), punctuations=punctuations, keep_puncs=keep_puncs)

    @staticmethod
    def name() -> str:
        """The name configs use for Coqui's espeak phonemizer."""
        return "espeak"

    @classmethod
    def is_available(cls) -> bool:
        """Always: the library comes with `espeakng-loader`."""
        return True

    def version(self) -> str:
        """Where the phonemes come from."""
        return "libespeak-ng (espeakng-loader)"

    @staticmethod
    def supported_languages() -> dict[str, str]:
        """A few espeak-ng languages; any other espeak-ng voice name works too."""
        return {"en-us": "English (America)", "en": "English", "de": "German", "fr-fr": "French", "es": "Spanish"}

    def _phonemize(self, text: str, separator: str = "") -> str:
        return to_ipa(text, self.language).replace("_", separator)


def use_libespeak_without_program(language: str | None) -> bool:
    """Serve the `espeak` phonemizer from libespeak-ng when neither `espeak-ng` nor `espeak` is on the PATH.

    Args:
        language: The model's `phoneme_language`, made to default to `espeak` too.

    Returns:
        Whether the stand-in is now in place (False: the program is installed and Coqui uses it).
    """
    if shutil.which("espeak-ng") or shutil.which("espeak"):
        return False
    phonemizers._register_phonemizers()  # fill Coqui's tables first, or its lazy registration would replace ours
    phonemizers.PHONEMIZERS["espeak"] = LibEspeak
    for lang in (*LibEspeak.supported_languages(), *([language] if language else [])):
        phonemizers.DEF_LANG_TO_PHONEMIZER.setdefault(lang, "espeak")
    logger.info("no espeak-ng program on the PATH: Coqui's espeak phonemizer uses libespeak-ng")
    return True
