"""Training through the whole stack: profiles trained, reused by later jobs, cancellable."""

import asyncio
from pathlib import Path

import pytest

from core import repo
from core.services import open_services
from core.settings import Settings
from devstack.process import Service
from gpu_worker.media.speech import VoiceParams
from gpu_worker.media.voices import synthesize
from gpu_worker.training.audio import analyse, decode
from schemas.names import ARTIFACTS_BUCKET
from tests.conftest import astronaut_png, build_stack, wait_for_status
from tests.helpers import fresh_database

pytestmark = pytest.mark.integration

SCRIPT = {
    "stage": "A studio.",
    "narrative": "Hello. This sentence is spoken with the chosen voice, clearly and at an easy pace.",
}


async def upload(api, path: Path) -> str:
    response = await api.post("/api/uploads", files=[("files", (path.name, path.read_bytes()))])
    assert response.status_code == 201, response.text
    return response.json()["data"][0]["uri"]


async def training_inputs(api, tmp_path: Path, voice: VoiceParams) -> tuple[str, str]:
    image = await upload(api, astronaut_png(tmp_path / "face.png"))
    synthesize("Hello there. This is my own voice, and I speak quite high.", tmp_path / "clip.wav", voice)
    return image, await upload(api, tmp_path / "clip.wav")


def median_pitch_hz(data: bytes, tmp_path: Path) -> float:
    path = tmp_path / "speech.wav"
    path.write_bytes(data)
    return analyse(decode(path, "speech"), "speech").f0_median_hz


async def test_trained_profile_is_reused_with_its_voice(stack_factory, tmp_path) -> None:
    async with stack_factory() as stack:
        image, clip = await training_inputs(stack.api, tmp_path, VoiceParams(voice="f1", pitch=85))
        body = {
            "topic": "me",
            "profileName": "fast-voice",
            "consent": True,
            "images": [image],
            "audio": [clip],
            "variant": "sadtalker",
            "script": SCRIPT,  # no durationSeconds: the video lasts as long as the script takes to say
        }
        response = await stack.api.post("/api/train", json=body)
        assert response.status_code == 202, response.text
        trained = response.json()["jobId"]
        assert (await wait_for_status(stack.api, trained, timeout=240))["status"] == "completed"
        record = (await stack.api.get(f"/api/jobs/{trained}")).json()
        profile = record["profile"]
        assert profile["status"] == "ready" and profile["loraId"] and profile["voiceId"]
        assert profile["portraitUri"] == image
        assert {"lora", "voice", "video"} <= {a["kind"] for a in record["artifacts"]}
        # Embedded runtimes only: the profile's portrait and fitted pace carried over, and the record says so.
        assert (record["rendering"]["voice"], record["rendering"]["portrait"]) == ("profile-pace", "profile-portrait")

        speech = {}
        for label, extra in (("profile", {"profileId": profile["id"]}), ("default", {})):
            job = (
                await stack.api.post(
                    "/api/generate",
                    json={
                        "topic": "t",
                        "variant": "sadtalker",
                        "script": SCRIPT,
                        # A profile's pitch applies where the engine has a pitch knob: eSpeak NG, not Piper.
                        "voice": "espeak-ng:en-us",
                        **extra,
                    },
                )
            ).json()["jobId"]
            assert (await wait_for_status(stack.api, job))["status"] == "completed"
            job_record = (await stack.api.get(f"/api/jobs/{job}")).json()
            audio = next(a for a in job_record["artifacts"] if a["kind"] == "audio")
            speech[label] = median_pitch_hz(stack.store.get_bytes(audio["uri"]), tmp_path)
            if label == "profile":
                assert job_record["profile"]["id"] == profile["id"]
                assert job_record["rendering"]["voice"] == "profile-pace"
            else:
                assert not {"voice", "portrait"} & set(job_record["rendering"]), "nothing of a profile claimed"
        # The clip was a high voice: the fitted voice speaks the same script clearly higher.
        assert speech["profile"] > 1.3 * speech["default"], speech


