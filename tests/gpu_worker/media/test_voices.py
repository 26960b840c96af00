"""The speech timeline of every engine, the narrator's voice choice and its fit to the requested duration."""

import wave
from pathlib import Path

import numpy as np
import pytest

from gpu_worker.media import espeak
from gpu_worker.media.piper import PiperVoice, joe_voice
from gpu_worker.media.speech import VoiceParams, assemble
from gpu_worker.media.voices import Narrator, default_narrator
from schemas.speech import SENTENCE_PAUSE_SECONDS, split_sentences

TEXT = "Hello, and welcome. Today we talk about the water cycle in 1999. It's easy to follow!"
LONG = (
    "Hello, and welcome. Today we talk about how volcanoes form. Here is the idea in a friendly way. "
    "Rock deep under the ground melts into magma. The magma rises through cracks in the crust. "
    "When the pressure grows, it bursts out as lava and ash."
)


@pytest.fixture(scope="module")
def piper() -> PiperVoice:
    return PiperVoice(joe_voice())


def _samples(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), np.int16)


def _written(sentence: str) -> list[str]:
    return [w for w in sentence.split() if any(c.isalnum() for c in w)]


def test_piper_durations_sum_to_the_audio_and_time_every_written_word(piper: PiperVoice) -> None:
    spoken, rate = piper.speak_sentences(split_sentences(TEXT), 1.0)
    assert rate == 22050
    for sentence in spoken:
        length = sentence.samples.size / rate
        assert [w.text for w in sentence.words] == _written(sentence.text), "one timed word per written word"
        bounds = [t for w in sentence.words for t in (w.start, w.end)]
        # Trimming the clip's silence may cut into the first or last span, never past the clip.
        assert bounds == sorted(bounds) and 0 <= bounds[0] and bounds[-1] <= length
        assert all(w.end > w.start for w in sentence.words)
        assert sentence.phonemes and all(0 <= p.start <= p.end <= length for p in sentence.phonemes)
        # Every phoneme lies inside a word: the timeline comes from the same duration frames as the audio.
        assert all(any(w.start <= p.start and p.end <= w.end for w in sentence.words) for p in sentence.phonemes)
    number = next(w for s in spoken for w in s.words if w.text == "1999.")
    assert number.end - number.start > 0.8, "a number spoken as several words stays one written word"


def test_piper_length_scale_follows_speed(piper: PiperVoice) -> None:
    sentences = split_sentences(LONG)
    normal = sum(s.samples.size for s in piper.speak_sentences(sentences, 1.0)[0])
    faster = sum(s.samples.size for s in piper.speak_sentences(sentences, 1.1)[0])
    slower = sum(s.samples.size for s in piper.speak_sentences(sentences, 0.9)[0])
    # Piper samples its durations: the ratio varies by a few percent from run to run.
    assert slower > normal > faster and normal / faster == pytest.approx(1.1, rel=0.08)


def test_espeak_times_written_words_from_its_own_events() -> None:
    spoken, rate = espeak.speak_sentences(split_sentences(TEXT), VoiceParams(language="en-us"), 1.0)
    for sentence in spoken:
        length = sentence.samples.size / rate
        words = [w.text for w in sentence.words]
        assert set(words) <= set(_written(sentence.text)) and len(words) >= len(_written(sentence.text)) - 1
        bounds = [t for w in sentence.words for t in (w.start, w.end)]
        assert bounds == sorted(bounds) and bounds[-1] <= length + 1e-6
        assert sentence.phonemes and sentence.phonemes[-1].end <= length + 1e-6
    assert "en-us" in espeak.languages() and "de" in espeak.languages()


def test_assembled_timeline_sums_to_the_wav(piper: PiperVoice, tmp_path: Path) -> None:
    spoken, rate = piper.speak_sentences(split_sentences(TEXT), 1.0)
    result = assemble(spoken, rate, tmp_path / "speech.wav", runtime=piper.voice_id)
    assert _samples(result.path).size == round(result.duration * rate)
    assert [s.text for s in result.segments] == split_sentences(TEXT)
    for segment in result.segments:
        inside = [w for w in result.words if segment.start <= w.start and w.end <= segment.end]
        assert [w.text for w in inside] == _written(segment.text)
    gaps = [b.start - a.end for a, b in zip(result.segments, result.segments[1:], strict=False)]
    assert gaps == pytest.approx([SENTENCE_PAUSE_SECONDS] * len(gaps), abs=1e-3)


@pytest.mark.parametrize("target", [15.0, 18.0, 25.0])
def test_speech_is_fitted_to_the_requested_duration(target: float, tmp_path: Path) -> None:
    result = default_narrator().speak(LONG, tmp_path / "speech.wav", VoiceParams(language="en"), target)
    assert result.duration == pytest.approx(target, abs=1 / 22050) or result.duration <= target * 1.05
    assert _samples(result.path).size == round(result.duration * result.sample_rate)
    pauses = [b.start - a.end for a, b in zip(result.segments, result.segments[1:], strict=False)]
    assert max(pauses) <= 1.5, "no pause inside the speech a viewer reads as a gap"
    if target <= 18:
        assert result.speech_seconds / result.duration >= 0.75, "speech covers the video"
    assert result.words[-1].end <= result.duration


def test_a_profile_pace_and_an_explicit_voice_are_honoured(tmp_path: Path) -> None:
    narrator = default_narrator()
    normal = narrator.speak(LONG, tmp_path / "a.wav", VoiceParams(language="en"))
    slow = narrator.speak(LONG, tmp_path / "b.wav", VoiceParams(language="en", rate_wpm=132))  # pace 0.8
    assert normal.runtime == slow.runtime == "piper:en_US-joe-medium"
    assert slow.speech_seconds > normal.speech_seconds * 1.15
    robot = narrator.speak(TEXT, tmp_path / "c.wav", VoiceParams(language="en", voice_id="espeak-ng:en-us"))
    german = narrator.speak("Guten Tag. Wie geht es Ihnen?", tmp_path / "d.wav", VoiceParams(language="de"))
    assert robot.runtime == german.runtime == "espeak-ng" and robot.sample_rate == german.sample_rate == 22050


@pytest.mark.parametrize(
    ("voice", "message"),
    [
        (VoiceParams(language="en", voice_id="piper:nobody"), "unknown voice"),
        (VoiceParams(language="xx-nope"), "unknown speech language"),
    ],
)
def test_unknown_voices_and_languages_are_bad_input(voice: VoiceParams, message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        Narrator().speak(TEXT, tmp_path / "speech.wav", voice)


def test_the_manifest_voices_put_the_neural_voice_first_for_english() -> None:
    voices = Narrator().voices()
    assert voices[0].id == "piper:en_US-joe-medium" and voices[0].language == "en-us"
    assert voices[0].commercial == "unclear", "the joe voice is fine-tuned from lessac (see the licence table)"
    assert all(v.engine == "espeak-ng" and v.license.startswith("GPL-3.0") for v in voices[1:])


def test_voices_say_whether_captions_can_be_drawn_in_their_script() -> None:
    by_language = {v.language: v for v in Narrator().voices()}
    assert by_language["en-us"].captions and by_language["de"].captions and by_language["pl"].captions
    assert not by_language["ru"].captions and not by_language["el"].captions, "the caption font is Latin only"
