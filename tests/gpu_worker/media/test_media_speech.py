import re
import wave
from pathlib import Path

import numpy as np
import pytest

from gpu_worker.media.animate import loudness_envelope
from gpu_worker.media.captions import to_srt, to_vtt
from gpu_worker.media.speech import Segment, SpeechResult, VoiceParams, split_sentences
from gpu_worker.media.voices import synthesize
from schemas.media import frame_size


def _samples(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        return np.frombuffer(wav.readframes(wav.getnframes()), np.int16)


def test_speech_is_audible_and_timed_per_sentence(speech: SpeechResult):
    samples = _samples(speech.path).astype(np.float32)
    assert len(samples) / speech.sample_rate == pytest.approx(speech.duration, abs=1e-3)
    assert np.sqrt(np.mean(samples**2)) > 500  # real speech, not silence
    assert [s.text for s in speech.segments] == [
        "Hello and welcome.",
        "Today we explore the ocean, and why its waves never stop moving.",
    ]
    bounds = [t for s in speech.segments for t in (s.start, s.end)]
    assert bounds == sorted(bounds) and bounds[0] > 0
    assert speech.duration - 0.5 < speech.segments[-1].end < speech.duration
    for seg in speech.segments:  # sound inside every segment, silence in the pauses between them
        inside = samples[int(seg.start * speech.sample_rate) : int(seg.end * speech.sample_rate)]
        assert np.abs(inside).max() > 3000
    gap = samples[
        int(speech.segments[0].end * speech.sample_rate) + 10 : int(speech.segments[1].start * speech.sample_rate) - 10
    ]
    assert gap.size > 0 and np.abs(gap).max() < 300


def test_loudness_follows_the_segments(speech: SpeechResult):
    fps = 25
    n = int(np.ceil(speech.duration * fps))
    env = loudness_envelope(speech.path, fps, n)
    assert env.shape == (n,) and env.min() >= 0 and env.max() <= 1
    t = np.arange(n) / fps
    speaking = np.zeros(n, bool)
    for seg in speech.segments:
        speaking |= (t >= seg.start + 0.05) & (t < seg.end - 0.05)
    silent = ~np.any([(t >= s.start - 0.1) & (t < s.end + 0.1) for s in speech.segments], axis=0)
    assert env[speaking].mean() > 0.3
    assert env[silent].max() < 0.1


def test_voice_parameters_change_the_speech(tmp_path: Path):
    slow = synthesize("The quick brown fox jumps over the lazy dog.", tmp_path / "slow.wav", VoiceParams(rate_wpm=120))
    fast = synthesize(
        "The quick brown fox jumps over the lazy dog.", tmp_path / "fast.wav", VoiceParams(rate_wpm=260, voice="f3")
    )
    assert slow.duration > fast.duration * 1.4
    german = synthesize("Guten Tag. Wie geht es Ihnen?", tmp_path / "de.wav", VoiceParams(language="de"))
    assert len(german.segments) == 2


@pytest.mark.parametrize("voice", [VoiceParams(language="xx-nope"), VoiceParams(voice="../etc")])
def test_unknown_language_or_voice_is_named(tmp_path: Path, voice: VoiceParams):
    with pytest.raises(ValueError, match=re.escape(repr(voice.voice or voice.language))):
        synthesize("Hello.", tmp_path / "x.wav", voice)


def test_empty_narrative_is_rejected(tmp_path: Path):
    with pytest.raises(ValueError, match="empty"):
        synthesize(" \n ", tmp_path / "x.wav", VoiceParams())


def test_sentence_split():
    assert split_sentences("One.  Two!\nThree?   Four") == ["One.", "Two!", "Three?", "Four"]


@pytest.mark.parametrize(
    ("resolution", "aspect", "size"),
    [
        ("480p", "16:9", (854, 480)),
        ("720p", "16:9", (1280, 720)),
        ("720p", "9:16", (720, 1280)),
        ("1080p", "1:1", (1080, 1080)),
        ("576p", "16:9", (1024, 576)),
    ],
)
def test_frame_size(resolution: str, aspect: str, size: tuple[int, int]):
    assert frame_size(resolution, aspect) == size
    assert all(v % 2 == 0 for v in size)


def _parse_ts(ts: str) -> float:
    h, m, s = ts.replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def test_srt_and_vtt_timings_equal_segment_timings(speech: SpeechResult):
    srt = to_srt(speech.segments)
    times = re.findall(r"(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})", srt)
    assert len(times) == len(speech.segments)
    for (start, end), seg in zip(times, speech.segments, strict=True):
        assert _parse_ts(start) == pytest.approx(seg.start, abs=5e-4)
        assert _parse_ts(end) == pytest.approx(seg.end, abs=5e-4)
    assert srt.startswith("1\n") and "\n2\n" in srt
    vtt = to_vtt([Segment("Hi there.", 3661.5, 3662.25)])
    assert vtt == "WEBVTT\n\n01:01:01.500 --> 01:01:02.250\nHi there.\n"
