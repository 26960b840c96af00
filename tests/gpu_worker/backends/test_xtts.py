"""The XTTS v2 speech backend on a tiny random model: configured like Coqui, advertised as `profile`, speaking clones.

Random weights make noise-like "speech", but the whole path is real: the folder loads through
`XttsConfig` + `Xtts(config)` + `load_checkpoint`, a voice is cloned from samples in memory, the
GPT decodes audio tokens from it (greedily here: `sample=False`) and HiFi-GAN makes the waveform.
"""

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from gpu_worker.backends import Backends, build_backends
from gpu_worker.backends.xtts import LICENSE, XttsSpeech
from gpu_worker.media.speech import ClonedVoice, VoiceParams
from gpu_worker.media.voices import Narrator
from gpu_worker.rendering import PROFILE_CLONE, PROFILE_PACE, PROFILE_PORTRAIT, RenderActivities, _profile_used
from gpu_worker.training.audio import decode
from gpu_worker.training.tasks import TrainingActivities
from gpu_worker.training.voice import load_voice_params
from gpu_worker.training.voice_clone import clone_uri, load_clone
from gpu_worker.worker import manifest
from schemas.tasks import ProfileRef, RenderInput, RenderPlan, RenderSettings, Script, TrainVoiceInput
from tests.gpu_worker.tiny_xtts import XTTS_LANGUAGES, speaker_wavs
from tests.gpu_worker.training.helpers import FakeStore, encode_image

from .test_backends import run, saved, settings
from .test_coqui import rms, samples

RATE = 22_050
TEXT = "Hello there. Books are quiet friends."


@pytest.fixture(scope="module")
def xtts(xtts_model_dir: Path) -> XttsSpeech:
    return XttsSpeech(xtts_model_dir, sample=False)


@pytest.fixture(scope="module")
def voices(xtts: XttsSpeech, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ClonedVoice]:
    """Two speakers' cloned voices, computed from samples decoded by PyAV."""
    wavs = speaker_wavs(tmp_path_factory.mktemp("speakers"))
    return {name: xtts.condition([decode(path, name, rate=RATE)], RATE) for name, path in wavs.items()}


def speak(xtts: XttsSpeech, voice: ClonedVoice, seed: int = 0, language: str = "en") -> np.ndarray:
    params = VoiceParams(language=language, voice_id="profile", clone=voice)
    spoken, rate = xtts.speak_sentences(["Hello there."], params, 1.0, seed, lambda _f: None)
    assert rate == 24_000, "XTTS's decoder speaks at 24 kHz"
    return spoken[0].samples


def test_an_xtts_folder_is_the_cloning_backend_advertised_as_the_profile_voice(xtts_model_dir: Path) -> None:
    configured = settings(coqui_model_dir=xtts_model_dir)
    backends = build_backends(configured)
    assert isinstance(backends.speech, XttsSpeech)
    found = manifest(configured, "gpu-1", backends)
    assert found.runtimes["svd"]["speech"][0] == "coqui-xtts"
    cloned = [v for v in found.voices if v.id == "profile"]
    assert [v.language for v in cloned] == list(XTTS_LANGUAGES)
    assert all(v.engine == "coqui-xtts" and v.commercial == "no" and v.license == LICENSE for v in cloned)
    assert "Coqui Public Model License" in LICENSE and "non-commercial" in LICENSE
    assert found.voices[0].id == "piper:en_US-joe-medium", "never the default voice: it needs a profile's clone"
    assert found.voices[-1].id == "profile" and "coqui" not in {v.id for v in found.voices}


@pytest.mark.parametrize("missing", ["vocab.json", "model.pth"])
def test_a_folder_missing_a_file_stops_the_worker_naming_it(xtts_model_dir: Path, tmp_path: Path, missing: str) -> None:
    broken = tmp_path / "xtts"
    broken.mkdir()
    for name in ("config.json", "model.pth", "vocab.json"):
        if name != missing:
            (broken / name).symlink_to(xtts_model_dir / name)
    with pytest.raises(ApplicationError) as info:
        build_backends(settings(coqui_model_dir=broken))
    assert info.value.type == "MissingWeights" and info.value.non_retryable
    assert f"XTTS model folder {broken} lacks {missing}" in info.value.message


