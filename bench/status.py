"""Latency of `GET /api/status/{jobId}` while 100 jobs are running.

Starts its own Temporal dev server, PostgreSQL and S3 server (`core.stack`, temporary
directory, free ports), the real API under uvicorn in its own process on a free port, the
real CPU worker (control activities with the offline script writer) and a GPU worker whose
`render_video` heartbeats (with the GPU worker's 1 s throttle) until cancelled. It submits
100 `generate` jobs through the API, waits until every one is in `render`, then times status
reads round-robin over the jobs in three passes: one client, N concurrent clients, and an
open loop at a fixed rate. It then times the parts of one read (job row, history, describe,
fold) to show what dominates, cancels the jobs through the API and stops everything.

Run: `python -m bench.status [--jobs 100] [--requests 1000] [--clients 10] [--rate 50]`.
"""

import argparse
import asyncio
import dataclasses
import gc
import logging
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory
from temporalio.worker import Worker

from activities.control import ControlActivities
from activities.script_writer import OfflineScriptWriter
from activities.worker import build_worker as build_cpu_worker
from activities.worker import manifest as cpu_manifest
from api.status import fold_status, is_open
from bench._common import cpu_seconds, machine, median, ms, out, percentile, quiet_logging, servers, table
from core import repo
from core.capabilities import publish
from core.db import create_async_engine, migrate, session_factory
from core.settings import Settings, get_settings
from core.stack import REPO_ROOT, Service, env_for, free_port, start_postgres, start_s3, start_temporal
from core.storage import ObjectStore
from core.temporal import connect
from gpu_worker.worker import manifest as gpu_manifest
from schemas import names
from schemas.tasks import RenderInput, RenderResult

logger = logging.getLogger("bench.status")

TARGET_P99 = 0.050
USER = "local"  # the API's user until API keys exist


@activity.defn(name=names.RENDER_VIDEO)
async def render_video(_inp: RenderInput) -> RenderResult:
    """Stay running (heartbeating progress) until cancelled: a render that never ends."""
    percent = 0.0
    while True:
        percent = min(percent + 1, 95)
        activity.heartbeat({"stage": "animate", "percent": percent, "stage_index": 2, "stage_count": 6})
        await asyncio.sleep(1)


# --- the API in its own process --------------------------------------------------------------


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file (the temporary directory is gone after the run)."""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def start_api(root: Path, env: dict[str, str]) -> Service:
    """`uvicorn api.main:app` on a free port, as `make up` runs it; ready when /healthz says 200."""
    port = free_port()
    log_path = root / "api.log"
    cmd = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning", "--no-access-log",
           "--timeout-keep-alive", "60"]  # idle pooled connections must not be closed mid-run  # fmt: skip
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
            env=os.environ | env | {"PYTHONUNBUFFERED": "1"}, start_new_session=True,
        )  # fmt: skip
    service = Service("api", f"http://127.0.0.1:{port}", log_path, process=process, stop_signal=signal.SIGINT)
    deadline = time.monotonic() + 120
    while True:
        if not service.alive():
            raise RuntimeError(f"the API exited at start-up; log {log_path}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{service.url}/healthz", timeout=2).status_code == 200:
                return service
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            service.stop()
            raise TimeoutError(f"the API did not become healthy; log {log_path}")
        time.sleep(0.2)


# --- jobs ------------------------------------------------------------------------------------


async def submit_jobs(api: httpx.AsyncClient, count: int) -> list[str]:
    """`POST /api/generate` `count` times, 10 at a time."""
    gate = asyncio.Semaphore(10)

    async def one(i: int) -> str:
        async with gate:
            response = await api.post("/api/generate", json={"topic": f"status bench job {i}", "variant": "svd"})
            response.raise_for_status()
            return str(response.json()["jobId"])

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def wait_all_rendering(api: httpx.AsyncClient, job_ids: list[str], timeout: float = 180) -> dict[str, Any]:
    """Poll the status of every job until each one's `render` node is running; one body as a sample."""
    deadline = time.monotonic() + timeout
    waiting = set(job_ids)
    sample: dict[str, Any] = {}
    while waiting:
        for job_id in sorted(waiting):
            body = (await api.get(f"/api/status/{job_id}")).json()
            render = next(n for n in body["nodes"] if n["id"] == "render")
            if body["status"] in ("failed", "cancelled", "completed"):
                raise RuntimeError(f"job {job_id} ended early: {body}")
            if render["state"] == "running" and render["progress"]:
                waiting.discard(job_id)
                sample = body
        if waiting and time.monotonic() > deadline:
            raise TimeoutError(f"{len(waiting)} jobs not rendering after {timeout:.0f} s")
        await asyncio.sleep(0.5)
    return sample


Reader = Callable[[int], Awaitable[float]]  # the i-th read → its latency (s)


