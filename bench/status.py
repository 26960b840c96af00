"""Latency of `GET /api/status/{jobId}` while 100 jobs are running.

Starts its own Temporal dev server, PostgreSQL and S3 server (`devstack.servers`, temporary
directory, free ports), the real API under uvicorn in its own process on a free port, the
real CPU worker (control activities with the offline script writer) and a GPU worker whose
`render_video` heartbeats (with the GPU worker's 1 s throttle) until cancelled. It submits
100 `generate` jobs through the API, waits until every one is in `render`, then times status
reads round-robin over the jobs in three passes: one client, N concurrent clients, and an
open loop at a fixed rate. It then measures how fresh reads are (the age of the heartbeat
progress shown; from a job's closing history event to the first read showing it, for jobs
cancelled through Temporal), times the parts of one read (job row, history, describe, fold) to
show what dominates, cancels the jobs through the API and stops everything. Every
request carries the API key of a user the benchmark creates (the per-user cap on open jobs is
raised to `--jobs`).

Run: `python -m bench.status [--jobs 100] [--requests 1000] [--clients 10] [--rate 50]`.
`--smoke` (the CI size, a test runs it): 3 jobs, 20 reads per pass, 2 clients, 5 reads timed part by part,
10 freshness reads and 1 cancel.
"""

import argparse
import asyncio
import dataclasses
import gc
import logging
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory
from temporalio.worker import Worker

from activities.control import ControlActivities
from activities.script_writer import OfflineScriptWriter
from activities.worker import build_worker as build_cpu_worker
from activities.worker import manifest as cpu_manifest
from api.status import fold_status, is_open
from bench._common import (
    Stack,
    cpu_seconds,
    local_stack,
    log_tails,
    machine,
    median,
    ms,
    out,
    percentile,
    quiet_logging,
    start_api,
    table,
)
from core import repo
from core.auth import create_user_with_key
from core.capabilities import publish
from core.settings import Settings
from gpu_worker.worker import manifest as gpu_manifest
from schemas import names
from schemas.tasks import RenderInput, RenderResult

logger = logging.getLogger("bench.status")

TARGET_P99 = 0.050
TARGET_EVENT_TO_READ = 0.300  # p99 from a history event to the first status read that shows it
TARGET_PROGRESS_AGE = 1.5  # how old the heartbeat progress a read shows may be
USER = "bench"  # owns every job; the benchmark creates it with an API key


@activity.defn(name=names.RENDER_VIDEO)
async def render_video(_inp: RenderInput) -> RenderResult:
    """Stay running (heartbeating progress) until cancelled: a render that never ends."""
    percent = 0.0
    while True:
        percent = min(percent + 1, 95)
        # `sent_at` (wall clock, same machine) lets the benchmark see how old the progress a read shows is.
        activity.heartbeat(
            {"stage": "animate", "percent": percent, "stage_index": 2, "stage_count": 6, "sent_at": time.time()}
        )
        await asyncio.sleep(1)


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
    sessions: async_sessionmaker[AsyncSession], client: Client, job_ids: list[str], samples: int
) -> list[tuple[str, list[float]]]:
    """Time each part of one status read, as `api/routes/jobs.py` does it, from this process."""
    parts: dict[str, list[float]] = {"job row (Postgres)": [], "fetch_history": [], "describe": [], "fold_status": []}

    async def timed(part: str, call: Awaitable[Any]) -> Any:
        started = time.perf_counter()
        result = await call
        parts[part].append(time.perf_counter() - started)
        return result

    async def job_row(job_id: str) -> None:
        async with sessions() as session:
            if await repo.get_job(session, USER, job_id) is None:
                raise RuntimeError(f"no jobs row for {job_id} of {USER}")

    for i in range(samples):
        job_id = job_ids[i % len(job_ids)]
        handle = client.get_workflow_handle(job_id)
        await timed("job row (Postgres)", job_row(job_id))
        history: WorkflowHistory = await timed("fetch_history", handle.fetch_history())
        description = await timed("describe", handle.describe()) if is_open(history) else None
        await timed("fold_status", fold_status(history, description, client.data_converter))
    return list(parts.items())


