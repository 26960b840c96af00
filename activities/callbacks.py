"""Completion callbacks (CPU queue): POST a job's final status, signed, to its `callbackUrl`.

The body is `CallbackPayload` as JSON; `X-MySpinBot-Signature: sha256=<hex>` is the HMAC-SHA256
of the raw body under `APP_CALLBACKS__SECRET`. Temporal retries the activity with backoff (the
workflow's retry policy), so a delivery survives receiver outages and worker restarts; a 4xx
answer other than 408/429 means the receiver will never accept it and is not retried.
"""

import asyncio
import hashlib
import hmac
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.netguard import non_public_address
from core.settings import CallbackSettings
from schemas import names
from schemas.api import CallbackPayload, CallbackVideo, JobError
from schemas.tasks import CallbackInput

SIGNATURE_HEADER = "X-MySpinBot-Signature"
RETRYABLE_CLIENT_ERRORS = frozenset({408, 429})
MAX_RETRY_AFTER = timedelta(minutes=5)


def sign(secret: str, body: bytes) -> str:
    """The signature header value for `body`: `sha256=<hex HMAC-SHA256>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """Whether `header` is the signature of `body` (constant-time); what a receiver runs."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


def payload(inp: CallbackInput) -> CallbackPayload:
    """The JSON body a receiver gets."""
    return CallbackPayload(
        job_id=inp.job_id,
        status=inp.status,
        error=JobError(stage=inp.error_stage, message=inp.error) if inp.error is not None else None,
        video=CallbackVideo(**inp.video.model_dump(exclude={"rendering"})) if inp.video else None,
    )


class CallbackActivities:
    """`callbacks.notify` with the signing secret and (for tests) the HTTP transport injected."""

    def __init__(self, settings: CallbackSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._settings = settings
        self._transport = transport

    @activity.defn(name=names.NOTIFY_CALLBACK)
    async def notify(self, inp: CallbackInput) -> None:
        """POST the signed final status once; raise so Temporal retries, or non-retryably if it never can work."""
        if self._settings.secret is None:
            raise ApplicationError(
                "APP_CALLBACKS__SECRET is not set on the CPU worker",
                type=names.ERR_CALLBACK_NOT_CONFIGURED,
                non_retryable=True,
            )
        body = payload(inp).model_dump_json(exclude_none=True).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "MySpinBot-callbacks",
            SIGNATURE_HEADER: sign(self._settings.secret.get_secret_value(), body),
        }
        host = urlsplit(inp.url).netloc  # never log the full URL: its query may carry a token
        if not self._settings.allow_private_hosts:  # checked again here: DNS may have changed since submission
            private = await asyncio.to_thread(non_public_address, inp.url)
            if private is not None:
                raise ApplicationError(
                    f"callback host {host} resolves to {private}, which is not a public address",
                    type=names.ERR_CALLBACK_REFUSED,
                    non_retryable=True,
                )
        try:
            async with httpx.AsyncClient(
                timeout=self._settings.timeout_seconds, transport=self._transport, follow_redirects=False
            ) as client:
                response = await client.post(inp.url, content=body, headers=headers)
        except httpx.HTTPError as err:
            raise ApplicationError(
                f"callback to {host} failed: {type(err).__name__}: {err}", type=names.ERR_CALLBACK_UNREACHABLE
            ) from err
        _raise_for_status(response, host)
        activity.logger.info("callback for %s (%s) delivered to %s", inp.job_id, inp.status, host)


def _raise_for_status(response: httpx.Response, host: str) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    message = f"callback receiver {host} answered {status}"
    if 400 <= status < 500 and status not in RETRYABLE_CLIENT_ERRORS:
        raise ApplicationError(message, type=names.ERR_CALLBACK_REJECTED, non_retryable=True)
    raise ApplicationError(message, type=names.ERR_CALLBACK_FAILED, next_retry_delay=_retry_after(response))


def _retry_after(response: httpx.Response) -> timedelta | None:
    """The receiver's `Retry-After` in seconds (capped); None to use the retry policy's backoff."""
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None  # absent, or an HTTP date: back off as the retry policy says
    return max(timedelta(seconds=1), min(timedelta(seconds=seconds), MAX_RETRY_AFTER))
