"""Replay job histories against the current workflow code: `python -m ops.replay`.

Usage:
    python -m ops.replay --job job-1234abcd            # the job's latest run, from the server
    python -m ops.replay --query "ExecutionStatus='Failed' AND CloseTime > '2026-01-01T00:00:00Z'"
    python -m ops.replay --file tests/histories/generate_v1.json

Prints one line per workflow run, `ok <id>` or `NONDETERMINISTIC <id>: <first mismatch>`
(`FAILED <id>: <error>` when replay broke for another reason), and exits 1 if any run did not
replay. The server comes from `core.settings` (`APP_TEMPORAL__ADDRESS`, `APP_TEMPORAL__NAMESPACE`).

When a change breaks replay of histories that may still be running, guard the new code with
`workflow.patched("<change-id>")` (old histories take the old branch) and add a golden history.
"""

import argparse
import asyncio
import functools
import re
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import RPCError
from temporalio.worker import Replayer

from ops.exit import UNREACHABLE, exit_with
from schemas import names
from workflows.batch import BatchWorkflow
from workflows.pipeline import PipelineWorkflow
from workflows.sandbox import workflow_runner

# The SDK core reports a replay failure as the Debug print of a `Failure` struct; the quoted
# `message` inside it, without its `[TMPRL1100]` code, is the sentence an operator needs.
_CORE_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')
_CODE = re.compile(r"^\[TMPRL\d+\]\s*")
_QUOTED = re.compile(r"'([^']+)'")


WORKFLOWS: tuple[type, ...] = (PipelineWorkflow, BatchWorkflow)  # every workflow a job history may hold

Source = AsyncIterator[tuple[str, WorkflowHistory | Exception]]
"""`(label, history)` pairs to replay, or `(label, error)` for a history that could not be loaded."""


@dataclass(frozen=True)
class Outcome:
    """The replay of one run: its label and, if it did not replay, the error and a readable message."""

    label: str
    error: BaseException | None = None
    message: str = ""
    loaded: bool = True

    @property
    def ok(self) -> bool:
        """True when the run replayed with the current code."""
        return self.error is None

    @property
    def nondeterministic(self) -> bool:
        """True when the current code issued different commands than the history recorded."""
        return isinstance(self.error, workflow.NondeterminismError)

    def line(self) -> str:
        """The line printed for this run: `ok`, `NONDETERMINISTIC`, `FAILED` (replay) or `ERROR` (loading)."""
        if self.error is None:
            return f"ok {self.label}"
        kind = "ERROR" if not self.loaded else "NONDETERMINISTIC" if self.nondeterministic else "FAILED"
        return f"{kind} {self.label}: {self.message}"


def describe_failure(error: BaseException, history: WorkflowHistory | None = None) -> str:
    """One readable line for a replay failure, naming the history event it points at when it can.

    Args:
        error: The replay failure.
        history: The replayed history, to look up the event the message names (by event id or
            by activity id).

    Returns:
        E.g. `Nondeterminism error: Activity id of scheduled event 'script' does not match activity
        id of activity command 'audit' (history event 5: activity 'script' · script.generateScript scheduled)`.
    """
    text = str(error).strip() or type(error).__name__
    found = _CORE_MESSAGE.search(text)
    message = found.group(1).encode().decode("unicode_escape") if found else text.splitlines()[0]
    message = _CODE.sub("", message)
    if history is not None and (event := _named_event(message, history)) is not None:
        message += f" (history event {event.event_id}: {_event_summary(event)})"
    return message


def _named_event(message: str, history: WorkflowHistory) -> HistoryEvent | None:
    """The first event whose id, or whose scheduled activity's id, the message quotes."""
    for token in _QUOTED.findall(message):
        for event in history.events:
            if token.isdigit() and event.event_id == int(token):
                return event
            if (
                event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                and event.activity_task_scheduled_event_attributes.activity_id == token
            ):
                return event
    return None


def _event_summary(event: HistoryEvent) -> str:
    if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        attrs = event.activity_task_scheduled_event_attributes
        return f"activity '{attrs.activity_id}' · {attrs.activity_type.name} scheduled"
    return EventType.Name(event.event_type).removeprefix("EVENT_TYPE_").lower()


@functools.cache
def _runtime() -> Runtime:
    # The core logs each failed replay as a WARN line on stdout, which would interleave with
    # this command's one-line-per-run output; the failures are reported by those lines instead.
    quiet = LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))
    return Runtime(telemetry=TelemetryConfig(logging=quiet))