# --- the run ---------------------------------------------------------------------------------


async def run_bench(args: argparse.Namespace, stack: Stack) -> None:
    settings, sessions, client = stack.settings, stack.services.sessions, stack.services.temporal
    writer = OfflineScriptWriter()
    await publish(sessions, cpu_manifest(settings, writer, settings.temporal.cpu_task_queue))
    await publish(sessions, gpu_manifest(settings, settings.temporal.gpu_task_queue))
    key = await create_user_with_key(sessions, USER, name="bench.status")
    api_service = await asyncio.to_thread(start_api, stack.root, stack.env)
    job_ids: list[str] = []
    try:
        async with AsyncExitStack() as exits:
            cpu_worker = build_cpu_worker(client, settings, ControlActivities(sessions, stack.services.store, writer))
            await exits.enter_async_context(cpu_worker)
            # Exit is LIFO: this runs once the GPU worker has stopped, for any job the cancel left open.
            exits.push_async_callback(terminate_open, client, job_ids)
            await exits.enter_async_context(gpu_stub_worker(client, settings, args.jobs + 10))
            connections = max(args.clients, OPEN_LOOP_IN_FLIGHT) + 2
            api = await exits.enter_async_context(
                httpx.AsyncClient(
                    base_url=api_service.url,
                    headers={"Authorization": f"Bearer {key}"},
                    limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
                    timeout=30,
                )
            )
            pids = {"API": api_service.pid, "Temporal": stack.servers["temporal"].pid, "bench": os.getpid()}
            measured = await measure(args, api, client, sessions, pids, job_ids)
    except BaseException:
        log_tails(logger, [api_service], lines=40)
        raise
    finally:
        api_service.stop()
        if evicted := collect_evicted_graphs():
            logger.info("collected the LangGraph generators of %d PipelineWorkflow runs evicted mid-graph", evicted)
    report(args, measured)


def gpu_stub_worker(client: Client, settings: Settings, max_concurrent: int) -> Worker:
    """A GPU worker whose `render_video` never ends, heartbeating with the real worker's throttle."""
    throttle = timedelta(seconds=settings.gpu.heartbeat_throttle_seconds)  # as gpu_worker.worker sets it
    return Worker(
        client,
        task_queue=settings.temporal.gpu_task_queue,
        activities=[render_video],
        max_concurrent_activities=max_concurrent,
        max_heartbeat_throttle_interval=throttle,
        default_heartbeat_throttle_interval=throttle,
    )


