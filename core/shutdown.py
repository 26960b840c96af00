"""Run a Temporal worker until SIGTERM or SIGINT, then shut it down gracefully.

`docker stop` and Kubernetes send SIGTERM; without a handler Python dies at once and every
running activity is only noticed as lost when its heartbeat times out (30 s for GPU work). With
it, the worker stops polling, gives running activities the worker's graceful-shutdown time,
then cancels them: training writes a checkpoint on cancel, so the retry on another worker
resumes from it. Handlers are installed on the loop, so they also work where the process
inherited an ignored SIGINT (background jobs of a non-interactive shell).
"""

import asyncio
import logging
import signal

from temporalio.worker import Worker

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def run_until_signalled(worker: Worker) -> None:
    """Run `worker` until one of `STOP_SIGNALS` arrives, then shut it down and return."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        async with worker:
            await stop.wait()
            logger.info("stop signal received: finishing or cancelling running activities, then exiting")
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
