"""Run the upload-retention sweep now instead of at its next interval: `python -m ops.retention run-now`.

The CPU worker creates the schedule (`activities.worker.ensure_retention_schedule`); this
command only triggers it, so the sweep runs as a `RetentionWorkflow` on the CPU queue like
every scheduled one (a sweep still running is not doubled: the schedule's overlap policy
skips). The server comes from `core.settings` (`APP_TEMPORAL__ADDRESS`, `APP_TEMPORAL__NAMESPACE`).
"""

import argparse
import asyncio
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import NoReturn

from temporalio.service import RPCError, RPCStatusCode

from core.settings import get_settings
from core.temporal import connect
from ops.exit import UNREACHABLE, exit_with
from schemas import names

_NOT_FOUND = 1  # exit code when there is no such schedule (no CPU worker has started yet)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ops.retention", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_now = commands.add_parser("run-now", help="trigger the retention schedule once, now")
    run_now.add_argument(
        "--schedule-id", default=names.RETENTION_SCHEDULE_ID, help="default: %(default)s (the CPU worker's)"
    )
    return parser


async def run_now(schedule_id: str = names.RETENTION_SCHEDULE_ID) -> int:
    """Trigger the schedule `schedule_id`; print what happened; return the exit code.

    Returns:
        0 when triggered, 1 when the schedule does not exist, 2 when the server cannot be reached.
    """
    try:
        client = await connect(get_settings().temporal, give_up_after=timedelta(seconds=30))
    except RuntimeError as err:  # the SDK reports an unreachable server as a RuntimeError
        sys.stderr.write(f"cannot reach the Temporal server: {err}\n")
        return UNREACHABLE
    try:
        await client.get_schedule_handle(schedule_id).trigger()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        sys.stderr.write(f"no schedule {schedule_id!r}: a CPU worker creates it when it starts\n")
        return _NOT_FOUND
    sys.stdout.write(f"triggered {schedule_id}: the sweep runs as a {names.RETENTION_WORKFLOW} on the CPU queue\n")
    return 0


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point: `python -m ops.retention run-now [--schedule-id ID]`."""
    args = _parser().parse_args(argv)
    code = asyncio.run(run_now(args.schedule_id))
    exit_with(code)


if __name__ == "__main__":
    main()
