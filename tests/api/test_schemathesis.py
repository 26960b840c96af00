"""Fuzz the HTTP API from its own OpenAPI document (schemathesis) against the real stack.

Every operation of `api.main.app.openapi()` gets requests generated from the document, valid
ones (positive) and, where its inputs can be broken, invalid ones (negative), sent in-process
to the app of a `stack_factory()` stack (real Temporal, PostgreSQL, S3, both workers) with the
stack user's API key (the admin operations with an admin's). Every answer must not be a 5xx
(an exception the app raises counts as one), must have a status the operation declares
(`api/openapi.py`), and a body and content type that match the declaration; an invalid request
must be refused with a 4xx. Job routes also get the id of a real job of the caller.

Driven by hypothesis directly rather than `schema.parametrize()` + `case.call_and_validate()`:
schemathesis's ASGI transport runs the app on an event loop thread of its own and starts the
app's lifespan there, while the stack's services (database engine, Temporal client) and both
workers live on the test session's loop. So hypothesis draws cases (`operation.as_strategy`)
in a worker thread, each request goes through `httpx.ASGITransport` on the session loop
(`run_coroutine_threadsafe`), and `case.validate_response` runs schemathesis's checks on the
answer. The schema comes from `from_dict` for the same reason (`from_asgi` starts a lifespan).
Runs are derandomized; a failure prints a curl command that reproduces it, and `FOUND` replays
what an earlier run found so that it keeps failing until fixed.

Not fuzzed: the WebSocket `/ws/jobs/{jobId}` (OpenAPI cannot describe it; the browser tests
drive it), the web page and `/static` (files, `include_in_schema=False`) and `/metrics`
(Prometheus text, not in the schema). Jobs that a valid `POST /api/generate` starts render
for real, with their duration capped at 5 s (the shortest allowed) to keep the GPU worker's
renders short (a longer valid duration exercises nothing more in the API).
"""

import asyncio
import json
import logging
from collections import Counter
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.schemas import APIOperation

from api.main import app

pytestmark = pytest.mark.integration
logger = logging.getLogger(__name__)

SCHEMA = schemathesis.openapi.from_dict(app.openapi())
OPERATIONS: list[APIOperation] = [result.ok() for result in SCHEMA.get_all_operations()]
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]
MAX_EXAMPLES = 20  # per operation and mode; twice that for operations with a body (more to vary)
SHORT_RENDER_SECONDS = 5.0  # the shortest video the API accepts
REQUEST_TIMEOUT = 60.0
# Requests that failed once (found by this fuzz, or by probing around what it found), replayed
# first on every run (hypothesis `@example`) so that a bug found by chance stays found until it is
# fixed. Keyed by operation label; positive mode only.
FOUND: dict[str, list[dict[str, Any]]] = {
    "POST /api/generate": [{"body": {"topic": "x", "profileId": "\x00"}}, {"body": {"topic": "a\x00b"}}],
    "POST /api/train": [{"body": {"images": [""], "consent": True}}],
    "POST /api/plan": [{"body": {"mode": "train_only", "images": [""], "consent": True}}],
    "GET /api/jobs": [{"query": {"cursor": ""}}],
    "GET /api/status/{job_id}": [{"path_parameters": {"job_id": "a\x00b"}}],
    "GET /api/profiles/{profile_id}": [{"path_parameters": {"profile_id": "a\x00b"}}],
}
_REQUEST_ARGS = ("method", "url", "headers", "params", "cookies", "json", "data", "files")


