"""The Ollama endpoint misbehaves on a real socket: the job fails at the script step, before any GPU work.

`tests/workflows/test_pipeline_e2e.py::test_llm_failure_fails_the_job_before_any_gpu_work` already
covers a well-formed Ollama reply whose content is not a script (`httpx.MockTransport`); this adds
an endpoint that never answers (client timeout) and one that answers an HTTP body that is not
Ollama's JSON at all, both from a local TCP server the real `ollama` client connects to.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from temporalio.api.enums.v1 import EventType

from activities.script_writer import OllamaScriptWriter
from tests.conftest import wait_for_status
from tests.faults.conftest import scheduled_activities

pytestmark = pytest.mark.integration

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
LLM_TIMEOUT = 0.5  # seconds; the writer's client timeout


async def _read_request(reader: asyncio.StreamReader) -> None:
    headers = (await reader.readuntil(b"\r\n\r\n")).lower().split(b"\r\n")
    lengths = [int(line.split(b":")[1]) for line in headers if line.startswith(b"content-length:")]
    await reader.readexactly(lengths[0] if lengths else 0)


async def never_answers(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    await asyncio.sleep(3600)  # cancelled when the server closes


async def answers_garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    body = b"<html><body>502 upstream hiccup</body></html>"
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
    writer.write(head % len(body) + body)
    await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def llm_server(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """A local HTTP endpoint run by `handler`; yields its URL and a one-item list counting requests."""
    requests = [0]
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests[0] += 1
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
            await handler(reader, writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", requests
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        (never_answers, f"the LLM (ollama:m) did not answer within {LLM_TIMEOUT:g} s"),
        (answers_garbage, "the LLM (ollama:m) answered something that is not Ollama's JSON"),
    ],
    ids=["timeout", "garbage-http-body"],
)
async def test_llm_endpoint_fault_fails_the_script_step_before_any_gpu_work(
    stack_factory, handler: Handler, reason: str
) -> None:
    async with llm_server(handler) as (url, requests):
        writer = OllamaScriptWriter(url, "m", LLM_TIMEOUT)
        async with stack_factory(writer=writer) as stack:
            response = await stack.api.post("/api/generate", json={"topic": "black holes"})
            assert response.status_code == 202, response.text
            job_id = response.json()["jobId"]
            status = await wait_for_status(stack.api, job_id, timeout=60)

            assert status["status"] == "failed", status
            assert status["error"]["stage"] == "script", status["error"]
            assert status["error"]["message"].startswith(f"script failed: {reason}"), status["error"]
            assert [n["state"] for n in status["nodes"]] == ["failed", "skipped", "skipped", "skipped", "skipped"]
            script = status["nodes"][0]
            assert script["error"]["type"] == "LlmUnavailable" and not script["error"]["nonRetryable"], script
            assert script["attempt"] == 3 == requests[0], (script, requests)  # transient: retried, then given up

            history = await stack.client.get_workflow_handle(job_id).fetch_history()
            scheduled = scheduled_activities(history)
            gpu_queue = stack.settings.temporal.gpu_task_queue
            assert not [s for s in scheduled if s[2] == gpu_queue], scheduled
            assert [s[0] for s in scheduled] == ["script", "register_partial"]
            assert history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
