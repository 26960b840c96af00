"""The Coqui TTS speech backend on tiny random VITS models saved to disk and loaded back; renders with its speech.

Random weights make noise-like "speech" of the right shape: per-sentence durations from the
duration predictor, one voice per speaker embedding, a pace set by `length_scale`.
"""

import dataclasses
import json
import shutil
import wave
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from temporalio.exceptions import ApplicationError

from gpu_worker.backends import build_backends
from gpu_worker.backends.coqui import CoquiSpeech
from gpu_worker.media.encode import probe
from gpu_worker.media.pipeline import RenderCancelled
from gpu_worker.media.speech import SpeechResult, VoiceParams, split_sentences
from gpu_worker.media.voices import Narrator
from gpu_worker.worker import manifest
from tests.gpu_worker.training.helpers import FakeStore

from .fakes import VITS_SPEAKERS, save_tiny_vits
from .test_backends import render_input, run, saved, settings

TEXT = "Hello there. Books are quiet friends. They never argue!"
RATE = 16000  # the tiny model's (espeak-ng's is 22050)


@pytest.fixture(scope="module")
def coqui(coqui_model_dir: Path) -> CoquiSpeech:
    return CoquiSpeech(coqui_model_dir)


def samples(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        return np.frombuffer(wav.readframes(wav.getnframes()), np.int16).astype(np.float32), wav.getframerate()


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(audio**2))) if audio.size else 0.0


def say(coqui: CoquiSpeech, text: str, out: Path, voice: VoiceParams, seed: int, progress: Any) -> SpeechResult:
    """Through the narrator, as a render speaks: the Coqui voice chosen by its advertised id."""
    chosen = dataclasses.replace(voice, voice_id="coqui")
    return Narrator(coqui=coqui, piper_models=[]).speak(text, out, chosen, None, seed, progress)


def speak(coqui: CoquiSpeech, out: Path, voice: VoiceParams | None = None, seed: int = 0) -> np.ndarray:
    return samples(say(coqui, TEXT, out, voice or VoiceParams(), seed, lambda _f: None).path)[0]


def test_speaks_each_sentence_into_one_timed_wav(coqui: CoquiSpeech, tmp_path: Path) -> None:
    ticks: list[float] = []
    result = say(coqui, TEXT, tmp_path / "speech.wav", VoiceParams(), 0, ticks.append)
    audio, rate = samples(result.path)
    assert rate == result.sample_rate == RATE
    assert result.duration == pytest.approx(audio.size / rate) and result.duration > 0.5
    assert rms(audio) > 1000, "real, non-silent audio"
    assert [s.text for s in result.segments] == split_sentences(TEXT)
    bounds = [(s.start, s.end) for s in result.segments]
    assert all(0 < start < end for start, end in bounds) and bounds[-1][1] < result.duration
    assert all(end < next_start for (_, end), (next_start, _) in pairwise(bounds)), "in order"
    for start, end in bounds:  # each sentence is heard inside its segment, and the pauses are silent
        assert rms(audio[int(start * rate) : int(end * rate)]) > 1000
    gaps = [audio[int(end * rate) + 1 : int(next_start * rate)] for (_, end), (next_start, _) in pairwise(bounds)]
    assert all(rms(gap) == 0 for gap in gaps)
    assert ticks == pytest.approx([0, 1 / 3, 2 / 3, 1]), "progress per sentence"


def test_seed_reproduces_and_speakers_differ(coqui_model_dir: Path, coqui: CoquiSpeech, tmp_path: Path) -> None:
    first = speak(coqui, tmp_path / "a.wav")
    assert np.array_equal(first, speak(coqui, tmp_path / "b.wav")), "same input and seed → same audio"
    alice = speak(CoquiSpeech(coqui_model_dir, speaker=VITS_SPEAKERS[0]), tmp_path / "alice.wav")
    assert np.array_equal(first, alice), "no speaker set: the model's first"
    bob = speak(CoquiSpeech(coqui_model_dir, speaker="bob"), tmp_path / "bob.wav")
    n = min(first.size, bob.size)
    assert first.size != bob.size or not np.array_equal(first[:n], bob[:n])


def test_a_slower_speaker_rate_gives_longer_audio(coqui: CoquiSpeech, tmp_path: Path) -> None:
    spoken = {}
    for wpm in (110, 220):
        result = say(coqui, TEXT, tmp_path / f"{wpm}.wav", VoiceParams(rate_wpm=wpm), 0, lambda _f: None)
        spoken[wpm] = sum(s.end - s.start for s in result.segments)  # without the fixed pauses between sentences
    assert spoken[110] > 1.5 * spoken[220]
    assert coqui._model().synthesizer.tts_model.length_scale == 1.0, "the model's own scale is restored"


def test_cancellation_stops_between_sentences(coqui: CoquiSpeech, tmp_path: Path) -> None:
    ticks: list[float] = []

    def progress(fraction: float) -> None:
        ticks.append(fraction)
        if fraction > 0:
            raise RenderCancelled("cancelled")

    with pytest.raises(RenderCancelled):
        say(coqui, TEXT, tmp_path / "speech.wav", VoiceParams(), 0, progress)
    assert ticks == pytest.approx([0, 1 / 3]), "stopped after the first sentence"
    assert not (tmp_path / "speech.wav").exists()