def _short_render(case: Case) -> Case:
    """Cap a valid render duration (absent: the 12 s default) at the shortest allowed, 5 s."""
    if not isinstance(case.body, dict):
        return case
    if case.operation.path == "/api/generate":
        bodies = [case.body]
    elif case.operation.path == "/api/batches":  # each item, and the fields every job of the product shares
        items = case.body.get("items")
        bodies = [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []
        if "topics" in case.body:
            bodies.append(case.body.setdefault("common", {}))
    else:
        return case
    for body in bodies:
        options = body.setdefault("options", {}) if isinstance(body, dict) else None
        duration = options.get("durationSeconds") if isinstance(options, dict) else "n/a"
        if options is not None and (duration is None or (type(duration) in (int, float) and 0 < duration <= 120)):
            options["durationSeconds"] = min(duration or SHORT_RENDER_SECONDS, SHORT_RENDER_SECONDS)
    return case


async def _send(client: httpx.AsyncClient, kwargs: dict[str, Any]) -> httpx.Response:
    """Serialize like schemathesis's requests transport does (JSON, multipart, query), send it with httpx."""
    prepared = requests.Request(**{k: v for k, v in kwargs.items() if k in _REQUEST_ARGS}).prepare()
    body = prepared.body.encode() if isinstance(prepared.body, str) else prepared.body
    assert prepared.method is not None and prepared.url is not None
    return await client.request(prepared.method, prepared.url, headers=dict(prepared.headers), content=body)


def _cases(
    operation: APIOperation, mode: GenerationMode, job_id: str | None, batch_id: str | None = None
) -> st.SearchStrategy[Case]:
    """Generated cases; with `job_id` (`batch_id`), some of them name that real job (batch) instead of a random id."""
    cases = operation.as_strategy(generation_mode=mode)
    for name, value in (("job_id", job_id), ("batch_id", batch_id)):
        if value is not None and f"{{{name}}}" in operation.path:
            cases = st.one_of(cases, operation.as_strategy(generation_mode=mode, path_parameters={name: value}))
    return cases.map(_short_render)


def _fuzz(operation: APIOperation, mode: GenerationMode, cases: st.SearchStrategy[Case], client: httpx.AsyncClient,
          key: str, loop: asyncio.AbstractEventLoop) -> Counter[int]:  # fmt: skip
    """Run hypothesis over `cases` in this (non-event-loop) thread, sending on `loop`; the statuses answered."""
    checks = [*CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS
    headers = {"Authorization": f"Bearer {key}"}
    statuses: Counter[int] = Counter()

    @settings(
        max_examples=MAX_EXAMPLES * (2 if "requestBody" in operation.definition.raw else 1),
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def run(case: Case) -> None:
        kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
        future = asyncio.run_coroutine_threadsafe(_send(client, kwargs), loop)
        try:
            response = future.result(timeout=REQUEST_TIMEOUT)
        except Exception as err:  # the app raised instead of answering: what a client sees as a 500
            raise AssertionError(
                f"{operation.label} raised {err!r} (a 500 to a client)\n{case.as_curl_command(headers=headers)}"
            ) from err
        statuses[response.status_code] += 1
        case.validate_response(response, checks=checks, headers=headers)

    if mode is GenerationMode.POSITIVE:
        for found in FOUND.get(operation.label, []):
            run = example(case=operation.Case(media_type="application/json" if "body" in found else None, **found))(run)
    run()
    return statuses


def _can_break(operation: APIOperation) -> bool:
    """Whether a request can violate the operation's schema (a lone unconstrained string parameter cannot)."""
    if "requestBody" in operation.definition.raw:
        return True
    for parameter in operation.definition.raw.get("parameters", []):
        schema = parameter.get("schema", {})
        if schema.get("type", "string") != "string" or set(schema) - {"type", "title", "description", "examples"}:
            return True
    return False


FUZZ = [
    pytest.param(operation, mode, id=f"{operation.label} {mode}")
    for operation in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or _can_break(operation)
]


@pytest.mark.parametrize(("operation", "mode"), FUZZ)
async def test_operation_conforms_to_its_schema(stack_factory, operation: APIOperation, mode: GenerationMode) -> None:
    async with stack_factory() as stack:
        admin = operation.path.startswith("/api/admin/")
        api = await stack.client_for(f"{stack.user_id}-admin", admin=True) if admin else stack.api
        key = api.headers["Authorization"].removeprefix("Bearer ")
        job_id = None
        if "job" in operation.path:  # a real job, so that job routes also answer 200/202/409, not only 404
            started = await stack.api.post("/api/generate", json={"topic": "fuzz", "options": {"durationSeconds": 5}})
            assert started.status_code == 202, started.text
            job_id = started.json()["jobId"]
        batch_id = None
        if "{batch_id}" in operation.path:  # likewise a real batch for the batch routes
            body = {"topics": ["fuzz"], "common": {"options": {"durationSeconds": 5}}}
            started = await stack.api.post("/api/batches", json=body)
            assert started.status_code == 202, started.text
            batch_id = started.json()["batchId"]
        transport = httpx.ASGITransport(app=stack.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            cases = _cases(operation, mode, job_id, batch_id)
            loop = asyncio.get_running_loop()
            statuses = await asyncio.to_thread(_fuzz, operation, mode, cases, client, key, loop)
        logger.info("%s %s: answers by status %s", operation.label, mode, dict(sorted(statuses.items())))
        assert statuses


UNAUTHENTICATED = [
    ("GET", "/api/capabilities", None),
    ("GET", "/api/jobs", None),
    ("GET", "/api/status/{job_id}", None),
    ("POST", "/api/generate", {"topic": "who am I", "options": {"durationSeconds": 5}}),
    ("POST", "/api/plan", {"mode": "generate", "topic": "who am I"}),
    ("GET", "/api/profiles", None),
    ("GET", "/api/presets", None),
    ("GET", "/api/admin/workers", None),
    ("GET", "/api/session", None),
]


@pytest.mark.parametrize(("method", "route", "body"), UNAUTHENTICATED, ids=[f"{m} {r}" for m, r, _ in UNAUTHENTICATED])
async def test_calls_without_a_valid_credential_are_401(stack_factory, method: str, route: str, body: Any) -> None:
    assert "401" in app.openapi()["paths"][route][method.lower()]["responses"], f"{method} {route} does not declare 401"
    path = route.format(job_id="job-0123456789abcdef")
    async with stack_factory() as stack:
        transport = httpx.ASGITransport(app=stack.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as anonymous:
            for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer not-a-key"}):
                response = await anonymous.request(method, path, json=body, headers=headers)
                assert response.status_code == 401, (headers, response.status_code, response.text)
                assert response.headers["WWW-Authenticate"].startswith("Bearer"), response.headers
                assert isinstance(response.json()["detail"], str), json.dumps(response.json())
        # The same call with the stack's key is not refused for authentication.
        assert (await stack.api.request(method, path, json=body)).status_code != 401
