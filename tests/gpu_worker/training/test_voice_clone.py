"""`train_voice` with XTTS v2 configured: the profile's cloned voice from its clips, on a tiny random XTTS.

The clips are decoded with PyAV and handed to the model as samples: `torchaudio.load` (what
Coqui's own cloning reads files with) is made to fail in every test here.
"""

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from gpu_worker.backends.xtts import XttsSpeech
from gpu_worker.training.audio import decode
from gpu_worker.training.tasks import TrainingActivities
from gpu_worker.training.voice import load_voice
from gpu_worker.training.voice_clone import CLONE_FORMAT, clone_uri, load_clone, save_clone
from schemas.tasks import TrainVoiceInput, TrainVoiceResult
from tests.gpu_worker.tiny_xtts import speaker_wavs

from .helpers import FakeStore
from .test_voice_training import write_wav

RATE = 22_050


@pytest.fixture(autouse=True)
def _no_torchaudio_load(monkeypatch: pytest.MonkeyPatch) -> None:
    import torchaudio  # type: ignore[import-untyped]

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("torchaudio.load was called: clips must reach XTTS as samples")

    monkeypatch.setattr(torchaudio, "load", refuse)


@pytest.fixture(scope="module")
def xtts(xtts_model_dir: Path) -> XttsSpeech:
    return XttsSpeech(xtts_model_dir, sample=False)