async def measure(
    args: argparse.Namespace,
    api: httpx.AsyncClient,
    client: Client,
    sessions: async_sessionmaker[AsyncSession],
    pids: dict[str, int | None],
    job_ids: list[str],
) -> "Measured":
    """Submit the jobs, wait until all render, time the three passes and the parts, cancel the jobs."""
    started = time.perf_counter()
    job_ids += await submit_jobs(api, args.jobs)
    logger.info("submitted %d jobs in %.1f s", len(job_ids), time.perf_counter() - started)
    sample = await wait_all_rendering(api, job_ids)
    logger.info("all %d jobs rendering after %.1f s", len(job_ids), time.perf_counter() - started)
    history_events = len((await client.get_workflow_handle(job_ids[0]).fetch_history()).events)
    read = status_reader(api, job_ids)
    await closed_loop(read, min(50, args.requests), 1)  # warm-up: connections, caches
    background = await idle_cpu(pids, seconds=args.idle)
    passes: list[tuple[str, Callable[[], Awaitable[tuple[list[float], float]]]]] = [
        ("1 client, sequential", lambda: closed_loop(read, args.requests, 1)),
        (f"{args.clients} concurrent clients", lambda: closed_loop(read, args.requests, args.clients)),
        (f"open loop, {args.rate:g} req/s", lambda: open_loop(read, args.requests, args.rate)),
    ]
    results: list[Pass] = []
    for label, run_pass in passes:
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        latencies, wall = await run_pass()
        cpu = {name: (cpu_seconds(pid) - before[name] - background[name] * wall) / len(latencies)
               for name, pid in pids.items()}  # fmt: skip
        results.append(Pass(label, latencies, wall, cpu))
        logger.info("%s: p50 %.1f ms, p99 %.1f ms", label, median(latencies) * 1000, percentile(latencies, 99) * 1000)
    ages, delays = await freshness(api, client, job_ids, args.fresh_reads, args.fresh_cancels)
    parts = await breakdown(sessions, client, job_ids, args.breakdown)
    started = time.perf_counter()
    ended = await cancel_all(api, job_ids[args.fresh_cancels :]) + args.fresh_cancels
    logger.info("cancelled through the API: %d of %d jobs ended in %.1f s", ended, len(job_ids),
                time.perf_counter() - started)  # fmt: skip
    if ended < len(job_ids):
        raise RuntimeError(f"only {ended} of {len(job_ids)} jobs ended after their cancel")
    body_bytes = len(httpx.Response(200, json=sample).content)
    return Measured(results, parts, history_events, body_bytes, background, ages, delays)


async def freshness(
    api: httpx.AsyncClient, client: Client, job_ids: list[str], reads: int, cancels: int, poll: float = 0.01
) -> tuple[list[float], list[float]]:
    """How fresh followed reads are: the age of the progress each read shows, and event → read delays.

    Progress: `reads` reads 50 ms apart, round-robin; age = now − the heartbeat's `sent_at`. Events:
    the first `cancels` jobs are cancelled one by one through Temporal (not the API), and their
    status is read every `poll` s until it says `cancelled`; delay = that read's time − the time of
    the history's closing event (server clock, same machine). The poll adds up to `poll` s.
    """
    ages = []
    for i in range(reads):
        body = (await api.get(f"/api/status/{job_ids[i % len(job_ids)]}")).json()
        progress = next(n for n in body["nodes"] if n["id"] == "render")["progress"]
        ages.append(time.time() - progress["sent_at"])
        await asyncio.sleep(0.05)
    delays = []
    for job_id in job_ids[:cancels]:
        handle = client.get_workflow_handle(job_id)
        await handle.cancel()
        deadline = time.monotonic() + 60
        while (await api.get(f"/api/status/{job_id}")).json()["status"] != "cancelled":
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} not shown cancelled 60 s after its cancel")
            await asyncio.sleep(poll)
        seen = time.time()
        closed = (await handle.fetch_history()).events[-1].event_time.ToDatetime(tzinfo=UTC).timestamp()
        delays.append(seen - closed)
    return ages, delays


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


@dataclasses.dataclass
class Measured:
    """Everything the report prints."""

    passes: list[Pass]
    parts: list[tuple[str, list[float]]]  # the parts of one read, by name
    history_events: int
    body_bytes: int  # of one status answer
    background: dict[str, float]  # CPU seconds per second of each process with no reads
    progress_ages: list[float]  # of the heartbeat progress each freshness read showed (s)
    event_delays: list[float]  # from a job's closing history event to the first read showing it (s)


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


