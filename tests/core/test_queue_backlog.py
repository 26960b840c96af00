"""Task-queue backlog on `/metrics`: Temporal's numbers for the queues, one DescribeTaskQueue round per 10 s."""

import asyncio
import re
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue, TaskQueueStats
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, DescribeTaskQueueResponse
from temporalio.client import Client

from core.queue_backlog import BacklogReader, QueueBacklog
from core.settings import TemporalSettings

SHORT = {"options": {"durationSeconds": 5, "resolution": "480p"}}


class FakeWorkflowService:
    """Answers DescribeTaskQueue with a fixed backlog per (queue, type) and counts the calls."""

    def __init__(self, backlog: dict[tuple[str, int], tuple[int, float]], failing: set[str] | None = None) -> None:
        self.backlog = backlog
        self.failing = failing or set()
        self.calls: list[tuple[str, int]] = []

    async def describe_task_queue(self, req: DescribeTaskQueueRequest, **_: Any) -> DescribeTaskQueueResponse:
        self.calls.append((req.task_queue.name, req.task_queue_type))
        await asyncio.sleep(0.01)  # concurrent callers overlap with the call in flight
        if req.task_queue.name in self.failing:
            raise RuntimeError("unavailable")
        count, age = self.backlog.get((req.task_queue.name, req.task_queue_type), (0, 0.0))
        duration = Duration()
        duration.FromTimedelta(timedelta(seconds=age))
        stats = TaskQueueStats(approximate_backlog_count=count, approximate_backlog_age=duration)
        return DescribeTaskQueueResponse(stats=stats)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


WORKFLOW, ACTIVITY = TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
QUEUES = TemporalSettings(cpu_task_queue="cpu-q", gpu_task_queue="gpu-q")


def reader_for(service: FakeWorkflowService, clock: Clock) -> BacklogReader:
    client: Any = SimpleNamespace(workflow_service=service)
    return BacklogReader.for_settings(client, QUEUES, clock=clock)


async def test_the_cpu_queue_is_read_for_both_task_types_and_the_gpu_queue_for_activities() -> None:
    service = FakeWorkflowService({("gpu-q", ACTIVITY): (3, 12.5), ("cpu-q", WORKFLOW): (1, 0.5)})
    backlog = await reader_for(service, Clock()).refresh()
    assert sorted(service.calls) == sorted([("cpu-q", WORKFLOW), ("cpu-q", ACTIVITY), ("gpu-q", ACTIVITY)])
    assert set(backlog) == {
        QueueBacklog("cpu-q", "workflow", 1, 0.5),
        QueueBacklog("cpu-q", "activity", 0, 0.0),
        QueueBacklog("gpu-q", "activity", 3, 12.5),
    }


async def test_one_describe_round_per_ten_seconds_however_often_it_is_asked() -> None:
    service, clock = FakeWorkflowService({}), Clock()
    reader = reader_for(service, clock)
    await asyncio.gather(*(reader.refresh() for _ in range(5)))  # concurrent scrapes share the round in flight
    clock.now += 9.9
    await reader.refresh()
    assert len(service.calls) == 3
    clock.now += 0.1
    await reader.refresh()
    assert len(service.calls) == 6


async def test_a_queue_that_cannot_be_described_is_left_out_and_the_rest_reported() -> None:
    service, clock = FakeWorkflowService({("cpu-q", WORKFLOW): (2, 1.0)}, failing={"gpu-q"}), Clock()
    reader = reader_for(service, clock)
    backlog = await reader.refresh()
    assert {(b.queue, b.kind) for b in backlog} == {("cpu-q", "workflow"), ("cpu-q", "activity")}
    await reader.refresh()
    assert len(service.calls) == 3, "a failing server is asked once per period too"


def gauge(text: str, name: str, queue: str, kind: str) -> float | None:
    """The value of `name{queue=…,type=…}` in Prometheus text (labels in any order), None if absent."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{([^}}]*)\}} (\S+)", line)
        if match and f'queue="{queue}"' in match[1] and f'type="{kind}"' in match[1]:
            return float(match[2])
    return None


async def gpu_backlog(client: Client, queue: str) -> int:
    request = DescribeTaskQueueRequest(
        namespace=client.namespace, task_queue=TaskQueue(name=queue), task_queue_type=ACTIVITY, report_stats=True
    )
    return (await client.workflow_service.describe_task_queue(request)).stats.approximate_backlog_count


async def submit_renders(stack: Any, count: int) -> list[str]:
    job_ids = []
    for i in range(count):
        response = await stack.api.post("/api/generate", json={"topic": f"backlog {i}", **SHORT})
        assert response.status_code == 202, response.text
        job_ids.append(response.json()["jobId"])
    return job_ids


@pytest.mark.integration
async def test_renders_waiting_for_a_gpu_worker_show_as_gpu_backlog_on_metrics(
    stack_factory, temporal_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_ids: list[str] = []
    try:
        async with stack_factory(gpu=False) as stack:  # a GPU manifest is published, but nothing polls the GPU queue
            gpu_queue, cpu_queue = stack.settings.temporal.gpu_task_queue, stack.settings.temporal.cpu_task_queue
            job_ids = await submit_renders(stack, 3)
            deadline = asyncio.get_running_loop().time() + 60
            while await gpu_backlog(temporal_client, gpu_queue) < len(job_ids):
                assert asyncio.get_running_loop().time() < deadline, "the renders never reached the GPU queue"
                await asyncio.sleep(0.2)

            service = stack.app.state.services.temporal.workflow_service  # the API's own client
            describe = service.describe_task_queue
            calls: list[str] = []

            async def counted(req: DescribeTaskQueueRequest, **kwargs: Any) -> DescribeTaskQueueResponse:
                calls.append(req.task_queue.name)
                return await describe(req, **kwargs)

            monkeypatch.setattr(service, "describe_task_queue", counted)
            first = (await stack.api.get("/metrics")).text
            second = (await stack.api.get("/metrics")).text
            assert sorted(calls) == sorted([cpu_queue, cpu_queue, gpu_queue]), "two scrapes in 10 s: one round"

            count = gauge(first, "myspinbot_task_queue_backlog", gpu_queue, "activity")
            age = gauge(first, "myspinbot_task_queue_backlog_age_seconds", gpu_queue, "activity")
            assert count is not None and count >= 1, first
            assert age is not None and age > 0, first
            assert gauge(second, "myspinbot_task_queue_backlog", gpu_queue, "activity") == count
            assert gauge(first, "myspinbot_task_queue_backlog", cpu_queue, "workflow") is not None
            assert gauge(first, "myspinbot_task_queue_backlog", cpu_queue, "activity") is not None
    finally:
        for job_id in job_ids:  # they would wait for a GPU worker forever
            await temporal_client.get_workflow_handle(job_id).terminate("test over")
