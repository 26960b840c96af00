"""`fold_status` and the retry reset point over recorded histories: fast, no server (the integration tests cover live runs)."""

import json
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter

from api.reset import reset_point
from api.status import StatusFold, fold_status, job_input
from schemas import names


def _pipeline_history(path: Path) -> bool:
    started = json.loads(path.read_text(encoding="utf-8"))["events"][0]["workflowExecutionStartedEventAttributes"]
    return bool(started["workflowType"]["name"] == names.PIPELINE_WORKFLOW)


# The jobs' histories (a batch's own history has no job status to fold).
HISTORIES = [p for p in sorted((Path(__file__).parent.parent / "histories").glob("*.json")) if _pipeline_history(p)]


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))


def cut(history: WorkflowHistory, last_event_id: int) -> WorkflowHistory:
    """The history as it was while the run was still going, up to `last_event_id`."""
    return WorkflowHistory(history.workflow_id, [e for e in history.events if e.event_id <= last_event_id])


def scheduled_event(history: WorkflowHistory, activity_id: str) -> int:
    return next(
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_id == activity_id
    )


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.name)
async def test_a_finished_history_folds_to_completed_nodes_in_graph_order(path: Path, snapshot) -> None:
    history = load(path)
    status = await fold_status(history, None, pydantic_data_converter)
    job = await job_input(history, pydantic_data_converter)
    assert status.status == "completed" and status.error is None
    assert [n.id for n in status.nodes] == job.graph.topological_order()
    assert all(n.state == "completed" and n.attempt == 1 and n.finished_at for n in status.nodes)
    assert reset_point(history, {n.id for n in job.graph.nodes}) is None, "nothing to retry"
    assert [(n.id, n.task, n.plane, n.state) for n in status.nodes] == snapshot


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.name)
async def test_a_run_cut_at_the_render_is_running_with_the_render_scheduled_and_resets_there(path: Path) -> None:
    history = load(path)
    render = scheduled_event(history, "render")
    status = await fold_status(cut(history, render), None, pydantic_data_converter)
    states = {n.id: n.state for n in status.nodes}
    assert status.status == "running"
    assert states["render"] == "scheduled" and states["register"] == "pending"
    assert states["script"] == "completed" and states["select"] == "completed"
    scheduled_by = next(e for e in history.events if e.event_id == render).activity_task_scheduled_event_attributes
    job = await job_input(history, pydantic_data_converter)
    assert reset_point(cut(history, render), {n.id for n in job.graph.nodes}) == (
        scheduled_by.workflow_task_completed_event_id
    ), "a retry re-runs the render and keeps what completed before it"


async def test_a_run_cut_before_anything_was_scheduled_is_queued_or_running_with_every_node_pending() -> None:
    history = load(HISTORIES[0])
    status = await fold_status(cut(history, 1), None, pydantic_data_converter)
    assert status.status in ("queued", "running")
    assert {n.state for n in status.nodes} == {"pending"}


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.name)
async def test_an_incremental_fold_equals_the_direct_fold_after_every_event(path: Path) -> None:
    """What a follower keeps (one fold, fed event by event) is what a fresh fold of the history so far says."""
    history = load(path)
    fold = StatusFold(await job_input(history, pydantic_data_converter), history.events[0], pydantic_data_converter)
    for event in history.events:
        await fold.apply(event)
        direct = await fold_status(cut(history, event.event_id), None, pydantic_data_converter)
        assert await fold.status() == direct, f"differs after event {event.event_id}"
    await fold.apply(history.events[3])  # an event seen before changes nothing
    assert await fold.status() == await fold_status(history, None, pydantic_data_converter)
