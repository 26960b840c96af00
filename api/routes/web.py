"""The web page (`/`, `/static/…`) and the live job-status WebSocket (`/ws/jobs/{jobId}`).

The WebSocket follows the job's Temporal history with a long poll (`wait_new_event=True`), so
every scheduled/started/completed/failed event reaches the browser as soon as it is written.
Heartbeat progress never reaches the history, so while the run is open the stream also
describes it every `DESCRIBE_INTERVAL` seconds. Each message is the same JSON as
`GET /api/status/{jobId}` (built by the same fold) and is sent only when it changed; after the
final state the server closes with 1000. The browser never polls.
"""

import asyncio
import logging
import re
from pathlib import Path

from fastapi import APIRouter, WebSocket
from fastapi.responses import FileResponse
from starlette.websockets import WebSocketDisconnect, WebSocketState
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode

from api.deps import ID_PATTERN, Services, principal_of
from api.errors import ApiError
from api.status import fold_status, is_open
from core import repo

logger = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
STATIC_DIR = WEB_DIR / "static"
DESCRIBE_INTERVAL = 0.5  # seconds between `describe()` calls while a run is open (heartbeat progress)
CLOSE_UNAUTHORIZED = 4401  # application close codes mirror HTTP statuses (4000 + status)
CLOSE_NOT_FOUND = 4404
CLOSE_UNAVAILABLE = 1011
_NO_CACHE = {"Cache-Control": "no-cache"}  # revalidate (ETag), so a deploy is seen at once

router = APIRouter(tags=["web"])


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    """The single page."""
    return FileResponse(WEB_DIR / "index.html", media_type="text/html", headers=_NO_CACHE)


@router.get("/static/{path:path}", include_in_schema=False)
async def static(path: str) -> FileResponse:
    """The page's scripts, styles and icons (no CDN: the machine may be offline)."""
    try:
        file = (STATIC_DIR / path).resolve()
        found = file.is_relative_to(STATIC_DIR) and file.is_file()
    except (OSError, ValueError):  # e.g. a NUL byte in the path
        found = False
    if not found:
        raise ApiError(404, f"no static file '{path[:100]}'")
    return FileResponse(file, headers=_NO_CACHE)


@router.websocket("/ws/jobs/{job_id}")
async def job_updates(websocket: WebSocket, job_id: str) -> None:
    """Stream the job's status JSON whenever it changes; close after the final state.

    Authenticated by the session cookie (or a bearer header from non-browser clients); the
    handshake is accepted first so that a refusal can carry a close code and reason.
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
    async with services.sessions() as session:
        row = await repo.get_job(session, principal.user_id, job_id)
    if row is None:
        await _close(websocket, CLOSE_NOT_FOUND, f"job '{job_id}' not found")
        return
    try:
        await _stream(websocket, services, job_id)
    except WebSocketDisconnect:
        return
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            await _close(websocket, CLOSE_NOT_FOUND, f"no workflow history for job '{job_id}'")
        else:
            logger.warning("Temporal call failed while streaming %s: %s", job_id, err)
            await _close(websocket, CLOSE_UNAVAILABLE, "the workflow service (Temporal) is unavailable")


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