def status_reader(api: httpx.AsyncClient, job_ids: list[str]) -> Reader:
    """Read the status of job `i mod len(job_ids)`; fail loudly on anything but a running job."""

    async def read(i: int) -> float:
        started = time.perf_counter()
        response = await api.get(f"/api/status/{job_ids[i % len(job_ids)]}")
        latency = time.perf_counter() - started
        if response.status_code != 200 or response.json()["status"] != "running":
            raise RuntimeError(f"unexpected status answer {response.status_code}: {response.text[:300]}")
        return latency

    return read


async def closed_loop(read: Reader, requests: int, clients: int) -> tuple[list[float], float]:
    """`clients` clients, each sending its next read when the previous one answered; latencies and wall time."""
    latencies: list[float] = []
    next_index = iter(range(requests))

    async def client() -> None:
        for i in next_index:
            latencies.append(await read(i))

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, time.perf_counter() - started


OPEN_LOOP_IN_FLIGHT = 32  # connections of the open loop; more reads wait their turn here


async def open_loop(read: Reader, requests: int, rate: float) -> tuple[list[float], float]:
    """Reads sent at a fixed `rate` whatever the answers (pages polling on a timer).

    Each latency counts from when the read was due, so time spent queued behind slow answers
    (here or in the server) is not hidden. At most `OPEN_LOOP_IN_FLIGHT` reads are in flight;
    the others wait on a semaphore rather than in httpx's pool, whose cost grows with its queue.
    """
    started = time.perf_counter()
    in_flight = asyncio.Semaphore(OPEN_LOOP_IN_FLIGHT)

    async def one(i: int) -> float:
        due = started + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        async with in_flight:
            late = time.perf_counter() - due
            return late + await read(i)

    latencies = list(await asyncio.gather(*(one(i) for i in range(requests))))
    return latencies, time.perf_counter() - started


async def breakdown(
    settings: Settings, client: Client, job_ids: list[str], samples: int
) -> list[tuple[str, list[float]]]:
    """Time each part of one status read, as `api/routes/jobs.py` does it, from this process."""
    engine = create_async_engine(settings.database.url)
    sessions = session_factory(engine)
    parts: dict[str, list[float]] = {"job row (Postgres)": [], "fetch_history": [], "describe": [], "fold_status": []}

    async def timed(part: str, call: Awaitable[Any]) -> Any:
        started = time.perf_counter()
        result = await call
        parts[part].append(time.perf_counter() - started)
        return result

    async def job_row(job_id: str) -> None:
        async with sessions() as session:
            await repo.get_job(session, USER, job_id)

    try:
        for i in range(samples):
            job_id = job_ids[i % len(job_ids)]
            handle = client.get_workflow_handle(job_id)
            await timed("job row (Postgres)", job_row(job_id))
            history: WorkflowHistory = await timed("fetch_history", handle.fetch_history())
            description = await timed("describe", handle.describe()) if is_open(history) else None
            await timed("fold_status", fold_status(history, description, client.data_converter))
    finally:
        await engine.dispose()
    return list(parts.items())


# --- the run ---------------------------------------------------------------------------------


