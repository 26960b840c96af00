"""`callbacks.notify`: the signed body, and which receiver answers Temporal retries."""

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.callbacks import SIGNATURE_HEADER, CallbackActivities, sign, verify
from core.settings import CallbackSettings
from schemas.tasks import CallbackInput, Video

SECRET = "s3cret"
COMPLETED = CallbackInput(
    job_id="job-1",
    url="https://receiver.example/hooks/myspinbot?token=abc",
    status="completed",
    video=Video(
        uri="s3://artifacts/jobs/job-1/render/video.mp4", thumbnail_uri=None, duration=2.0, variant="sadtalker"
    ),
)
FAILED = CallbackInput(
    job_id="job-2", url="http://receiver.example/", status="failed", error="GPU lost", error_stage="render"
)


async def notify(handler, inp: CallbackInput = COMPLETED, secret: str | None = SECRET) -> list[httpx.Request]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    settings = CallbackSettings(secret=SecretStr(secret) if secret else None, timeout_seconds=2)
    activities = CallbackActivities(settings, transport=httpx.MockTransport(record))
    await ActivityEnvironment().run(activities.notify, inp)
    return seen


async def test_posts_the_signed_final_status() -> None:
    [request] = await notify(lambda _r: httpx.Response(204))
    assert request.method == "POST" and str(request.url) == COMPLETED.url
    assert request.headers["content-type"] == "application/json"
    assert verify(SECRET, request.content, request.headers[SIGNATURE_HEADER])
    assert not verify("other", request.content, request.headers[SIGNATURE_HEADER])
    assert json.loads(request.content) == {
        "jobId": "job-1",
        "status": "completed",
        "video": {"uri": COMPLETED.video.uri, "duration": 2.0, "variant": "sadtalker"},  # type: ignore[union-attr]
    }


async def test_a_failed_job_reports_stage_and_message() -> None:
    [request] = await notify(lambda _r: httpx.Response(200), FAILED)
    assert json.loads(request.content) == {
        "jobId": "job-2",
        "status": "failed",
        "error": {"stage": "render", "message": "GPU lost"},
    }
    assert request.headers[SIGNATURE_HEADER] == sign(SECRET, request.content)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
async def test_client_errors_are_not_retried(status: int) -> None:
    with pytest.raises(ApplicationError) as err:
        await notify(lambda _r: httpx.Response(status))
    assert err.value.type == "CallbackRejected" and err.value.non_retryable
    assert str(status) in err.value.message and "token" not in err.value.message


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 301])
async def test_timeouts_throttling_server_errors_and_redirects_are_retried(status: int) -> None:
    with pytest.raises(ApplicationError) as err:
        await notify(lambda _r: httpx.Response(status))
    assert err.value.type == "CallbackFailed" and not err.value.non_retryable


async def test_retry_after_sets_the_next_delay_capped() -> None:
    with pytest.raises(ApplicationError) as err:
        await notify(lambda _r: httpx.Response(429, headers={"Retry-After": "7"}))
    assert err.value.next_retry_delay == timedelta(seconds=7)
    with pytest.raises(ApplicationError) as err:
        await notify(lambda _r: httpx.Response(503, headers={"Retry-After": "86400"}))
    assert err.value.next_retry_delay == timedelta(minutes=5)


async def test_an_unreachable_receiver_is_retried() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ApplicationError) as err:
        await notify(refuse)
    assert err.value.type == "CallbackUnreachable" and not err.value.non_retryable


async def test_without_a_secret_nothing_is_sent() -> None:
    calls: list[httpx.Request] = []
    with pytest.raises(ApplicationError) as err:
        await notify(lambda r: calls.append(r) or httpx.Response(200), secret=None)
    assert err.value.type == "CallbackNotConfigured" and err.value.non_retryable and not calls


class Receiver:
    """A local HTTP receiver on a free port that answers 503 to its first POST, then 204."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, str | None]] = []
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts += 1
                status = 503 if receiver.attempts == 1 else 204
                if status == 204:
                    receiver.received.append((body, self.headers[SIGNATURE_HEADER]))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=t"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.integration
async def test_the_receiver_gets_the_signed_status_of_each_job(
    stack_factory, settings, object_store, monkeypatch
) -> None:
    from tests.api.test_ops import flaky_render
    from tests.conftest import wait_for_status

    body = {"topic": "call me back", "variant": "sadtalker", "options": {"durationSeconds": 5}}
    calls: list[str] = []
    async with stack_factory(gpu_activities=[flaky_render(object_store, calls)]) as stack:
        # Without a secret the server refuses callbacks; a non-http(s) URL is a validation error.
        refused = await stack.api.post("/api/generate", json={**body, "callbackUrl": "http://127.0.0.1:9/"})
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "callbackUrl"]
        bad = await stack.api.post("/api/generate", json={**body, "callbackUrl": "ftp://example.com/x"})
        assert bad.status_code == 422, bad.text

    monkeypatch.setattr(settings.callbacks, "secret", SecretStr(SECRET))
    async with stack_factory(gpu=False) as stack:  # a receiver on a private address is refused by default
        for url in ("http://127.0.0.1:9/", "http://169.254.169.254/latest/meta-data/", "http://[::1]/"):
            private = await stack.api.post("/api/generate", json={**body, "callbackUrl": url})
            assert private.status_code == 422 and "not a public address" in private.text, private.text
    monkeypatch.setattr(settings.callbacks, "allow_private_hosts", True)  # the receiver below is on 127.0.0.1
    with Receiver() as receiver:
        async with stack_factory(gpu_activities=[flaky_render(object_store, calls)]) as stack:
            jobs = []
            for _ in range(2):  # the stub fails its first render, so: one failed job, one completed
                response = await stack.api.post("/api/generate", json={**body, "callbackUrl": receiver.url})
                assert response.status_code == 202, response.text
                jobs.append(response.json()["jobId"])
                await wait_for_status(stack.api, jobs[-1])
            history = await stack.client.get_workflow_handle(jobs[1]).fetch_history()

    assert receiver.attempts == 3  # the first delivery got a 503 and was retried by Temporal
    (failed, failed_sig), (completed, completed_sig) = receiver.received
    assert verify(SECRET, failed, failed_sig) and verify(SECRET, completed, completed_sig)
    assert json.loads(failed) == {
        "jobId": jobs[0],
        "status": "failed",
        "error": {"stage": "render", "message": "stage 'encode' failed: GPU lost"},
    }
    done = json.loads(completed)
    assert done["jobId"] == jobs[1] and done["status"] == "completed"
    assert done["video"]["uri"].endswith(f"/{jobs[1]}/render/video.mp4") and done["video"]["variant"] == "sadtalker"
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_id
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert scheduled[-2:] == ["register", "notify_callback"], scheduled


async def test_a_private_callback_host_is_refused_at_send_time_too() -> None:
    from temporalio.exceptions import ApplicationError

    private = CallbackInput(job_id="job-3", url="http://127.0.0.1:8000/", status="completed")
    with pytest.raises(ApplicationError) as caught:
        await notify(lambda _r: httpx.Response(204), private)
    assert caught.value.non_retryable and "not a public address" in caught.value.message
