"""Keeps the local stack's apps running: a process that dies is restarted with backoff, a crash loop is given up.

The servers (Temporal, PostgreSQL, S3) hold the data and are never stopped because an app died;
the apps (the API and both workers) hold nothing that a restart loses: Temporal retries the
activity a dead worker was running on the worker that replaces it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

logger = logging.getLogger(__name__)

BACKOFF_SECONDS = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)  # wait before the n-th restart in a row
CRASH_LOOP = (5, 60.0)  # this many deaths within this many seconds: stop restarting


class Process(Protocol):
    """What the supervisor needs of a running app (`devstack.process.Service` has it)."""

    name: str

    def alive(self) -> bool:
        """Whether it still runs."""
        ...


@dataclass
class _Record:
    deaths: list[float] = field(default_factory=list)
    restart_at: float | None = None
    gave_up: bool = False


class Supervisor:
    """Restarts dead apps; call `check` about once a second with the current processes."""

    def __init__(
        self,
        start: Callable[[str], Process],
        describe_death: Callable[[str], str] = lambda _name: "",
        clock: Callable[[], float] = time.monotonic,
        backoff: tuple[float, ...] = BACKOFF_SECONDS,
        crash_loop: tuple[int, float] = CRASH_LOOP,
    ) -> None:
        """Supervise apps that `start` can start again.

        Args:
            start: Starts the app of that name again and returns its process.
            describe_death: The end of the app's log, to say why it died.
            clock: Seconds, monotonic (tests pass a fake one).
            backoff: Seconds to wait before each restart in a row.
            crash_loop: `(deaths, seconds)`: that many deaths within that window make it give up.
        """
        self._start = start
        self._describe_death = describe_death
        self._clock = clock
        self._backoff = backoff
        self._crash_loop = crash_loop
        self._records: dict[str, _Record] = {}

    def check(self, processes: dict[str, Process]) -> None:
        """Notice deaths, schedule restarts with backoff, and start what is due (replacing it in `processes`)."""
        now = self._clock()
        for name, process in list(processes.items()):
            record = self._records.setdefault(name, _Record())
            if record.gave_up:
                continue
            if record.restart_at is None and not process.alive():
                self._died(name, record, now)
            if record.restart_at is not None and now >= record.restart_at:
                record.restart_at = None
                processes[name] = self._start(name)
                logger.warning(
                    "restarted %s (restart %d in the last %.0f s)", name, len(record.deaths), self._crash_loop[1]
                )

    def states(self, processes: Mapping[str, Process]) -> dict[str, str]:
        """`running`, `restarting in N s` or `gave up` per app."""
        now = self._clock()
        states = {}
        for name, process in processes.items():
            record = self._records.get(name, _Record())
            if record.gave_up:
                states[name] = "gave up"
            elif record.restart_at is not None:
                states[name] = f"restarting in {max(0.0, record.restart_at - now):.0f} s"
            else:
                states[name] = "running" if process.alive() else "dead"
        return states

    def _died(self, name: str, record: _Record, now: float) -> None:
        deaths, window = self._crash_loop
        record.deaths = [t for t in record.deaths if now - t < window] + [now]
        why = self._describe_death(name)
        if len(record.deaths) >= deaths:
            record.gave_up = True
            logger.error(
                "%s died %d times within %.0f s: giving up on it (the servers and the other apps keep running; "
                "fix the cause, then restart the stack). Its log ends:\n%s", name, len(record.deaths), window, why,
            )  # fmt: skip
            return
        wait = self._backoff[min(len(record.deaths), len(self._backoff)) - 1]
        record.restart_at = now + wait
        logger.error("%s died; restarting it in %.0f s. Its log ends:\n%s", name, wait, why)