def report(args: argparse.Namespace, measured: Measured) -> None:
    results, parts, background = measured.passes, measured.parts, measured.background
    history_events, body_bytes = measured.history_events, measured.body_bytes
    out(f"## `GET /api/status/{{jobId}}` with {args.jobs} jobs running")
    out()
    out(f"{machine()}.")
    out("Temporal dev server (SQLite), PostgreSQL and S3 on the same machine; the API under uvicorn in its")
    out("own process; both workers and the HTTP clients in the benchmark process. Every job is in `render`")
    out(f"(a heartbeating GPU stub) with {history_events} history events; the API serves each read from the job's")
    out("follower (`api/followers.py`: one history long poll and at most one `describe()` a second per job),")
    out(f"a {body_bytes}-byte answer. Requests go round-robin over the jobs. CPU/req is each process's CPU time")
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
    out(
        f"The parts of a direct read (what the first read of a job, before its follower, costs; median of {args.breakdown}"
    )
    out("reads, from the benchmark process); a followed read skips the history and `describe()` parts, so the")
    out("'rest' line can go negative against the followed single-client p50:")
    out()
    single = median(results[0].latencies)
    rows = [[name, ms(median(s)), ms(percentile(s, 99)), f"{median(s) / single * 100:.0f}%"] for name, s in parts]
    rest = single - sum(median(s) for _, s in parts)
    rows.append(["rest (HTTP, FastAPI, JSON)", ms(rest), "", f"{rest / single * 100:.0f}%"])
    out(table(["part", "p50 (ms)", "p99 (ms)", "share of 1-client p50"], rows))
    out()
    ages, delays = measured.progress_ages, measured.event_delays
    out(f"Freshness of followed reads: the age of the heartbeat progress in {len(ages)} reads (50 ms apart), and")
    out(f"for {len(delays)} job(s) cancelled through Temporal, the time from the closing history event to the first")
    out("read (polled every 10 ms) that shows `cancelled`:")
    out()
    out(table(["measure", "samples", "p50", "p99", "max", "target (p99)", "met"], [
        ["progress age at read", len(ages), f"{median(ages):.2f} s", f"{percentile(ages, 99):.2f} s",
         f"{max(ages):.2f} s", f"≤ {TARGET_PROGRESS_AGE} s", "yes" if percentile(ages, 99) <= TARGET_PROGRESS_AGE else "NO"],
        ["history event → read", len(delays), f"{ms(median(delays))} ms", f"{ms(percentile(delays, 99))} ms",
         f"{ms(max(delays))} ms",
         f"≤ {TARGET_EVENT_TO_READ * 1000:.0f} ms", "yes" if percentile(delays, 99) <= TARGET_EVENT_TO_READ else "NO"],
    ]))  # fmt: skip
    out()
    out("Heartbeats reach Temporal at most once a second (the worker's throttle) and a follower calls")
    out("`describe()` at most once a second, so progress can be up to about two seconds old.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.status", description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100, help="jobs running during the measurement")
    parser.add_argument("--requests", type=int, default=1000, help="status reads per client setting")
    parser.add_argument("--clients", type=int, default=10, help="concurrent clients of the second pass")
    parser.add_argument("--rate", type=float, default=50, help="reads per second of the open-loop pass")
    parser.add_argument("--breakdown", type=int, default=200, help="status reads timed part by part")
    parser.add_argument("--idle", type=float, default=5, help="seconds of background CPU measured with no reads")
    parser.add_argument("--fresh-reads", type=int, default=200, help="reads timing the age of the progress shown")
    parser.add_argument("--fresh-cancels", type=int, default=20, help="jobs cancelled to time event → read")
    parser.add_argument("--smoke", action="store_true", help="CI size: 3 jobs, 20 reads a pass, 2 clients")
    args = parser.parse_args(argv)
    if args.smoke:
        args.jobs, args.requests, args.clients, args.rate, args.breakdown, args.idle = 3, 20, 2, 20, 5, 1
        args.fresh_reads, args.fresh_cancels = 10, 1
    quiet_logging()

    async def in_stack() -> None:
        async with local_stack("status", {"APP_API__MAX_CONCURRENT_JOBS": str(args.jobs)}) as stack:
            await run_bench(args, stack)

    asyncio.run(in_stack())
    return 0


if __name__ == "__main__":
    sys.exit(main())
