"""Authentication, per-user isolation and admission limits (API keys, sessions, 404 for others' jobs,
Idempotency-Key, the per-user cap on open jobs)."""

import asyncio
import hashlib
import os
import re
import subprocess
import sys

import httpx
from sqlalchemy import select, text
from temporalio import activity

from core.db import Credential
from schemas import names
from schemas.tasks import RenderInput, RenderResult
from tests.conftest import astronaut_png, wait_for_status
from tests.helpers import gated_render

QUICK = {"topic": "five seconds", "options": {"durationSeconds": 5}}


def _anonymous(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_every_api_call_needs_a_valid_key(stack_factory) -> None:
    async with stack_factory(gpu=False) as stack, _anonymous(stack.app) as anonymous:
        for method, path in [("GET", "/api/jobs"), ("POST", "/api/generate"), ("GET", "/api/status/job-x"),
                             ("GET", "/api/capabilities"), ("POST", "/api/uploads"), ("GET", "/api/profiles")]:  # fmt: skip
            response = await anonymous.request(method, path)
            assert response.status_code == 401, (method, path, response.text)
            assert "Bearer" in response.headers["www-authenticate"] and "Authorization" in response.json()["detail"]
        wrong = await anonymous.get("/api/jobs", headers={"Authorization": "Bearer msb_not-a-key"})
        assert wrong.status_code == 401 and "invalid" in wrong.json()["detail"]
        basic = await anonymous.get("/api/jobs", headers={"Authorization": "Basic dXNlcjpwYXNz"})
        assert basic.status_code == 401 and "Bearer" in basic.json()["detail"]
        assert (await anonymous.get("/healthz")).status_code == 200  # probes stay open


async def test_keys_are_stored_only_as_hashes(stack_factory) -> None:
    async with stack_factory(gpu=False) as stack:
        key = stack.api.headers["authorization"].removeprefix("Bearer ")
        async with stack.sessions() as session:
            rows = (await session.scalars(select(Credential).where(Credential.user_id == stack.user_id))).all()
            dump = (await session.execute(text("SELECT row_to_json(c)::text FROM credentials c"))).scalars().all()
        assert [r.secret_sha256 for r in rows] == [hashlib.sha256(key.encode()).hexdigest()]
        assert not any(key in line for line in dump)


async def test_the_cli_creates_a_user_whose_key_works(stack_factory) -> None:
    async with stack_factory(gpu=False) as stack, _anonymous(stack.app) as anonymous:
        created = subprocess.run(
            [sys.executable, "-m", "ops.users", "create-user", "cli-user", "--name", "laptop"],
            capture_output=True, text=True, check=True, env=os.environ,
        )  # fmt: skip
        key = created.stdout.strip()
        assert key.startswith("msb_")
        me = await anonymous.get("/api/session", headers={"Authorization": f"Bearer {key}"})
        assert me.status_code == 200 and me.json() == {"userId": "cli-user", "isAdmin": False, "expiresAt": None}
        bad = subprocess.run([sys.executable, "-m", "ops.users", "create-user", "Bad User!"], capture_output=True,
                             text=True, env=os.environ)  # fmt: skip
        assert bad.returncode != 0 and "user id" in bad.stderr


async def test_the_page_signs_in_once_and_then_uses_an_httponly_cookie(stack_factory) -> None:
    async with stack_factory(gpu=False) as stack, _anonymous(stack.app) as browser:
        key = stack.api.headers["authorization"].removeprefix("Bearer ")
        refused = await browser.post("/api/session", json={"apiKey": "msb_wrong-key-000"})
        assert refused.status_code == 401 and "apiKey" in refused.json()["detail"]
        signed_in = await browser.post("/api/session", json={"apiKey": key})
        assert signed_in.status_code == 200 and signed_in.json()["userId"] == stack.user_id
        cookie = signed_in.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        assert key not in signed_in.headers["set-cookie"]  # the cookie is a session token, not the key
        assert (await browser.get("/api/jobs")).status_code == 200  # the cookie alone authenticates
        assert (await browser.delete("/api/session")).status_code == 204
        browser.cookies.clear()
        assert (await browser.get("/api/jobs")).status_code == 401
        # The token itself is forgotten server-side, not just dropped by this browser.
        token = httpx.Cookies()
        token.extract_cookies(signed_in)
        replay = await browser.get("/api/jobs", cookies=token)
        assert replay.status_code == 401 and "session" in replay.json()["detail"]


async def test_another_users_jobs_uploads_and_profiles_are_invisible(stack_factory, tmp_path) -> None:
    async with stack_factory() as stack:
        portrait = (
            await stack.api.post(
                "/api/uploads", files=[("files", ("p.png", astronaut_png(tmp_path / "p.png").read_bytes()))]
            )
        ).json()["data"][0]["uri"]
        job_id = (await stack.api.post("/api/generate", json={**QUICK, "portrait": portrait})).json()["jobId"]
        await wait_for_status(stack.api, job_id)
        mallory = await stack.client_for(f"mallory-{stack.user_id}")
        for method, path in [("GET", f"/api/status/{job_id}"), ("GET", f"/api/jobs/{job_id}"),
                             ("POST", f"/api/jobs/{job_id}/cancel"), ("POST", f"/api/jobs/{job_id}/retry"),
                             ("POST", f"/api/jobs/{job_id}/resubmit"), ("DELETE", f"/api/jobs/{job_id}")]:  # fmt: skip
            response = await mallory.request(method, path)
            assert response.status_code == 404, (method, path, response.text)
        assert (await mallory.get("/api/jobs")).json()["count"] == 0
        stolen = await mallory.post("/api/generate", json={**QUICK, "portrait": portrait})
        assert stolen.status_code == 403 and "not one of your uploads" in stolen.json()["detail"]
        assert (await mallory.get("/api/uploads")).json()["count"] == 0
        posing = await mallory.post("/api/generate", json={**QUICK, "userId": stack.user_id})
        assert posing.status_code == 403 and "userId" in posing.json()["detail"]
        own = await stack.api.post("/api/plan", json={**QUICK, "mode": "generate", "userId": stack.user_id})
        assert own.status_code == 200  # a matching userId is accepted (the seed's bodies carry one)


def failing_render():
    @activity.defn(name=names.RENDER_VIDEO)
    async def render_video(_inp: RenderInput) -> RenderResult:
        from temporalio.exceptions import ApplicationError

        raise ApplicationError("stage 'encode' failed: disk full", type="RenderStageFailed", non_retryable=True)

    return render_video


async def test_admin_endpoints_need_an_admin_key(stack_factory) -> None:
    async with stack_factory(gpu_activities=[failing_render()]) as stack:
        assert (await stack.api.get("/api/admin/workers")).status_code == 403
        refused = await stack.api.post("/api/admin/users", json={"userId": "someone"})
        assert refused.status_code == 403 and "admin" in refused.json()["detail"]
        admin = await stack.client_for(f"ops-{stack.user_id}", admin=True)
        workers = (await admin.get("/api/admin/workers")).json()
        queues = {w["taskQueue"]: w for w in workers["data"]}
        assert queues[stack.settings.temporal.gpu_task_queue]["live"] is True
        created = await admin.post("/api/admin/users", json={"userId": f"new-{stack.user_id}"})
        assert created.status_code == 201
        async with _anonymous(stack.app) as fresh:
            me = await fresh.get("/api/session", headers={"Authorization": f"Bearer {created.json()['apiKey']}"})
        assert me.json()["userId"] == f"new-{stack.user_id}"
        # Operators retry any user's failed job; other users cannot even see it.
        job_id = (await stack.api.post("/api/generate", json=QUICK)).json()["jobId"]
        assert (await wait_for_status(stack.api, job_id))["status"] == "failed"
        retried = await admin.post(f"/api/jobs/{job_id}/retry")
        assert retried.status_code == 202 and retried.json()["jobId"] == job_id
        gpu_worker = queues[stack.settings.temporal.gpu_task_queue]["workerId"]
        assert (await admin.delete(f"/api/admin/workers/{gpu_worker}")).status_code == 204
        assert (await admin.delete(f"/api/admin/workers/{gpu_worker}")).status_code == 404


async def test_a_user_gets_429_beyond_their_open_job_cap(stack_factory) -> None:
    release = asyncio.Event()
    async with stack_factory(gpu_activities=[gated_render(release)], api_limits={"max_concurrent_jobs": 2}) as stack:
        first = [(await stack.api.post("/api/generate", json=QUICK)).json()["jobId"] for _ in range(2)]
        refused = await stack.api.post("/api/generate", json=QUICK)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        assert "2 jobs" in refused.json()["detail"]
        assert (await stack.api.get("/api/jobs")).json()["count"] == 2  # the refused one left no row
        other = await stack.client_for(f"other-{stack.user_id}")
        assert (await other.post("/api/generate", json=QUICK)).status_code == 202  # the cap is per user
        await stack.api.post(f"/api/jobs/{first[0]}/cancel")
        await wait_for_status(stack.api, first[0])
        assert (await stack.api.post("/api/generate", json=QUICK)).status_code == 202
        release.set()


async def test_idempotency_key_returns_the_same_job(stack_factory) -> None:
    async with stack_factory() as stack:
        headers = {"Idempotency-Key": f"order-{stack.user_id}"}
        answers = await asyncio.gather(
            *[stack.api.post("/api/generate", json=QUICK, headers=headers) for _ in range(4)]
        )
        assert {a.status_code for a in answers} == {202}
        job_ids = {a.json()["jobId"] for a in answers}
        assert len(job_ids) == 1
        assert (await stack.api.get("/api/jobs")).json()["count"] == 1
        again = await stack.api.post("/api/generate", json=QUICK, headers=headers)
        assert again.json()["jobId"] in job_ids
        changed = await stack.api.post("/api/generate", json={**QUICK, "topic": "another"}, headers=headers)
        assert changed.status_code == 422 and changed.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
        fresh = await stack.api.post("/api/generate", json=QUICK, headers={"Idempotency-Key": "another-key"})
        assert fresh.status_code == 202 and fresh.json()["jobId"] not in job_ids
        bad = await stack.api.post("/api/generate", json=QUICK, headers={"Idempotency-Key": "x" * 201})
        assert bad.status_code == 422
        for job_id in [*job_ids, fresh.json()["jobId"]]:
            await wait_for_status(stack.api, job_id)


async def test_training_needs_consent(stack_factory, tmp_path) -> None:
    async with stack_factory(gpu=False) as stack:
        image = (
            await stack.api.post(
                "/api/uploads", files=[("files", ("p.png", astronaut_png(tmp_path / "p.png").read_bytes()))]
            )
        ).json()["data"][0]["uri"]
        for consent in (None, False):
            body = {"mode": "train_only", "images": [image]} | ({"consent": consent} if consent is not None else {})
            response = await stack.api.post("/api/train", json=body)
            assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "consent"]
        assert (await stack.api.get("/api/jobs")).json()["count"] == 0


