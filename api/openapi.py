"""The error answers of each operation, declared in the OpenAPI document.

Errors other than 422 are `{"detail": "<sentence>"}` (`api/errors.py`); FastAPI declares 422
itself (`HTTPValidationError`, `detail[].loc` names the field) on every route with inputs.
`install` adds the others to the generated document: every `/api` operation can answer 401
(no or a bad credential) and 503 (a dependency is down), one with a body 400 (FastAPI's answer
to a body it cannot parse), one with a path parameter 404, an admin one 403, plus what
`OPERATION_ERRORS` lists. The schema fuzz test (`tests/api/test_schemathesis.py`) fails on any
status an operation answers undeclared.
"""

from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    """Any error other than 422: one human sentence."""

    detail: str = Field(description="what went wrong, as a sentence")


class Health(BaseModel):
    """`GET /healthz`: 200 when every dependency answers, 503 (`degraded`) otherwise."""

    status: Literal["ok", "degraded"]
    checks: dict[str, str] = Field(description="`ok` or `unavailable: <error>` per dependency")


DESCRIPTIONS: dict[int, str] = {
    400: "The body could not be parsed (JSON that is not UTF-8, a malformed multipart form)",
    401: "No credential, a malformed `Authorization` header, or an unknown, revoked or expired key or session",
    403: "Not allowed: an admin-only operation, or an `s3://` URI that is not one of the caller's uploads",
    404: "No such job, batch, profile, preset, upload or worker (or it belongs to another user)",
    409: "The job, batch or profile is not in a state that allows this operation, or the preset exists or is one too many",
    413: "An upload is larger than the server accepts",
    415: "An upload's file type is not supported",
    429: "Too many of the caller's jobs are queued or running; retry after `Retry-After` seconds",
    503: "A dependency (Temporal, PostgreSQL, object storage) is unavailable, or no live worker can run the job",
}

# Statuses beyond the ones that follow from an operation's path, by (method, path).
OPERATION_ERRORS: dict[tuple[str, str], tuple[int, ...]] = {
    # 403: an `s3://` that is not the caller's upload; 429: the per-user cap on open jobs
    ("post", "/api/generate"): (403, 429),
    ("post", "/api/train"): (403, 429),
    ("post", "/api/plan"): (403,),
    ("post", "/api/jobs/{job_id}/resubmit"): (403, 429),
    ("post", "/api/jobs/{job_id}/cancel"): (409,),
    ("post", "/api/jobs/{job_id}/retry"): (409,),
    # 409: the job is not waiting for a review (none asked, not yet, or already decided)
    ("post", "/api/jobs/{job_id}/script"): (409,),
    ("delete", "/api/jobs/{job_id}"): (409,),
    ("delete", "/api/profiles/{profile_id}"): (409,),
    ("post", "/api/uploads"): (413, 415),
    ("post", "/api/presets"): (409,),
    ("post", "/api/batches"): (403, 429),
    ("post", "/api/batches/{batch_id}/cancel"): (409,),
    ("delete", "/api/batches/{batch_id}"): (409,),
}

_REF = "#/components/schemas/ErrorDetail"


def operation_errors(method: str, path: str, has_body: bool = False) -> list[int]:
    """The non-422 error statuses the operation `method path` can answer with."""
    if not path.startswith("/api/"):
        return []
    codes = {401, 503, *OPERATION_ERRORS.get((method, path), ())}
    if has_body:
        codes.add(400)
    if "{" in path:  # a path parameter names something that may not exist
        codes.add(404)
    if path.startswith("/api/admin/"):
        codes.add(403)
    return sorted(codes)


def add_error_responses(schema: dict[str, Any]) -> dict[str, Any]:
    """Declare each operation's error statuses (with the `ErrorDetail` body) in an OpenAPI document."""
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for code in operation_errors(method, path, has_body="requestBody" in operation):
                responses.setdefault(
                    str(code),
                    {"description": DESCRIPTIONS[code], "content": {"application/json": {"schema": {"$ref": _REF}}}},
                )
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorDetail"] = ErrorDetail.model_json_schema(ref_template="#/components/schemas/{model}")
    return schema


def install(app: FastAPI) -> None:
    """Generate the app's OpenAPI document with the error responses added (FastAPI's documented hook)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_error_responses(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