async def run_bench(args: argparse.Namespace, root: Path, services: dict[str, Service]) -> None:
    suffix = uuid.uuid4().hex[:8]
    env = env_for(services) | {
        "APP_TEMPORAL__CPU_TASK_QUEUE": f"bench-cpu-{suffix}",
        "APP_TEMPORAL__GPU_TASK_QUEUE": f"bench-gpu-{suffix}",
        "APP_GPU__WORK_DIR": str(root / "gpu-work"),
    }
    os.environ.update(env)
    get_settings.cache_clear()
    settings = get_settings()
    await asyncio.to_thread(migrate, settings.database.url)
    engine = create_async_engine(settings.database.url)
    sessions = session_factory(engine)
    store = ObjectStore(settings.storage)
    await asyncio.to_thread(store.ensure_buckets)
    writer = OfflineScriptWriter()
    await publish(sessions, cpu_manifest(settings, writer, f"bench-cpu-{suffix}"))
    await publish(sessions, gpu_manifest(settings, f"bench-gpu-{suffix}"))
    client = await connect(settings.temporal)
    api_service = await asyncio.to_thread(start_api, root, env)
    job_ids: list[str] = []
    results: list[Pass] = []
    try:
        async with AsyncExitStack() as stack:
            cpu_worker = build_cpu_worker(client, settings, ControlActivities(sessions, store, writer))
            await stack.enter_async_context(cpu_worker)
            # Exit is LIFO: this runs once the GPU worker has stopped, for any job the cancel left open.
            stack.push_async_callback(terminate_open, client, job_ids)
            throttle = timedelta(seconds=settings.gpu.heartbeat_throttle_seconds)  # as gpu_worker.worker sets it
            gpu = Worker(
                client,
                task_queue=settings.temporal.gpu_task_queue,
                activities=[render_video],
                max_concurrent_activities=args.jobs + 10,
                max_heartbeat_throttle_interval=throttle,
                default_heartbeat_throttle_interval=throttle,
            )
            await stack.enter_async_context(gpu)
            connections = max(args.clients, OPEN_LOOP_IN_FLIGHT) + 2
            limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
            api = await stack.enter_async_context(
                httpx.AsyncClient(base_url=api_service.url, limits=limits, timeout=30)
            )
            started = time.perf_counter()
            job_ids += await submit_jobs(api, args.jobs)
            logger.info("submitted %d jobs in %.1f s", len(job_ids), time.perf_counter() - started)
            sample = await wait_all_rendering(api, job_ids)
            logger.info("all %d jobs rendering after %.1f s", len(job_ids), time.perf_counter() - started)
            history_events = len((await client.get_workflow_handle(job_ids[0]).fetch_history()).events)
            read = status_reader(api, job_ids)
            await closed_loop(read, 50, 1)  # warm-up: connections, caches
            processes = {"API": api_service.pid, "Temporal": services["temporal"].pid, "bench": os.getpid()}
            background = await idle_cpu(processes, seconds=5)
            passes: list[tuple[str, Callable[[], Awaitable[tuple[list[float], float]]]]] = [
                ("1 client, sequential", lambda: closed_loop(read, args.requests, 1)),
                (f"{args.clients} concurrent clients", lambda: closed_loop(read, args.requests, args.clients)),
                (f"open loop, {args.rate:g} req/s", lambda: open_loop(read, args.requests, args.rate)),
            ]
            for label, run_pass in passes:
                before = {name: cpu_seconds(pid) for name, pid in processes.items()}
                latencies, wall = await run_pass()
                cpu = {name: (cpu_seconds(pid) - before[name] - background[name] * wall) / len(latencies)
                       for name, pid in processes.items()}  # fmt: skip
                results.append(Pass(label, latencies, wall, cpu))
                logger.info(
                    "%s: p50 %.1f ms, p99 %.1f ms", label, median(latencies) * 1000, percentile(latencies, 99) * 1000
                )
            parts = await breakdown(settings, client, job_ids, args.breakdown)
            started = time.perf_counter()
            ended = await cancel_all(api, job_ids)
            logger.info("cancelled through the API: %d of %d jobs ended in %.1f s", ended, len(job_ids),
                        time.perf_counter() - started)  # fmt: skip
    except BaseException:
        alive = (
            "still running"
            if api_service.alive()
            else f"exited with {api_service.process and api_service.process.poll()}"
        )
        logger.error("the API is %s; the tail of its log:\n%s", alive, tail(api_service.log_path))
        raise
    finally:
        api_service.stop()
        await engine.dispose()
        if evicted := collect_evicted_graphs():
            logger.info("collected the LangGraph generators of %d PipelineWorkflow runs evicted mid-graph", evicted)
    report(args, results, parts, history_events, len(httpx.Response(200, json=sample).content), background)


async def idle_cpu(processes: dict[str, int | None], seconds: float) -> dict[str, float]:
    """Each process's CPU use (CPU seconds per second) with jobs running but no status reads."""
    before = {name: cpu_seconds(pid) for name, pid in processes.items()}
    await asyncio.sleep(seconds)
    return {name: (cpu_seconds(pid) - before[name]) / seconds for name, pid in processes.items()}


async def cancel_all(api: httpx.AsyncClient, job_ids: list[str], timeout: float = 60) -> int:
    """`POST /api/jobs/{id}/cancel` for every job, then wait until they have ended; how many did."""
    gate = asyncio.Semaphore(10)

    async def cancel(job_id: str) -> None:
        async with gate:
            response = await api.post(f"/api/jobs/{job_id}/cancel")
            if response.status_code != 202:
                logger.warning("cancel %s: %d %s", job_id, response.status_code, response.text[:200])

    await asyncio.gather(*(cancel(j) for j in job_ids))
    deadline = time.monotonic() + timeout
    open_jobs = set(job_ids)
    while open_jobs and time.monotonic() < deadline:
        for job_id in sorted(open_jobs):
            if (await api.get(f"/api/status/{job_id}")).json()["status"] in ("cancelled", "failed", "completed"):
                open_jobs.discard(job_id)
        await asyncio.sleep(0.5)
    return len(job_ids) - len(open_jobs)


async def terminate_open(client: Client, job_ids: list[str]) -> None:
    """Terminate whatever is still running (the GPU stub never finishes on its own)."""

    async def one(job_id: str) -> bool:
        handle = client.get_workflow_handle(job_id)
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            return False
        await handle.terminate(reason="status benchmark finished")
        return True

    done = await asyncio.gather(*(one(j) for j in job_ids), return_exceptions=True)
    if terminated := sum(d is True for d in done):
        logger.info("terminated %d jobs that were still running", terminated)