async def test_oversized_uploads_are_refused_while_streaming(stack_factory, tmp_path) -> None:
    limits = {"max_upload_bytes": 200_000, "max_files_per_upload": 2}
    async with stack_factory(gpu=False, api_limits=limits) as stack:
        before = stack.store.list_keys("uploads", f"{stack.user_id}/")
        declared = await stack.api.post(
            "/api/uploads", content=b"x", headers={"Content-Length": str(10**10), "Content-Type": "multipart/form-data"}
        )
        assert declared.status_code == 413 and "MiB" in declared.json()["detail"]

        async def endless():  # no Content-Length: the body is cut off once it passes the cap
            yield b"--b\r\nContent-Disposition: form-data; name=files; filename=big.png\r\n\r\n"
            for _ in range(10_000):
                yield b"\0" * 65536

        streamed = await stack.api.post(
            "/api/uploads", content=endless(), headers={"Content-Type": "multipart/form-data; boundary=b"}
        )
        assert streamed.status_code == 413 and "MiB" in streamed.json()["detail"]
        too_many = [
            ("files", (f"{i}.png", astronaut_png(tmp_path / f"{i}.png").read_bytes()[:50_000])) for i in range(3)
        ]
        count = await stack.api.post("/api/uploads", files=too_many)
        assert count.status_code in (413, 422)  # over the body cap or the file count, never stored
        assert stack.store.list_keys("uploads", f"{stack.user_id}/") == before


async def test_object_keys_never_come_from_file_names(stack_factory, tmp_path) -> None:
    async with stack_factory(gpu=False) as stack:
        data = astronaut_png(tmp_path / "p.png").read_bytes()
        stored = await stack.api.post("/api/uploads", files=[("files", ("../../artifacts/evil/x.png", data))])
        uri = stored.json()["data"][0]["uri"]
        assert re.fullmatch(rf"s3://uploads/{re.escape(stack.user_id)}/[0-9a-f]{{32}}\.png", uri), uri
