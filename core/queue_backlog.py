"""Task-queue backlog on `/metrics`: how many tasks wait on each queue, and how long the oldest has waited.

The numbers are Temporal's own (`DescribeTaskQueue` with `report_stats`), the ones KEDA's `temporal`
scaler sizes the workers on (`deploy/kubernetes/`), so a dashboard shows what the autoscaler sees.
Exported as OTel observable gauges, which `/metrics` renders through the Prometheus reader:
- `myspinbot_task_queue_backlog{queue, type}`: approximate count of tasks no worker has taken yet;
- `myspinbot_task_queue_backlog_age_seconds{queue, type}`: how long the oldest of them has waited.

One refresh is three RPCs (the CPU queue's workflow and activity tasks, the GPU queue's activity
tasks: it runs no workflows). Prometheus servers, dashboards and people with `curl` would
otherwise multiply them, so a reader describes its queues at most once per `max_age` seconds
however often it is asked; the gauges' callbacks only read the last result (they run inside
`generate_latest`, which is synchronous).
"""

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from core.settings import TemporalSettings

logger = logging.getLogger(__name__)

TaskKind = Literal["workflow", "activity"]

MAX_AGE_SECONDS = 10.0
DESCRIBE_TIMEOUT = timedelta(seconds=2)  # a scrape must answer even while Temporal does not
_QUEUE_TYPES: dict[TaskKind, TaskQueueType.ValueType] = {
    "workflow": TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    "activity": TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
}


@dataclass(frozen=True)
class QueueBacklog:
    """One task queue's backlog of one task type."""

    queue: str
    kind: TaskKind
    count: int
    age_seconds: float


class BacklogReader:
    """The backlog of some task queues, described at most once per `max_age` seconds."""

    def __init__(
        self,
        client: Client,
        namespace: str,
        queues: Sequence[tuple[str, TaskKind]],
        *,
        max_age: float = MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._queues = tuple(queues)
        self._max_age = max_age
        self._clock = clock
        self._lock = asyncio.Lock()
        self._read_at: float | None = None
        self.latest: tuple[QueueBacklog, ...] = ()

    @classmethod
    def for_settings(
        cls,
        client: Client,
        settings: TemporalSettings,
        *,
        max_age: float = MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> "BacklogReader":
        """The CPU queue (workflow and activity tasks) and the GPU queue (activity tasks)."""
        queues: list[tuple[str, TaskKind]] = [
            (settings.cpu_task_queue, "workflow"),
            (settings.cpu_task_queue, "activity"),
            (settings.gpu_task_queue, "activity"),
        ]
        return cls(client, settings.namespace, queues, max_age=max_age, clock=clock)

    async def refresh(self) -> tuple[QueueBacklog, ...]:
        """Describe the queues unless that was done less than `max_age` ago; the current backlog.

        Concurrent callers wait for the one refresh in flight instead of starting their own.
        """
        async with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self._max_age:
                self._read_at = now  # also when it fails: a server that is down is asked once a period
                self.latest = await self._describe_all()
        return self.latest

    def export(self) -> "BacklogReader":
        """Report this reader's latest backlog through the gauges for as long as the reader lives."""
        _exported.add(self)
        return self

    async def _describe_all(self) -> tuple[QueueBacklog, ...]:
        results = await asyncio.gather(*(self._describe(q, k) for q, k in self._queues), return_exceptions=True)
        found: list[QueueBacklog] = []
        for (queue, kind), result in zip(self._queues, results, strict=True):
            if isinstance(result, QueueBacklog):
                found.append(result)
            elif isinstance(result, Exception):  # no gauge rather than a stale one; the scrape still answers
                logger.warning("backlog of task queue %s (%s tasks) unavailable: %r", queue, kind, result)
            else:
                raise result
        return tuple(found)

    async def _describe(self, queue: str, kind: TaskKind) -> QueueBacklog:
        request = DescribeTaskQueueRequest(
            namespace=self._namespace,
            task_queue=TaskQueue(name=queue),
            task_queue_type=_QUEUE_TYPES[kind],
            report_stats=True,
        )
        response = await self._client.workflow_service.describe_task_queue(request, timeout=DESCRIBE_TIMEOUT)
        stats = response.stats
        age = stats.approximate_backlog_age.ToTimedelta().total_seconds()
        return QueueBacklog(queue, kind, stats.approximate_backlog_count, age)


# --- the gauges ---------------------------------------------------------------------------------

_exported: "weakref.WeakSet[BacklogReader]" = weakref.WeakSet()  # an app's reader goes with its app


def _observations(value: Callable[[QueueBacklog], float]) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(_options: CallbackOptions) -> Iterable[Observation]:
        # Keyed by queue and type: two readers of the same queues (tests' apps) must not emit twice.
        latest = {(b.queue, b.kind): b for reader in list(_exported) for b in reader.latest}
        return [Observation(value(b), {"queue": b.queue, "type": b.kind}) for b in latest.values()]

    return observe


_meter = metrics.get_meter("myspinbot")
BACKLOG = _meter.create_observable_gauge(
    "myspinbot_task_queue_backlog",
    callbacks=[_observations(lambda b: b.count)],
    description="Tasks waiting on a task queue that no worker has taken yet (Temporal's approximate count).",
)
BACKLOG_AGE = _meter.create_observable_gauge(
    "myspinbot_task_queue_backlog_age_seconds",
    callbacks=[_observations(lambda b: b.age_seconds)],
    unit="s",
    description="How long the oldest task waiting on a task queue has waited.",
)