def _replayer(workflows: Sequence[type]) -> Replayer:
    return Replayer(
        workflows=list(workflows),
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),
        runtime=_runtime(),
    )


async def replay_histories(histories: Source, workflows: Sequence[type] = WORKFLOWS) -> list[Outcome]:
    """Replay each `(label, history)` with `workflows` and the project's converter and sandbox."""
    labels: dict[int, tuple[str, WorkflowHistory]] = {}
    outcomes: list[Outcome] = []

    async def loaded() -> AsyncIterator[WorkflowHistory]:
        async for label, history in histories:
            if isinstance(history, Exception):
                outcomes.append(Outcome(label, history, str(history) or type(history).__name__, loaded=False))
                continue
            labels[id(history)] = (label, history)
            yield history

    async with _replayer(workflows).workflow_replay_iterator(loaded()) as results:
        async for result in results:
            label, history = labels.pop(id(result.history))
            error = result.replay_failure
            outcomes.append(Outcome(label, error, describe_failure(error, history) if error else ""))
    return outcomes


async def from_files(paths: Sequence[Path]) -> Source:
    """Histories saved with `WorkflowHistory.to_json()` (or downloaded from the Web UI / CLI)."""
    for path in paths:
        try:
            yield str(path), WorkflowHistory.from_json(path.stem, path.read_text())
        except (OSError, ValueError) as err:  # json and protobuf parse errors are ValueErrors
            yield str(path), err


async def from_jobs(client: Client, job_ids: Sequence[str]) -> Source:
    """The latest run of each job."""
    for job_id in job_ids:
        try:
            run_id = (await client.get_workflow_handle(job_id).describe()).run_id
            yield f"{job_id} run {run_id}", await client.get_workflow_handle(job_id, run_id=run_id).fetch_history()
        except RPCError as err:
            yield job_id, err


async def from_query(client: Client, query: str) -> Source:
    """Every `PipelineWorkflow` run matching a visibility query (each run of a reset job too)."""
    scoped = f"WorkflowType='{names.PIPELINE_WORKFLOW}' AND ({query})"
    try:
        async for execution in client.list_workflows(query=scoped):
            label = f"{execution.id} run {execution.run_id}"
            try:
                yield label, await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
            except RPCError as err:
                yield label, err
    except RPCError as err:  # e.g. a malformed query
        yield f"query {query!r}", err


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ops.replay",
        description="Replay workflow histories with the current PipelineWorkflow code; exit 1 on any failure.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--job", action="extend", nargs="+", metavar="JOB_ID", help="job ids; each one's latest run")
    source.add_argument("--query", help="a visibility query, e.g. \"ExecutionStatus='Failed'\"")
    source.add_argument("--file", action="extend", nargs="+", type=Path, metavar="HISTORY_JSON", help="history files")
    return parser


async def _connect() -> Client:
    # Imported here, not at module top: `workflows/` stays free of I/O modules for the sandbox;
    # only this command, run by an operator, needs the settings and a client.
    from core.settings import get_settings
    from core.temporal import connect

    return await connect(get_settings().temporal)


async def run(argv: Sequence[str] | None = None, workflows: Sequence[type] = WORKFLOWS) -> int:
    """Replay what `argv` selects with `workflows`; print one line per run; return the exit code.

    Args:
        argv: Command-line arguments (default `sys.argv[1:]`).
        workflows: The workflow classes to replay with (tests pass a deliberately changed one).

    Returns:
        0 when every run replayed (also when none matched), 1 when any did not, 2 when the
        server cannot be reached.
    """
    args = _parser().parse_args(argv)
    histories: Source
    if args.file:
        histories = from_files(args.file)
    else:
        try:
            client = await _connect()
        except RuntimeError as err:  # the SDK reports an unreachable server as a RuntimeError
            sys.stderr.write(f"cannot reach the Temporal server: {err}\n")
            return UNREACHABLE
        histories = from_jobs(client, args.job) if args.job else from_query(client, args.query)
    outcomes = await replay_histories(histories, workflows)
    for outcome in outcomes:
        sys.stdout.write(outcome.line() + "\n")
    failed = sum(not o.ok for o in outcomes)
    sys.stderr.write(f"replayed {len(outcomes)} run(s): {len(outcomes) - failed} ok, {failed} failed\n")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> Any:
    """Entry point: `python -m ops.replay ...`."""
    code = asyncio.run(run(argv))
    exit_with(code)


if __name__ == "__main__":
    main()