@dataclasses.dataclass
class Pass:
    """One measured pass: per-request latencies, wall time, CPU seconds per request by process."""

    label: str
    latencies: list[float]
    wall: float
    cpu: dict[str, float]


def collect_evicted_graphs() -> int:
    """Collect the LangGraph generators of runs the CPU worker evicted mid-graph; how many there were.

    Stopping a worker evicts its cached `PipelineWorkflow` runs; a run waiting inside
    `graph.ainvoke` leaves LangGraph's async generators behind, and when Python finalizes them
    outside the workflow's event loop LangGraph's cleanup raises ("Exception ignored in
    Pregel.astream ... no current event loop"). That is noise, not a benchmark failure: count
    those here instead of printing a traceback per job; anything else goes to the usual hook.
    """
    previous = sys.unraisablehook
    langgraph: list[object] = []

    def hook(unraisable: "sys.UnraisableHookArgs") -> None:
        if "Pregel" in repr(unraisable.object):
            langgraph.append(unraisable.object)
        else:
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        gc.collect()
    finally:
        sys.unraisablehook = previous
    return len({id(o) for o in langgraph if "astream" in repr(o)})


def report(
    args: argparse.Namespace,
    results: list[Pass],
    parts: list[tuple[str, list[float]]],
    history_events: int,
    body_bytes: int,
    background: dict[str, float],
) -> None:
    out(f"## `GET /api/status/{{jobId}}` with {args.jobs} jobs running")
    out()
    out(f"{machine()}.")
    out("Temporal dev server (SQLite), PostgreSQL and S3 on the same machine; the API under uvicorn in its")
    out("own process; both workers and the HTTP clients in the benchmark process. Every job is in `render`")
    out(f"(a heartbeating GPU stub), so a read folds {history_events} history events plus `describe()` into a")
    out(f"{body_bytes}-byte answer. Requests go round-robin over the jobs. CPU/req is each process's CPU time")
    out(
        "during the pass, minus its background use with no reads (heartbeats of the running jobs: "
        + ", ".join(f"{name} {rate * 100:.0f}%" for name, rate in background.items())
        + " of a core), divided by the requests."
    )
    out()
    rows = []
    for p in results:
        p99 = percentile(p.latencies, 99)
        rows.append([p.label, len(p.latencies), ms(median(p.latencies)), ms(percentile(p.latencies, 90)), ms(p99),
                     ms(max(p.latencies)), f"{len(p.latencies) / p.wall:.0f}", "yes" if p99 <= TARGET_P99 else "NO",
                     *(ms(p.cpu.get(name, math.nan)) for name in ("API", "Temporal", "bench"))])  # fmt: skip
    out(table(["load", "requests", "p50 (ms)", "p90 (ms)", "p99 (ms)", "max (ms)", "req/s", "p99 ≤ 50 ms",
               "API CPU/req (ms)", "Temporal CPU/req (ms)", "bench CPU/req (ms)"], rows))  # fmt: skip
    out()
    out("A closed loop of N clients is throughput-bound (Little's law: latency ≈ N / req/s); the open loop")
    out("sends reads on a timer, like pages polling their jobs, and counts queueing from when a read was due.")
    out()
    out(f"The parts of one read, called in sequence as `api/routes/jobs.py` does (median of {args.breakdown}")
    out("reads, from the benchmark process); the rest of the single-client p50 is HTTP, FastAPI, and")
    out("validating and serializing the answer:")
    out()
    single = median(results[0].latencies)
    rows = [[name, ms(median(s)), ms(percentile(s, 99)), f"{median(s) / single * 100:.0f}%"] for name, s in parts]
    rest = single - sum(median(s) for _, s in parts)
    rows.append(["rest (HTTP, FastAPI, JSON)", ms(rest), "", f"{rest / single * 100:.0f}%"])
    out(table(["part", "p50 (ms)", "p99 (ms)", "share of 1-client p50"], rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.status", description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100, help="jobs running during the measurement")
    parser.add_argument("--requests", type=int, default=1000, help="status reads per client setting")
    parser.add_argument("--clients", type=int, default=10, help="concurrent clients of the second pass")
    parser.add_argument("--rate", type=float, default=50, help="reads per second of the open-loop pass")
    parser.add_argument("--breakdown", type=int, default=200, help="status reads timed part by part")
    args = parser.parse_args(argv)
    quiet_logging()
    with servers(
        "bench-status-",
        lambda root: start_postgres(root / "postgres"),
        lambda root: start_s3(root / "s3"),
        lambda root: start_temporal(root / "temporal"),
    ) as (root, services):
        asyncio.run(run_bench(args, root, services))
    return 0


if __name__ == "__main__":
    sys.exit(main())
