"""`train_voice` through `ActivityEnvironment`: clips synthesized by the embedded TTS, fitted back."""

import dataclasses
import json
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import ActivityEnvironment

from gpu_worker.media.speech import VoiceParams
from gpu_worker.media.voices import synthesize
from gpu_worker.training.audio import SAMPLE_RATE, analyse, decode
from gpu_worker.training.tasks import TrainingActivities
from gpu_worker.training.voice import load_voice_params
from schemas.tasks import TrainVoiceInput, TrainVoiceResult

from .helpers import FakeStore

TEXT = (
    "My grandmother kept a small garden behind her house, full of tomatoes, beans and sunflowers. "
    "Every summer we picked the vegetables together and cooked a big dinner for the whole family."
)
LOW = VoiceParams(voice="m3", pitch=25, rate_wpm=140)
HIGH = VoiceParams(voice="f1", pitch=70, rate_wpm=190)
CKPT = "s3://artifacts/jobs/job-1/train_voice/checkpoints/step-{}.json"


def write_wav(path: Path, samples: np.ndarray, rate: int, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("clips")
    quiet_speech = synthesize(TEXT, root / "quiet.wav", LOW).path
    with wave.open(str(quiet_speech)) as src:
        rate, frames = src.getframerate(), np.frombuffer(src.readframes(src.getnframes()), "<i2") / 32768
    return {
        "low.wav": synthesize(TEXT, root / "low.wav", LOW).path.read_bytes(),
        "high.wav": synthesize(TEXT, root / "high.wav", HIGH).path.read_bytes(),
        "quiet.wav": write_wav(root / "q.wav", frames * 0.05, rate).read_bytes(),  # -26 dB: normalisation fixes it
        "short.wav": synthesize("Hi.", root / "short.wav", LOW).path.read_bytes(),
        "silent.wav": write_wav(root / "silent.wav", np.zeros(3 * SAMPLE_RATE), SAMPLE_RATE).read_bytes(),
        "notes.txt": b"not audio at all",
    }


@pytest.fixture
def store(clips: dict[str, bytes]) -> FakeStore:
    fake = FakeStore()
    for name, data in clips.items():
        fake.put_bytes("uploads", f"local/{name}", data)
    return fake


def voice_input(*names: str, profile: str = "prof-1") -> TrainVoiceInput:
    return TrainVoiceInput(
        job_id="job-1", node_id="train_voice", profile_id=profile, clips=[f"s3://uploads/local/{n}" for n in names]
    )


def run(
    store: FakeStore, work: Path, inp: TrainVoiceInput, details: Any = None, env: ActivityEnvironment | None = None
) -> tuple[TrainVoiceResult, list[dict[str, Any]]]:
    env = env or ActivityEnvironment()
    beats: list[dict[str, Any]] = []
    env.on_heartbeat = lambda *d: beats.append(d[0])
    if details is not None:
        env.info = dataclasses.replace(env.info, heartbeat_details=[details])
    activities = TrainingActivities(store, work, lambda _p: pytest.fail("voice training needs no SD model"))
    return env.run(activities.train_voice, inp), beats


def test_higher_voice_gets_higher_pitch_and_heartbeats_per_clip(store: FakeStore, tmp_path: Path) -> None:
    low_result, low_beats = run(store, tmp_path, voice_input("low.wav", "quiet.wav", profile="prof-low"))
    high_result, _ = run(store, tmp_path, voice_input("high.wav", profile="prof-high"))
    assert low_result.voice_id == "s3://artifacts/profiles/prof-low/voice/voice.json"
    low, high = load_voice_params(store, low_result.voice_id), load_voice_params(store, high_result.voice_id)
    assert (low.voice, high.voice) == ("m3", "f1") and high.pitch > low.pitch
    assert high.rate_wpm > low.rate_wpm
    # The fit inverts espeak-ng's own mapping, so the synthesized voices come back close to their settings.
    assert abs(low.pitch - LOW.pitch) <= 10 and abs(high.pitch - HIGH.pitch) <= 10
    assert abs(low.pitch_range - LOW.pitch_range) <= 15 and abs(high.pitch_range - HIGH.pitch_range) <= 15
    assert abs(low.rate_wpm - LOW.rate_wpm) <= 0.25 * LOW.rate_wpm
    assert abs(high.rate_wpm - HIGH.rate_wpm) <= 0.25 * HIGH.rate_wpm
    assert load_voice_params(store, low_result.voice_id, language="de").language == "de"

    saved = json.loads(store.get_bytes(low_result.voice_id))
    assert saved["runtime"] == "espeak-ng" and saved["params"]["pitch"] == low.pitch
    quiet = saved["clips"][1]
    assert quiet["gain_db"] > saved["clips"][0]["gain_db"] + 20
    assert abs(quiet["f0_median_hz"] - saved["clips"][0]["f0_median_hz"]) < 3  # same speech, other loudness
    steps = [(b["step"], b["checkpoint_uri"]) for b in low_beats if b.get("stage") == "train_voice"]
    assert steps == [(0, None), (1, CKPT.format(1)), (2, CKPT.format(2)), (2, CKPT.format(2))]
    assert low_beats[-1]["percent"] == 100 and low_beats[-1]["total_steps"] == 2


def test_resume_skips_clips_already_measured(store: FakeStore, tmp_path: Path) -> None:
    first, _ = run(store, tmp_path, voice_input("low.wav", "high.wav"))
    expected = json.loads(store.get_bytes(first.voice_id))
    store.objects = {k: v for k, v in store.objects.items() if not k[1].endswith(("step-2.json", "voice.json"))}
    store.objects[("uploads", "local/low.wav")] = b"gone bad: a retry must not read it again"
    second, beats = run(store, tmp_path, voice_input("low.wav", "high.wav"), details={"checkpoint_uri": CKPT.format(1)})
    assert [b["step"] for b in beats if b.get("stage") == "train_voice"][:2] == [1, 2]
    assert json.loads(store.get_bytes(second.voice_id)) == expected


def test_cancel_stops_after_the_current_clip_with_its_checkpoint(store: FakeStore, tmp_path: Path) -> None:
    env = ActivityEnvironment()
    env.cancel()  # already requested when the attempt starts: it still finishes and saves one clip
    with pytest.raises(CancelledError, match="after clip 1/2"):
        run(store, tmp_path, voice_input("low.wav", "high.wav"), env=env)
    assert store.list_keys("artifacts") == ["jobs/job-1/train_voice/checkpoints/step-1.json"]


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("silent.wav", "is silent"),
        ("short.wav", "voiced speech"),
        ("notes.txt", "not a decodable audio"),
        ("nope.wav", "does not exist"),
    ],
)
def test_bad_clips_are_non_retryable_and_named(store: FakeStore, tmp_path: Path, name: str, words: str) -> None:
    with pytest.raises(ApplicationError) as caught:
        run(store, tmp_path, voice_input("low.wav", name))
    err = caught.value
    assert err.type == "InvalidInput" and err.non_retryable
    assert f"s3://uploads/local/{name}" in err.message and words in err.message
    assert err.details[0] == [{"kind": "checkpoint", "uri": CKPT.format(1)}]  # the good clip's checkpoint
    assert not store.exists("s3://artifacts/profiles/prof-1/voice/voice.json")


def test_decode_downmixes_and_resamples(tmp_path: Path) -> None:
    t = np.arange(int(1.5 * 44_100)) / 44_100
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)
    stereo = np.stack([tone, tone], axis=1).reshape(-1)
    samples = decode(write_wav(tmp_path / "tone.wav", stereo, 44_100, channels=2), "tone")
    assert samples.dtype == np.float32 and abs(samples.size - 1.5 * SAMPLE_RATE) < 200
    stats = analyse(samples, "tone")
    assert abs(stats.f0_median_hz - 220) < 2 and stats.f0_spread_semitones < 0.2
