"""The live job-status stream behind the WebSocket `/ws/jobs/{jobId}`.

The stream follows the job's Temporal history with a long poll (`wait_new_event=True`), so
every scheduled/started/completed/failed event reaches the browser as soon as it is written.
Heartbeat progress never reaches the history, so while the run is open the stream also
describes it every `DESCRIBE_INTERVAL` seconds. Each message is the same JSON as
`GET /api/status/{jobId}` (built by the same fold) and is sent only when it changed; after the
final state the server closes with 1000. The browser never polls. A batch's job that its batch
has not started yet has no history to follow: it gets its `queued` status until the batch starts it.
"""

import asyncio
import logging
import re

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode

from api.batch_jobs import unstarted_state, unstarted_status
from api.deps import ID_PATTERN, Services, principal_of
from api.errors import ApiError
from api.owned import find_own_job
from api.status import fold_status, is_open
from core.db import Job
from schemas.api import JobState

logger = logging.getLogger(__name__)

DESCRIBE_INTERVAL = 0.5  # seconds between `describe()` calls while a run is open (heartbeat progress)
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
        await _stream(websocket, services, job_id)
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


async def _stream(websocket: WebSocket, services: Services, job_id: str) -> None:
    handle = services.temporal.get_workflow_handle(job_id)
    events: list[HistoryEvent] = []
    woken = asyncio.Event()
    follower = asyncio.create_task(_follow(handle, events, woken))
    listener = asyncio.create_task(_until_disconnect(websocket))
    last: str | None = None
    try:
        while True:
            waiting = {listener, asyncio.create_task(woken.wait())} | ({follower} if not follower.done() else set())
            done, _ = await asyncio.wait(waiting, timeout=DESCRIBE_INTERVAL, return_when=asyncio.FIRST_COMPLETED)
            for task in waiting - {listener, follower}:
                task.cancel()
            if listener in done:
                return
            if follower in done and (error := follower.exception()) is not None:
                raise error
            woken.clear()
            if not events:
                continue
            history = WorkflowHistory(job_id, list(events))
            running = is_open(history)
            description = await handle.describe() if running else None
            status = await fold_status(history, description, services.temporal.data_converter)
            message = status.model_dump_json()
            if message != last:
                await websocket.send_text(message)
                last = message
            if not running:
                await _close(websocket, 1000, f"job {status.status}")
                return
    finally:
        follower.cancel()
        listener.cancel()


async def _follow(handle: WorkflowHandle[object, object], events: list[HistoryEvent], woken: asyncio.Event) -> None:
    """Append the run's history events as the server writes them (long poll until it closes)."""
    async for event in handle.fetch_history_events(wait_new_event=True):
        events.append(event)
        woken.set()


async def _until_disconnect(websocket: WebSocket) -> None:
    """Return when the browser goes away (it sends nothing we need)."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state == WebSocketState.CONNECTED:
        # A close frame's reason is limited to 123 bytes.
        await websocket.close(code=code, reason=reason.encode()[:120].decode(errors="ignore"))
