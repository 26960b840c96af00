"""The live job-status stream behind the WebSocket `/ws/jobs/{jobId}`.

The stream sends what the job's follower (`api.followers`) folds: it long-polls the history
(`wait_new_event=True`), so every scheduled/started/completed/failed event reaches the browser
as soon as it is written, and describes the run (heartbeat progress) while an activity may be
pending. Every WebSocket and status read of the job share that one follower. Each message is the
same JSON as `GET /api/status/{jobId}` and is sent only when it changed; after the final state
the server closes with 1000. The browser never polls. A batch's job that its batch
has not started yet has no history to follow: it gets its `queued` status until the batch starts it.
"""

import asyncio
import logging
import re

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState
from temporalio.service import RPCError, RPCStatusCode

from api.batch_jobs import unstarted_state, unstarted_status
from api.deps import ID_PATTERN, Services, principal_of
from api.errors import ApiError
from api.followers import StatusFollowers
from api.owned import find_own_job
from core.db import Job
from schemas.api import JobState

logger = logging.getLogger(__name__)

BATCH_START_POLL = 1.0  # seconds between checks whether its batch started a waiting job
CLOSE_UNAUTHORIZED = 4401  # application close codes mirror HTTP statuses (4000 + status)
CLOSE_NOT_FOUND = 4404
CLOSE_UNAVAILABLE = 1011


async def serve(websocket: WebSocket, job_id: str) -> None:
    """Authenticate the connection, check the job is the caller's, then stream its status until it ends.

    The handshake is accepted first so that a refusal can carry a close code and reason.
    """
    services: Services = websocket.app.state.services
    await websocket.accept()
    try:
        principal = await principal_of(websocket)
    except ApiError:
        principal = None
    if principal is None:
        await _close(websocket, CLOSE_UNAUTHORIZED, "sign in first: no valid session or API key")
        return
    if not re.fullmatch(ID_PATTERN, job_id):
        await _close(websocket, CLOSE_NOT_FOUND, "no such job")
        return
    row = await find_own_job(services, principal.user_id, job_id)
    if row is None:
        await _close(websocket, CLOSE_NOT_FOUND, f"job '{job_id}' not found")
        return
    try:
        if row.batch_id is not None and not await _until_started(websocket, services, row):
            return
        await _stream(websocket, websocket.app.state.followers, job_id)
    except WebSocketDisconnect:
        return
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            await _close(websocket, CLOSE_NOT_FOUND, f"no workflow history for job '{job_id}'")
        else:
            logger.warning("Temporal call failed while streaming %s: %s", job_id, err)
            await _close(websocket, CLOSE_UNAVAILABLE, "the workflow service (Temporal) is unavailable")


async def _until_started(websocket: WebSocket, services: Services, row: Job) -> bool:
    """A batch's job whose workflow the batch has not started: send its status, and wait until it starts.

    Returns False when the stream is over: the job will never start (its status, `cancelled`, was
    sent and the socket closed) or the browser left.
    """
    listener = asyncio.create_task(_until_disconnect(websocket))
    last: JobState | None = None
    try:
        while (state := await unstarted_state(services.temporal, row)) is not None:
            if state != last:
                await websocket.send_text(unstarted_status(row, state).model_dump_json())
                last = state
            if state != "queued":
                await _close(websocket, 1000, f"job {state}")
                return False
            done, _ = await asyncio.wait({listener}, timeout=BATCH_START_POLL)
            if done:
                return False
        return True
    finally:
        listener.cancel()


async def _stream(websocket: WebSocket, followers: StatusFollowers, job_id: str) -> None:
    """Send each new status of the job (its follower's, shared with every reader) until it ends."""
    listener = asyncio.create_task(_until_disconnect(websocket))
    updates = followers.watch(job_id)
    try:
        while True:
            following = asyncio.ensure_future(anext(updates))
            done, _ = await asyncio.wait({listener, following}, return_when=asyncio.FIRST_COMPLETED)
            if listener in done:
                following.cancel()
                return
            try:
                status = following.result()
            except StopAsyncIteration:
                return
            await websocket.send_text(status.model_dump_json())
            if status.status not in ("queued", "running"):
                await _close(websocket, 1000, f"job {status.status}")
                return
    finally:
        listener.cancel()
        await updates.aclose()


async def _until_disconnect(websocket: WebSocket) -> None:
    """Return when the browser goes away (it sends nothing we need)."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state == WebSocketState.CONNECTED:
        # A close frame's reason is limited to 123 bytes.
        await websocket.close(code=code, reason=reason.encode()[:120].decode(errors="ignore"))