async def test_cancelling_training_keeps_a_checkpoint_and_stops_the_gpu(stack_factory, tmp_path) -> None:
    async with stack_factory() as stack:
        image, clip = await training_inputs(stack.api, tmp_path, VoiceParams())
        body = {
            "mode": "train_only",
            "profileName": "cancel-me",
            "consent": True,
            "images": [image],
            "audio": [clip],
            "trainingPreset": "tiny-long",
        }
        job_id = (await stack.api.post("/api/train", json=body)).json()["jobId"]
        for _ in range(600):
            node = next(
                n for n in (await stack.api.get(f"/api/status/{job_id}")).json()["nodes"] if n["id"] == "train_lora"
            )
            if (node["progress"] or {}).get("step", 0) >= 20:
                break
            await asyncio.sleep(0.1)
        assert (await stack.api.post(f"/api/jobs/{job_id}/cancel")).status_code == 202
        status = await wait_for_status(stack.api, job_id)
        assert status["status"] == "cancelled"
        assert {n["id"]: n["state"] for n in status["nodes"]}["train_lora"] == "cancelled"
        assert stack.store.list_keys(ARTIFACTS_BUCKET, f"jobs/{job_id}/train_lora/checkpoints/"), (
            "a final checkpoint was written"
        )
        description = await stack.client.get_workflow_handle(job_id).describe()
        assert not description.raw_description.pending_activities, "no GPU activity keeps running"
        profile = next(p for p in (await stack.api.get("/api/profiles")).json()["data"] if p["name"] == "cancel-me")
        assert profile["status"] == "failed", profile  # not left "training" forever
        async with stack.sessions() as session:
            assert (await repo.get_profile(session, stack.user_id, profile["id"])).error == "training was cancelled"
        refused = await stack.api.post("/api/generate", json={"topic": "t", "profileId": profile["id"]})
        assert refused.status_code == 422 and "not ready" in refused.json()["detail"][0]["msg"]


async def test_a_cloned_voice_speaks_its_profiles_jobs_and_a_pace_only_profile_does_not_claim_one(
    settings: Settings, postgres_service: Service, tmp_path
) -> None:
    from gpu_worker.backends.xtts import RUNTIME as XTTS
    from tests.gpu_worker.tiny_xtts import save_tiny_xtts

    xtts_dir = save_tiny_xtts(tmp_path / "xtts")
    # Its own database: the API plans against the intersection of every live GPU manifest, and other
    # tests' workers (seen within the last two minutes) advertise no cloned voice.
    url = fresh_database(postgres_service, "cloned_voice")
    alone = settings.model_copy(update={"database": settings.database.model_copy(update={"url": url})})
    async with (
        open_services(alone, migrate=True) as services,
        build_stack(alone, services, gpu_settings={"coqui_model_dir": xtts_dir}) as stack,
    ):
        image, clip = await training_inputs(stack.api, tmp_path, VoiceParams())
        body = {"mode": "train_only", "profileName": "cloned", "consent": True, "images": [image], "audio": [clip]}
        response = await stack.api.post("/api/train", json=body)
        assert response.status_code == 202, response.text
        assert (await wait_for_status(stack.api, response.json()["jobId"], timeout=240))["status"] == "completed"
        profile = (await stack.api.get(f"/api/jobs/{response.json()['jobId']}")).json()["profile"]
        assert profile["voiceCloneEngine"] == XTTS

        # One long sentence: the tiny random XTTS may stop after an audio token or two on a short one.
        script = {"stage": "A studio.", "narrative": "This sentence is spoken in the voice cloned from the clip."}
        generate = {"mode": "generate", "topic": "t", "variant": "sadtalker", "script": script}
        generate["profileId"] = profile["id"]
        planned = await stack.api.post("/api/plan", json=generate)
        assert planned.status_code == 200, planned.text
        assert planned.json()["voice"] == "profile"
        job = (await stack.api.post("/api/generate", json=generate)).json()["jobId"]
        assert (await wait_for_status(stack.api, job, timeout=240))["status"] == "completed"
        assert (await stack.api.get(f"/api/jobs/{job}")).json()["rendering"]["voice"] == "profile-clone"

        # A profile whose voice is a fitted pace only (trained before cloning): the default voice speaks,
        # at the profile's pace, and the plan says so; asking for the cloned voice is a 422 naming `voice`.
        async with stack.sessions.begin() as session:
            await repo.update_profile(session, profile["id"], voice_clone_engine=None)
        planned = await stack.api.post("/api/plan", json=generate)
        assert planned.status_code == 200, planned.text
        assert planned.json()["voice"] != "profile"
        refused = await stack.api.post("/api/plan", json={**generate, "voice": "profile"})
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "voice"]
        assert "has none" in refused.json()["detail"][0]["msg"]
