"""Request-body limits enforced while the body streams in, before anything is buffered.

Starlette parses a multipart body completely (spooling files to disk) before a route sees
it, so a per-file check in the route alone would still accept a 10 GB request first. This
ASGI middleware refuses an upload whose declared `Content-Length` is too large at once, and
stops reading a body without one as soon as it passes the cap.
"""

import json
from collections.abc import Callable
from typing import Final

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPART_SLACK: Final = 64 * 1024  # boundaries and part headers around the files


def too_large(limit: int) -> str:
    """The 413 message."""
    return f"the request body is larger than the {limit / (1024 * 1024):.1f} MiB this endpoint accepts"


class BodyLimit:
    """Caps the body of requests whose path starts with `prefix` at `limit()` bytes."""

    def __init__(self, app: ASGIApp, prefix: str, limit: Callable[[], int]) -> None:
        self.app = app
        self.prefix = prefix
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on with a byte-counting `receive`, or answer 413 at once."""
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(send, limit)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI re-raises an HTTPException met while parsing the body: a 413, not a 400.
                    raise HTTPException(413, too_large(limit))
            return message

        await self.app(scope, counting_receive, send)


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps({"detail": too_large(limit)}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]  # fmt: skip
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