def _no_checkpoint(d: Path) -> None:
    (d / "model.pth").unlink()


def _bad_json(d: Path) -> None:
    (d / "config.json").write_text("{not json")


@pytest.mark.parametrize(
    ("breakage", "named"),
    [
        (lambda d: shutil.rmtree(d), ""),
        (lambda d: (d / "config.json").unlink(), ""),
        (_bad_json, "config.json"),
        (_no_checkpoint, ""),
        (lambda d: (d / "speakers.pth").unlink(), "speakers.pth"),
    ],
    ids=["no folder", "no config", "bad config", "no checkpoint", "no d-vector file"],
)
def test_a_broken_model_dir_stops_the_worker_naming_it(tmp_path: Path, breakage, named: str) -> None:
    model_dir = save_tiny_vits(tmp_path / "vits", mode="dvector")
    breakage(model_dir)
    with pytest.raises(ApplicationError) as info:
        build_backends(settings(coqui_model_dir=model_dir))
    assert info.value.type == "MissingWeights" and info.value.non_retryable
    assert str(model_dir / named) in info.value.message


def test_a_moved_model_dir_finds_its_files_and_a_corrupt_checkpoint_fails_at_first_use(tmp_path: Path) -> None:
    model_dir = save_tiny_vits(tmp_path / "downloaded", mode="dvector")
    (tmp_path / "models").mkdir()
    moved = model_dir.rename(tmp_path / "models" / "vits")  # as when copied from the machine that downloaded it
    assert json.loads((moved / "config.json").read_text())["d_vector_file"] == str(model_dir / "speakers.pth")
    voice = CoquiSpeech(moved, speaker="bob")
    result = say(voice, TEXT, tmp_path / "speech.wav", VoiceParams(), 0, lambda _f: None)
    assert len(result.segments) == 3, "the config's stale speakers.pth path was found in the folder"

    (moved / "model.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ApplicationError) as info:
        say(CoquiSpeech(moved), TEXT, tmp_path / "again.wav", VoiceParams(), 0, lambda _f: None)
    assert info.value.type == "MissingWeights" and str(moved) in info.value.message


def test_an_unknown_speaker_fails_non_retryably_listing_the_speakers(coqui_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ApplicationError) as info:
        speak(CoquiSpeech(coqui_model_dir, speaker="carol"), tmp_path / "speech.wav")
    assert info.value.type == "BackendFailed" and info.value.non_retryable
    assert "'carol' (APP_GPU__COQUI_SPEAKER)" in info.value.message and "alice, bob" in info.value.message


def test_a_phoneme_model_speaks_without_the_espeak_program(tmp_path: Path) -> None:
    result = say(
        CoquiSpeech(save_tiny_vits(tmp_path / "vits", mode="phonemes")),
        TEXT,
        tmp_path / "speech.wav",
        VoiceParams(),
        0,
        lambda _f: None,
    )
    assert len(result.segments) == 3 and rms(samples(result.path)[0]) > 1000
    if shutil.which("espeak-ng") is None and shutil.which("espeak") is None:
        from TTS.tts.utils.text.phonemizers import PHONEMIZERS

        assert PHONEMIZERS["espeak"].__name__ == "LibEspeak"


def test_manifest_advertises_coqui_only_when_configured(coqui_model_dir: Path) -> None:
    configured = settings(coqui_model_dir=coqui_model_dir)
    with_coqui = manifest(configured, "gpu-1", build_backends(configured))
    assert with_coqui.runtimes["sadtalker"]["speech"] == ["coqui", "piper:en_US-joe-medium", "espeak-ng"]
    assert with_coqui.voices[0].id == "coqui", "a configured model is the default voice"
    without = manifest(settings(), "gpu-1", build_backends(settings()))
    assert without.runtimes["sadtalker"]["speech"] == ["piper:en_US-joe-medium", "espeak-ng"]
    assert "coqui" not in {v.id for v in without.voices}


@pytest.mark.parametrize("variant", ["svd", "sadtalker"])
def test_both_variants_render_with_coqui_speech(coqui_model_dir: Path, tmp_path: Path, variant: str) -> None:
    backends = build_backends(settings(coqui_model_dir=coqui_model_dir))
    store = FakeStore()
    result, beats = run(backends, store, tmp_path / "work", render_input(variant))
    audio_uri = next(a.uri for a in result.assets if a.kind == "audio")
    audio, rate = samples(saved(store, audio_uri, tmp_path / "speech.wav"))
    assert rate == RATE, "the narration is Coqui's (espeak-ng speaks at 22050 Hz)"
    speech_seconds = audio.size / rate
    assert result.video.duration == pytest.approx(speech_seconds)
    assert result.video.rendering["speech"] == "coqui", "the configured model is the profile-less default voice"
    video = probe(saved(store, result.video.uri, tmp_path / "video.mp4"))
    assert video.audio_codec == "aac" and video.duration == pytest.approx(speech_seconds, rel=0.05)
    assert "speech" in {b["stage"] for b in beats}