def test_a_corrupt_checkpoint_fails_at_first_use_naming_the_folder(xtts_model_dir: Path, tmp_path: Path) -> None:
    broken = shutil.copytree(xtts_model_dir, tmp_path / "xtts", ignore=shutil.ignore_patterns("model.pth"))
    (broken / "model.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ApplicationError) as info:
        XttsSpeech(broken).condition([np.zeros(RATE, np.float32)], RATE)
    assert info.value.type == "MissingWeights" and str(broken) in info.value.message


def test_same_clone_and_seed_give_the_same_audio_and_speakers_differ(
    xtts: XttsSpeech, voices: dict[str, ClonedVoice]
) -> None:
    low = speak(xtts, voices["low"], seed=3)
    assert low.size > 0.3 * 24_000 and rms(low.astype(np.float32)) > 1000
    assert np.array_equal(low, speak(xtts, voices["low"], seed=3)), "no sampling, same seed: identical audio"
    high = speak(xtts, voices["high"], seed=3)
    n = min(low.size, high.size)
    assert low.size != high.size or not np.array_equal(low[:n], high[:n]), "another speaker, another voice"
    assert speak(xtts, voices["low"], language="de").size > 0, "every language the config lists"


def test_a_clone_xtts_cannot_use_fails_non_retryably(xtts: XttsSpeech, voices: dict[str, ClonedVoice]) -> None:
    wider = ClonedVoice("coqui-xtts", np.zeros((1, 64, 32), np.float32), voices["low"].speaker_embedding)
    cases: list[tuple[VoiceParams, str]] = [
        (VoiceParams(voice_id="profile", clone=wider), "computed with another XTTS model"),
        (VoiceParams(voice_id="profile"), "only in a profile's cloned voice"),
        (VoiceParams(language="fr", voice_id="profile", clone=voices["low"]), "does not speak 'fr' (it speaks en, de)"),
    ]
    for params, words in cases:
        with pytest.raises(ApplicationError) as info:
            xtts.speak_sentences(["Hello."], params, 1.0, 0, lambda _f: None)
        assert info.value.type == "BackendFailed" and info.value.non_retryable and words in info.value.message


def test_the_narrator_speaks_the_clone_with_an_estimated_timeline(
    xtts: XttsSpeech, voices: dict[str, ClonedVoice], tmp_path: Path
) -> None:
    narrator = Narrator(coqui=xtts)
    ticks: list[float] = []
    cloned = VoiceParams(language="en", voice_id="profile", clone=voices["high"])
    result = narrator.speak(TEXT, tmp_path / "clone.wav", cloned, 6.0, progress=ticks.append)
    assert (result.runtime, result.timing, result.sample_rate) == ("coqui-xtts", "estimated", 24_000)
    assert [s.text for s in result.segments] == ["Hello there.", "Books are quiet friends."]
    assert [w.text for w in result.words] == TEXT.split()
    first, second = result.segments
    spans = [(first, result.words[:2]), (second, result.words[2:])]
    assert all(s.start - 1e-6 <= w.start < w.end <= s.end + 1e-6 for s, words in spans for w in words)
    assert result.duration == pytest.approx(6.0) and ticks[0] == 0.0
    # A profile without a clone (trained before XTTS) speaks with the language's default voice, at its pace.
    plain = VoiceParams(language="en", voice="m3", rate_wpm=140, voice_id="profile")  # as `voice.json` gives it
    assert narrator.speak(TEXT, tmp_path / "plain.wav", plain).runtime == "piper:en_US-joe-medium"
    german = dataclasses.replace(plain, language="de")
    assert narrator.speak(TEXT, tmp_path / "de.wav", german).runtime == "espeak-ng"


# ---------------------------------------------------------------- renders through the activity

PROFILE = "prof-clone"


@pytest.fixture(scope="module")
def trained(xtts: XttsSpeech, tmp_path_factory: pytest.TempPathFactory) -> FakeStore:
    """A store with a profile trained with XTTS configured (voice.json + the clone) and its portrait."""
    store = FakeStore()
    wav = speaker_wavs(tmp_path_factory.mktemp("clips"))["low"]  # spoken at 140 wpm: a pace of its own
    store.put_bytes("uploads", "local/clip.wav", wav.read_bytes())
    face = encode_image(skimage.data.astronaut(), quality=90)  # type: ignore[no-untyped-call]
    store.put_bytes("uploads", "local/face.jpg", face)
    no_sd = lambda _p: pytest.fail("no SD model needed")  # noqa: E731
    activities = TrainingActivities(store, tmp_path_factory.mktemp("train"), no_sd, voice_cloner=xtts)
    inp = TrainVoiceInput(
        job_id="job-t", node_id="train_voice", profile_id=PROFILE, clips=["s3://uploads/local/clip.wav"]
    )
    ActivityEnvironment().run(activities.train_voice, inp)
    return store


def clone_render(voice: str | None, face_source: str = "profile") -> RenderInput:
    options = RenderSettings(duration_seconds=5, resolution="480p", aspect_ratio="16:9", fps=25, captions=True)
    return RenderInput(
        job_id="job-clone", node_id="render",
        pipeline=RenderPlan(variant="sadtalker", portrait_uri="s3://uploads/local/face.jpg", face_source=face_source),
        script=Script(stage="A quiet library.", narrative=TEXT),
        profile=ProfileRef(id=PROFILE, voice_id=f"s3://artifacts/profiles/{PROFILE}/voice/voice.json",
                           portrait_uri="s3://uploads/local/face.jpg"),
        options=options, language="en", voice=voice,
    )  # fmt: skip


def test_a_profile_job_speaks_in_its_cloned_voice_and_the_record_says_so(
    xtts: XttsSpeech, trained: FakeStore, tmp_path: Path
) -> None:
    store = trained.copy()
    assert store.exists(clone_uri(PROFILE))
    result, beats = run(Backends(speech=xtts), store, tmp_path / "work", clone_render("profile"))
    rendering = result.video.rendering
    assert rendering["speech"] == "coqui-xtts" and rendering["talking_head"] == "embedded-face-mesh"
    assert (rendering["voice"], rendering["portrait"]) == (PROFILE_CLONE, PROFILE_PORTRAIT)
    audio, rate = samples(saved(store, next(a.uri for a in result.assets if a.kind == "audio"), tmp_path / "a.wav"))
    assert rate == 24_000 and rms(audio) > 100, "the narration is XTTS's"
    assert result.video.duration == pytest.approx(5.0, abs=0.1)


def test_another_voice_or_a_worker_without_xtts_keeps_the_profiles_pace(
    xtts: XttsSpeech, trained: FakeStore, tmp_path: Path
) -> None:
    fitted = load_voice_params(trained, clone_render(None).profile.voice_id or "")
    assert fitted.pace < 0.95
    activities = RenderActivities(trained, tmp_path, Backends(speech=xtts))  # type: ignore[arg-type]
    named = activities._voice(clone_render("piper:en_US-joe-medium"))
    assert named.clone is None and named.voice_id == "piper:en_US-joe-medium" and named.rate_wpm == fitted.rate_wpm
    cloned = activities._voice(clone_render("profile"))
    assert cloned.clone is not None and cloned.pace == 1.0, "the clone speaks at the speaker's own pace"
    assert np.array_equal(cloned.clone.gpt_latents, load_clone(trained, clone_uri(PROFILE)).gpt_latents)
    without_xtts = RenderActivities(trained, tmp_path, Backends())._voice(clone_render("profile"))  # type: ignore[arg-type]
    assert without_xtts.clone is None and without_xtts.rate_wpm == named.rate_wpm

    damaged = trained.copy()
    damaged.put_bytes("artifacts", f"profiles/{PROFILE}/voice/xtts-conditioning.npz", b"not an npz")
    with pytest.raises(ApplicationError) as info:
        RenderActivities(damaged, tmp_path, Backends(speech=xtts))._voice(clone_render("profile"))  # type: ignore[arg-type]
    assert info.value.type == "InvalidInput" and info.value.non_retryable
    assert (
        "not a readable cloned voice" in info.value.message and "train the profile's voice again" in info.value.message
    )

    speech: dict[str, Any] = {"speech": "piper:en_US-joe-medium"}
    assert _profile_used(clone_render(None, face_source="request"), named, speech) == {"voice": PROFILE_PACE}
    assert _profile_used(clone_render(None), cloned, {"speech": "coqui-xtts"})["voice"] == PROFILE_CLONE
