"""Status served from one follower per job: each API process follows the jobs someone reads or watches.

A follower long-polls its job's history (`wait_new_event`) and folds every new event into the
status it keeps (`StatusFold`); while an activity of the job may be pending it also calls
`describe()`, at most once per `DESCRIBE_EVERY`, for the attempt, heartbeat progress and last
failure that never reach the history. `GET /api/status`, `GET /api/jobs/{id}` and every WebSocket
of the job read that status. The first read of a job folds its history directly (as every read
did before) and starts the follower; a follower ends when its run closes, after `IDLE` seconds
without a reader, or when `capacity` followers exist and it is the least recently read. State
still comes only from Temporal: nothing is written anywhere, and a restart loses nothing.
"""

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator

from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowExecutionDescription

from api.status import StatusFold, job_input_of, read_status
from schemas.api import JobStatus

logger = logging.getLogger(__name__)

DESCRIBE_EVERY = 1.0  # seconds between `describe()` calls while an activity may be pending
IDLE = 60.0  # seconds without a reader after which a follower ends


class Follower:
    """One job's status, kept current by following its history (and `describe()`)."""

    def __init__(self, client: Client, job_id: str) -> None:
        self.client = client
        self.job_id = job_id
        self.status: JobStatus | None = None
        self.version = 0
        self.closed = False  # the run closed: `status` is final
        self.error: BaseException | None = None
        self.watchers = 0
        self.last_read = time.monotonic()
        self.changed = asyncio.Condition()
        self.task: asyncio.Task[None] | None = None

    @property
    def done(self) -> bool:
        """Whether the follower stopped (closed run, idle, evicted, or an error)."""
        return self.task is not None and self.task.done()

    def touch(self) -> None:
        """Someone read the status now."""
        self.last_read = time.monotonic()

    def idle(self) -> bool:
        """No watcher, and no read for `IDLE` seconds."""
        return self.watchers == 0 and time.monotonic() - self.last_read > IDLE

    async def run(self) -> None:
        """Follow the run until it closes or nobody reads; publish every change."""
        try:
            await self._follow()
        except asyncio.CancelledError:
            raise
        except Exception as err:
            logger.info("status follower of %s stopped: %s", self.job_id, err)
            self.error = err
        finally:
            async with self.changed:
                self.version += 1
                self.changed.notify_all()

    async def _follow(self) -> None:
        handle = self.client.get_workflow_handle(self.job_id)
        events: list[HistoryEvent] = []
        arrived = asyncio.Event()
        reader = asyncio.create_task(_read_history(handle.fetch_history_events(wait_new_event=True), events, arrived))
        fold: StatusFold | None = None
        description: WorkflowExecutionDescription | None = None
        described_at = 0.0
        applied = 0
        try:
            while not self.idle():
                waited = asyncio.create_task(arrived.wait())
                wake = {waited} if reader.done() else {waited, reader}
                await asyncio.wait(wake, timeout=DESCRIBE_EVERY, return_when=asyncio.FIRST_COMPLETED)
                waited.cancel()
                arrived.clear()
                if reader.done() and (error := reader.exception()) is not None:
                    raise error
                for event in events[applied:]:
                    fold = fold or StatusFold(
                        await job_input_of(event, self.client.data_converter), event, self.client.data_converter
                    )
                    await fold.apply(event)
                applied = len(events)
                if fold is None:
                    continue
                if fold.pending_activities and time.monotonic() - described_at >= DESCRIBE_EVERY:
                    description, described_at = await handle.describe(), time.monotonic()
                await self._publish(await fold.status(description if fold.pending_activities else None))
                if fold.closed and reader.done():
                    self.closed = True
                    return
        finally:
            reader.cancel()

    async def _publish(self, status: JobStatus) -> None:
        if status == self.status:
            return
        async with self.changed:
            self.status = status
            self.version += 1
            self.changed.notify_all()


async def _read_history(
    stream: AsyncIterator[HistoryEvent], events: list[HistoryEvent], arrived: asyncio.Event
) -> None:
    """Append the run's events as the server writes them (the long poll ends when the run closes)."""
    async for event in stream:
        events.append(event)
        arrived.set()


class StatusFollowers:
    """The followers of one API process, least recently read first."""

    def __init__(self, client: Client, capacity: int) -> None:
        self.client = client
        self.capacity = capacity
        self._followers: OrderedDict[str, Follower] = OrderedDict()

    def __len__(self) -> int:
        return len(self._followers)

    async def read(self, job_id: str) -> JobStatus:
        """The job's status: its follower's when it has one, else a direct fold (which starts a follower).

        Raises:
            RPCError: Temporal does not know the job (NOT_FOUND) or cannot be reached.
        """
        follower = self._followers.get(job_id)
        if follower is not None and not follower.done and follower.status is not None:
            follower.touch()
            self._followers.move_to_end(job_id)
            return follower.status
        status = await read_status(self.client, job_id)
        if status.status in ("queued", "running"):
            self._follow(job_id)
        return status

    async def watch(self, job_id: str) -> AsyncGenerator[JobStatus, None]:
        """Every new status of the job until its run closes; a follower that ends early is replaced.

        Raises:
            RPCError: as `read` (the first status is a direct fold), or when following fails.
        """
        status = await self.read(job_id)  # its follower's status when it has one, else a direct fold
        yield status
        last = status
        while status.status in ("queued", "running"):
            follower = self._follow(job_id)
            follower.watchers += 1
            try:
                seen = -1
                while not follower.done or seen < follower.version:
                    async with follower.changed:
                        await follower.changed.wait_for(lambda f=follower, s=seen: f.version > s)  # type: ignore[misc]
                        seen = follower.version
                    if follower.status is not None and follower.status != last:
                        last = status = follower.status
                        yield status
                    if follower.done:
                        break
            finally:
                follower.watchers -= 1
            if follower.error is not None:
                raise follower.error
            if follower.closed:
                return
            # Evicted or idle: follow again from the start, unless the run closed meanwhile.
            status = await read_status(self.client, job_id)
            if status != last:
                last = status
                yield status

    def _follow(self, job_id: str) -> Follower:
        follower = self._followers.get(job_id)
        if follower is not None and not follower.done:
            follower.touch()
            self._followers.move_to_end(job_id)
            return follower
        while len(self._followers) >= self.capacity:
            _, evicted = self._followers.popitem(last=False)
            if evicted.task is not None:
                evicted.task.cancel()
        follower = Follower(self.client, job_id)
        follower.task = asyncio.create_task(follower.run(), name=f"status-follower-{job_id}")
        follower.task.add_done_callback(lambda _task: self._forget(follower))
        self._followers[job_id] = follower
        return follower

    def _forget(self, follower: Follower) -> None:
        if self._followers.get(follower.job_id) is follower:
            del self._followers[follower.job_id]

    async def close(self) -> None:
        """Stop every follower (the API shuts down)."""
        tasks = [f.task for f in self._followers.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._followers.clear()
