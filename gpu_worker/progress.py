"""Heartbeats for long, blocking GPU activities: structured progress, keep-alive, cancellation."""

import contextvars
import threading
import time
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from core.telemetry import HEARTBEAT_PROGRESS, HEARTBEATS
from schemas import names

STALL_SECONDS = 120.0  # keep-alive stops when progress has not moved for this long


class Heartbeater:
    """Sends `{stage, percent, ...}` heartbeats for a sync activity running in a thread.

    `update` heartbeats at once when the stage changes, otherwise at most every
    `min_interval` seconds. A background thread repeats the latest details every `keepalive`
    seconds so a long blocking call (an ffmpeg encode, a model load) does not look like a
    dead worker, but only while progress moved within `STALL_SECONDS`: a hung stage still
    times out. Heartbeats are also how a sync activity learns it was cancelled.
    """

    def __init__(self, min_interval: float = 1.0, keepalive: float = 5.0) -> None:
        self._context = contextvars.copy_context()
        self._task = activity.info().activity_type
        self._min_interval = min_interval
        self._keepalive = keepalive
        self._details: dict[str, Any] = {"stage": "starting", "percent": 0.0}
        self._last_sent = 0.0
        self._last_moved = time.monotonic()
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def __enter__(self) -> "Heartbeater":
        self._send(in_activity_thread=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._keepalive + 1)

    @property
    def details(self) -> dict[str, Any]:
        """The latest progress sent (or about to be)."""
        with self._lock:
            return dict(self._details)

    def update(self, stage: str, percent: float, **extra: Any) -> None:
        """Record progress (percent of the whole activity, 0-100) and heartbeat if due."""
        with self._lock:
            changed = stage != self._details.get("stage")
            self._details = {"stage": stage, "percent": round(max(0.0, min(100.0, percent)), 1), **extra}
            self._last_moved = time.monotonic()
            due = changed or time.monotonic() - self._last_sent >= self._min_interval
        if due:
            self._send(in_activity_thread=True)

    def cancelled(self) -> bool:
        """True once Temporal delivered a cancellation (or the worker is shutting down)."""
        return activity.is_cancelled() or activity.is_worker_shutdown()

    def _send(self, in_activity_thread: bool = False) -> None:
        # One sender at a time, copying and sending under the same lock, so an older
        # keep-alive copy can never overtake a newer update.
        with self._send_lock:
            with self._lock:
                details = dict(self._details)
                self._last_sent = time.monotonic()
            HEARTBEATS.add(1, {"task": self._task})
            HEARTBEAT_PROGRESS.set(
                details.get("percent", 0.0), {"task": self._task, "stage": str(details.get("stage"))}
            )
            if in_activity_thread:
                activity.heartbeat(details)
            else:  # the keep-alive thread borrows the activity's context
                self._context.run(activity.heartbeat, details)

    def _run(self) -> None:
        while not self._stop.wait(self._keepalive):
            with self._lock:
                stalled = time.monotonic() - self._last_moved > STALL_SECONDS
            if not stalled:
                self._send()


def stop_error(message: str) -> Exception:
    """What an activity raises after stopping early: the job's cancellation, or a retryable failure.

    The failure is for when only this worker is going away (SIGTERM): the server then retries
    the activity on another worker at once instead of waiting for the heartbeat timeout.
    """
    if activity.in_activity() and activity.is_worker_shutdown() and not activity.is_cancelled():
        return ApplicationError(f"{message}: the worker is shutting down", type=names.ERR_WORKER_SHUTDOWN)
    return CancelledError(message)