@pytest.fixture(scope="module")
def wavs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("speakers")
    found = speaker_wavs(root)
    found["silent"] = write_wav(root / "silent.wav", np.zeros(3 * RATE), RATE)
    found["short"] = write_wav(root / "short.wav", 0.3 * np.sin(np.arange(RATE // 2) / RATE * 2 * np.pi * 150), RATE)
    return found


@pytest.fixture
def store(wavs: dict[str, Path]) -> FakeStore:
    fake = FakeStore()
    for name, path in wavs.items():
        fake.put_bytes("uploads", f"local/{name}.wav", path.read_bytes())
    return fake


def train(
    store: FakeStore, work: Path, xtts: XttsSpeech, *names: str, profile: str = "prof-1"
) -> tuple[TrainVoiceResult, list[dict[str, Any]]]:
    inp = TrainVoiceInput(
        job_id="job-1", node_id="train_voice", profile_id=profile, clips=[f"s3://uploads/local/{n}.wav" for n in names]
    )
    env = ActivityEnvironment()
    beats: list[dict[str, Any]] = []
    env.on_heartbeat = lambda *d: beats.append(d[0])
    activities = TrainingActivities(store, work, lambda _p: pytest.fail("no SD model needed"), voice_cloner=xtts)
    return env.run(activities.train_voice, inp), beats


def test_training_stores_the_cloned_voice_beside_the_fitted_one(
    store: FakeStore, xtts: XttsSpeech, wavs: dict[str, Path], tmp_path: Path
) -> None:
    result, beats = train(store, tmp_path, xtts, "low", profile="prof-low")
    params, clone_ref = load_voice(store, result.voice_id)
    assert params.voice == "m3", "the fitted voice (pace, pitch) is still trained: profiles fall back to it"
    assert clone_ref == {"engine": "coqui-xtts", "uri": clone_uri("prof-low"), "format": CLONE_FORMAT}
    assert clone_ref["uri"] == "s3://artifacts/profiles/prof-low/voice/xtts-conditioning.npz"
    stored = load_clone(store, clone_ref["uri"])
    assert stored.engine == "coqui-xtts"
    assert stored.gpt_latents.shape == (1, 32, 32) and stored.speaker_embedding.shape == (1, 512, 1)
    assert np.isfinite(stored.gpt_latents).all() and np.isfinite(stored.speaker_embedding).all()
    # The same computation on the same samples (scaled by the gain the analysis measured) gives the stored voice.
    gain = json.loads(store.get_bytes(result.voice_id))["clips"][0]["gain_db"]
    samples = np.clip(decode(wavs["low"], "low", rate=RATE) * np.float32(10 ** (gain / 20)), -1, 1)
    direct = xtts.condition([samples], RATE)
    assert np.allclose(direct.gpt_latents, stored.gpt_latents, atol=1e-5)
    assert np.allclose(direct.speaker_embedding, stored.speaker_embedding, atol=1e-5)
    # Cloning reports itself (keep-alive copies may repeat it while the model works).
    assert {(b["percent"], b["cloning"]) for b in beats if "cloning" in b} == {(97, "coqui-xtts")}
    assert beats[-1]["percent"] == 100


def test_two_speakers_get_two_voices_and_a_clone_round_trips(
    store: FakeStore, xtts: XttsSpeech, tmp_path: Path
) -> None:
    train(store, tmp_path, xtts, "low", profile="prof-a")
    train(store, tmp_path, xtts, "high", profile="prof-b")
    a, b = load_clone(store, clone_uri("prof-a")), load_clone(store, clone_uri("prof-b"))
    assert not np.allclose(a.speaker_embedding, b.speaker_embedding)
    assert not np.allclose(a.gpt_latents, b.gpt_latents)
    again = load_clone(store, save_clone(store, "s3://artifacts/profiles/prof-c/voice/copy.npz", a))
    assert np.array_equal(again.gpt_latents, a.gpt_latents)
    assert np.array_equal(again.speaker_embedding, a.speaker_embedding)


@pytest.mark.parametrize(("name", "words"), [("silent", "is silent"), ("short", "voiced speech")])
def test_silent_or_short_clips_fail_before_any_cloning(
    store: FakeStore, xtts: XttsSpeech, tmp_path: Path, name: str, words: str
) -> None:
    with pytest.raises(ApplicationError) as caught:
        train(store, tmp_path, xtts, "low", name)
    assert caught.value.type == "InvalidInput" and caught.value.non_retryable
    assert f"s3://uploads/local/{name}.wav" in caught.value.message and words in caught.value.message
    assert store.list_keys("artifacts", "profiles/") == [], "no voice and no clone stored"


def test_a_stored_clone_of_an_unknown_format_is_refused(store: FakeStore, xtts: XttsSpeech, tmp_path: Path) -> None:
    train(store, tmp_path, xtts, "low", profile="prof-f")
    clone = load_clone(store, clone_uri("prof-f"))
    future = tmp_path / "future.npz"
    np.savez(future, format=np.array(CLONE_FORMAT + 1), engine=np.array("coqui-xtts"),
             gpt_latents=clone.gpt_latents, speaker_embedding=clone.speaker_embedding)  # fmt: skip
    store.put_bytes("artifacts", "profiles/prof-f/voice/xtts-conditioning.npz", future.read_bytes())
    with pytest.raises(ValueError, match="format 2, this worker reads format 1"):
        load_clone(store, clone_uri("prof-f"))
    store.put_bytes("artifacts", "profiles/prof-f/voice/xtts-conditioning.npz", b"not an npz")
    with pytest.raises(ValueError, match="not a readable cloned voice"):
        load_clone(store, clone_uri("prof-f"))


def test_a_voice_trained_before_cloning_still_loads_without_a_clone(store: FakeStore) -> None:
    old = {"format": 1, "runtime": "espeak-ng", "params": {"language": "en", "voice": "m3", "rate_wpm": 140,
           "pitch": 30, "pitch_range": 40, "voice_id": None}, "stats": {}, "clips": []}  # fmt: skip
    uri = store.put_bytes("artifacts", "profiles/prof-old/voice/voice.json", json.dumps(old).encode())
    params, clone = load_voice(store, uri, language="de")
    assert clone is None and (params.rate_wpm, params.language) == (140, "de")
    assert dataclasses.replace(params, language="en").pace == pytest.approx(140 / 165)
