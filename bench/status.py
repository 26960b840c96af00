"""Latency of `GET /api/status/{jobId}` while 100 jobs are running.

Starts its own Temporal dev server, PostgreSQL and S3 server (`core.stack`, temporary
directory, free ports), the real API under uvicorn in its own process on a free port, the
real CPU worker (control activities with the offline script writer) and a GPU worker whose
`render_video` heartbeats and then waits until cancelled. It submits 100 `generate` jobs
through the API, waits until every one is in `render`, then times status reads round-robin
over the jobs: one client after another, then several concurrent clients. At the end it
times the parts of one status read (job row, history, describe, fold) to show what dominates,
terminates the jobs and stops everything.

Run: `python -m bench.status [--jobs 100] [--requests 1000] [--clients 10]`.
"""

import argparse
import asyncio
import gc
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
from temporalio import activity
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Worker

from activities.control import ControlActivities
from activities.script_writer import OfflineScriptWriter
from activities.worker import build_worker as build_cpu_worker
from activities.worker import manifest as cpu_manifest
from api.status import fold_status, is_open
from bench._common import machine, median, ms, out, percentile, quiet_logging, servers, table
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


def start_api(root: Path, env: dict[str, str]) -> Service:
    """`uvicorn api.main:app` on a free port, as `make up` runs it; ready when /healthz says 200."""
    port = free_port()
    log_path = root / "api.log"
    cmd = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning", "--no-access-log"]  # fmt: skip
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


async def timed_gets(
    api: httpx.AsyncClient, job_ids: list[str], requests: int, clients: int
) -> tuple[list[float], float]:
    """`requests` status reads round-robin over `job_ids` by `clients` concurrent clients; latencies and wall time."""
    latencies: list[float] = []
    next_index = iter(range(requests))

    async def client() -> None:
        for i in next_index:
            started = time.perf_counter()
            response = await api.get(f"/api/status/{job_ids[i % len(job_ids)]}")
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200 or response.json()["status"] != "running":
                raise RuntimeError(f"unexpected status answer {response.status_code}: {response.text[:300]}")

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, time.perf_counter() - started


async def breakdown(
    settings: Settings, client: Client, job_ids: list[str], samples: int
) -> list[tuple[str, list[float]]]:
    """Time each part of one status read, as `api/routes/jobs.py` does it, from this process."""
    engine = create_async_engine(settings.database.url)
    sessions = session_factory(engine)
    parts: dict[str, list[float]] = {"job row (Postgres)": [], "fetch_history": [], "describe": [], "fold_status": []}

    async def timed(part: str, call: Callable[[], Awaitable[Any]]) -> Any:
        started = time.perf_counter()
        result = await call()
        parts[part].append(time.perf_counter() - started)
        return result

    async def job_row(job_id: str) -> None:
        async with sessions() as session:
            await repo.get_job(session, USER, job_id)

    try:
        for i in range(samples):
            job_id = job_ids[i % len(job_ids)]
            handle = client.get_workflow_handle(job_id)
            await timed("job row (Postgres)", lambda job_id=job_id: job_row(job_id))
            history: WorkflowHistory = await timed("fetch_history", handle.fetch_history)
            description = await timed("describe", handle.describe) if is_open(history) else None
            await timed("fold_status", lambda h=history, d=description: fold_status(h, d, client.data_converter))
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
    results: list[tuple[str, list[float], float]] = []
    try:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(
                build_cpu_worker(client, settings, ControlActivities(sessions, store, writer))
            )
            # Runs after the GPU worker has stopped (exit is LIFO): its stub activities are then
            # cancelled while their workflows are still open, so nothing completes into a closed run.
            stack.push_async_callback(terminate, client, job_ids)
            gpu = Worker(
                client,
                task_queue=settings.temporal.gpu_task_queue,
                activities=[render_video],
                max_concurrent_activities=args.jobs + 10,
            )
            await stack.enter_async_context(gpu)
            limits = httpx.Limits(max_connections=args.clients + 2, max_keepalive_connections=args.clients + 2)
            api = await stack.enter_async_context(
                httpx.AsyncClient(base_url=api_service.url, limits=limits, timeout=30)
            )
            started = time.perf_counter()
            job_ids += await submit_jobs(api, args.jobs)
            logger.info("submitted %d jobs in %.1f s", len(job_ids), time.perf_counter() - started)
            sample = await wait_all_rendering(api, job_ids)
            logger.info("all %d jobs rendering after %.1f s", len(job_ids), time.perf_counter() - started)
            history_events = len((await client.get_workflow_handle(job_ids[0]).fetch_history()).events)
            await timed_gets(api, job_ids, 50, 1)  # warm-up: connections, caches
            for clients in (1, args.clients):
                latencies, wall = await timed_gets(api, job_ids, args.requests, clients)
                results.append((f"{clients} client{'s' if clients > 1 else ''}", latencies, wall))
                logger.info("%d clients: p99 %.1f ms", clients, percentile(latencies, 99) * 1000)
            parts = await breakdown(settings, client, job_ids, args.breakdown)
        if evicted := collect_evicted_graphs():
            logger.info(
                "finalized %d LangGraph runs of PipelineWorkflow runs evicted mid-graph at worker shutdown", evicted
            )
    finally:
        api_service.stop()
        await engine.dispose()
    report(args, results, parts, history_events, len(httpx.Response(200, json=sample).content))


async def terminate(client: Client, job_ids: list[str]) -> None:
    """End the jobs (the GPU stub would never finish on its own)."""

    async def one(job_id: str) -> None:
        try:
            await client.get_workflow_handle(job_id).terminate(reason="status benchmark finished")
        except Exception as err:  # already closed: nothing to do
            logger.warning("could not terminate %s: %s", job_id, err)

    await asyncio.gather(*(one(j) for j in job_ids))


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
    results: list[tuple[str, list[float], float]],
    parts: list[tuple[str, list[float]]],
    history_events: int,
    body_bytes: int,
) -> None:
    out(f"## `GET /api/status/{{jobId}}` with {args.jobs} jobs running")
    out()
    out(f"{machine()}. Temporal dev server (SQLite), PostgreSQL and S3 on the same machine; API under uvicorn")
    out("in its own process; both workers and the HTTP clients in the benchmark process. Every job is in")
    out(f"`render` (a heartbeating GPU stub); a status read folds {history_events} history events plus")
    out(f"`describe()` into a {body_bytes}-byte answer. Requests go round-robin over the jobs.")
    out()
    rows = []
    for label, latencies, wall in results:
        p99 = percentile(latencies, 99)
        rows.append([label, len(latencies), ms(median(latencies)), ms(percentile(latencies, 90)), ms(p99),
                     ms(max(latencies)), f"{len(latencies) / wall:.0f}", "yes" if p99 <= TARGET_P99 else "NO"])  # fmt: skip
    out(table(["clients", "requests", "p50 (ms)", "p90 (ms)", "p99 (ms)", "max (ms)", "req/s", "p99 ≤ 50 ms"], rows))
    out()
    out(f"Where one status read spends its time (median of {args.breakdown} calls, from the benchmark process):")
    out()
    total = sum(median(samples) for _, samples in parts)
    out(table(["part", "p50 (ms)", "p99 (ms)", "share of p50 sum"],
              [[name, ms(median(s)), ms(percentile(s, 99)), f"{median(s) / total * 100:.0f}%"] for name, s in parts]))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.status", description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100, help="jobs running during the measurement")
    parser.add_argument("--requests", type=int, default=1000, help="status reads per client setting")
    parser.add_argument("--clients", type=int, default=10, help="concurrent clients of the second pass")
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
