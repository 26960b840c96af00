"""What the benchmarks share: statistics, markdown tables, quiet logging, temporary servers and processes."""

from __future__ import annotations

import logging
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench._report import machine as machine
from bench._report import out as out
from bench._report import quiet_logging as quiet_logging
from bench._report import table as table
from core.services import Services, open_services
from core.settings import Settings, get_settings
from devstack.process import REPO_ROOT, Service, free_port
from devstack.servers import env_for, start_postgres, start_s3, start_temporal, stop_services


def percentile(samples: Sequence[float], pct: float) -> float:
    """The `pct` percentile (nearest rank, so p99 of 1000 samples is the 990th smallest)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(samples: Sequence[float]) -> float:
    """The median, NaN when empty."""
    return statistics.median(samples) if samples else math.nan


def ms(seconds: float) -> str:
    """Seconds as milliseconds for a table cell."""
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time a process has used so far (Linux `/proc`), NaN if unknown."""
    if pid is None:
        return math.nan
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def servers(prefix: str, *starters: Callable[[Path], Service]) -> Iterator[tuple[Path, dict[str, Service]]]:
    """Start each server in its own directory under a fresh temporary root; stop them all at the end."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        root = Path(tmp)
        services: dict[str, Service] = {}
        try:
            for start in starters:
                service = start(root)
                services[service.name] = service
            yield root, services
        finally:
            stop_services(services)


@dataclass(frozen=True)
class Stack:
    """Temporal, PostgreSQL and S3 of one benchmark run, and this process pointed at them."""

    root: Path  # the run's temporary directory
    servers: dict[str, Service]
    env: dict[str, str]  # the `APP_*` variables the API and worker processes get
    settings: Settings
    services: Services  # this process's clients: database sessions, object store, Temporal


@asynccontextmanager
async def local_stack(name: str, extra_env: dict[str, str] | None = None) -> AsyncIterator[Stack]:
    """All three servers on free ports, fresh task queues, and this process's clients of them.

    The clients come from `core.services.open_services`, as in the API and the workers, which
    also migrates the database and creates the buckets. The `APP_*` variables are set in this
    process's environment (and `get_settings` re-read) only inside the block, so a benchmark run
    from a test leaves nothing pointing at stopped servers.
    """
    suffix = uuid.uuid4().hex[:8]
    with servers(
        f"bench-{name}-",
        lambda root: start_postgres(root / "postgres"),
        lambda root: start_s3(root / "s3"),
        lambda root: start_temporal(root / "temporal"),
    ) as (root, started):
        env = env_for(started) | {
            "APP_TEMPORAL__CPU_TASK_QUEUE": f"{name}-cpu-{suffix}",
            "APP_TEMPORAL__GPU_TASK_QUEUE": f"{name}-gpu-{suffix}",
            "APP_GPU__WORK_DIR": str(root / "gpu-work"),
            **(extra_env or {}),
        }
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        get_settings.cache_clear()
        try:
            settings = get_settings()
            async with open_services(settings) as services:
                yield Stack(root, started, env, settings, services)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            get_settings.cache_clear()


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file (the temporary directory is gone after the run)."""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def log_tails(logger: logging.Logger, processes: Sequence[Service], lines: int = 25) -> None:
    """Each process's state and the end of its log, for a run that failed."""
    for process in processes:
        state = "running" if process.alive() else "exited"
        logger.error("%s (%s); the tail of its log:\n%s", process.name, state, tail(process.log_path, lines))


def start_process(name: str, args: list[str], root: Path, env: dict[str, str], url: str = "") -> Service:
    """`python <args>` with the stack's environment in its own session, logging to `<root>/logs/<name>.log`."""
    log_path = root / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, *args], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=REPO_ROOT, env=os.environ | env | {"PYTHONUNBUFFERED": "1"}, start_new_session=True,
        )  # fmt: skip
    return Service(name, url, log_path, process=process)  # SIGTERM, as `python -m devstack.stack down` stops them


def start_worker(name: str, module: str, root: Path, env: dict[str, str]) -> Service:
    """`python -m <module>` (a worker) with the stack's environment."""
    return start_process(name, ["-m", module], root, env)


def start_api(root: Path, env: dict[str, str]) -> Service:
    """`uvicorn api.main:app` on a free port, as `make up` runs it; ready when /healthz says 200."""
    port = free_port()
    args = ["-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--no-access-log",
            "--timeout-keep-alive", "60"]  # idle pooled connections must not be closed mid-run  # fmt: skip
    service = start_process("api", args, root, env, url=f"http://127.0.0.1:{port}")
    service.stop_signal = signal.SIGINT
    deadline = time.monotonic() + 120
    while True:
        if not service.alive():
            raise RuntimeError(f"the API exited at start-up; log {service.log_path}:\n{tail(service.log_path, 60)}")
        try:
            if httpx.get(f"{service.url}/healthz", timeout=2).status_code == 200:
                return service
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            service.stop()
            raise TimeoutError(f"the API did not become healthy; log {service.log_path}")
        time.sleep(0.2)
