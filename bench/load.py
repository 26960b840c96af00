"""Load: 100 `generate` jobs submitted at once through the HTTP API, each run to its video.

Starts its own Temporal dev server, PostgreSQL and S3 server (`devstack.servers`, temporary
directory, free ports), then the processes `make up` runs: the API under uvicorn, the CPU
worker (`python -m activities.worker`, offline script writer) and `--gpu-workers` GPU workers
(`python -m gpu_worker.worker`, embedded CPU runtime), all on fresh task queues. It creates
`--users` users with API keys (the per-user cap on open jobs is raised to jobs ÷ users), submits
every job at once with a short render preset (5 s, the shortest allowed; 480p, 12 fps, no captions) and an
`Idempotency-Key` (a 429 is retried after its `Retry-After` with the same key), and while they
run, a poller reads `GET /api/status/{jobId}` round-robin over the open jobs and times each read.

When every job has ended it checks that none was lost or duplicated: every job's status is
`completed`; Temporal holds exactly one `PipelineWorkflow` run per job and none besides; the
`jobs` table holds exactly the submitted ids; each job has exactly one (non-partial) video
artifact, whose object is in S3 (the exit status is 1 when any of that fails). Throughput is
completed jobs per minute from the first submission to the last workflow close. Beside it, what
the run cost (`bench/_costs.py`, from `/proc`): CPU seconds per job of the whole stack (servers,
API, workers, their children, this process), of the Temporal server and of the GPU workers; the
CPU-bound ceiling that implies (cores × 60 ÷ stack CPU per job); how many cores the stack and the
whole machine kept busy; and the history events of each job's workflow (fetched after the run).

`--gpu-workers 1,2,4` runs the whole benchmark once per count, each on a fresh stack, and ends
with a "scaling out" table: jobs/min per count, the speed-up over the first, CPU per job.

Run: `python -m bench.load [--jobs 100] [--gpu-workers 1[,2,4]] [--users 25] [--timeout 1800]`.
`--smoke` (the CI size, a test runs it): 2 jobs of one user, one GPU worker, the same checks.
"""

import argparse
import asyncio
import logging
import math
import os
import statistics
import sys
import textwrap
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select

from bench._common import (
    Stack,
    local_stack,
    log_tails,
    machine,
    median,
    ms,
    out,
    percentile,
    quiet_logging,
    start_api,
    start_worker,
    table,
    tail,
)
from bench._costs import CpuSample
from core.auth import create_user_with_key
from core.db import Artifact, Job
from core.settings import Settings
from devstack.process import Service
from schemas import names

logger = logging.getLogger("bench.load")

FINAL = frozenset({"completed", "failed", "cancelled"})


# --- processes -------------------------------------------------------------------------------


async def wait_for_workers(
    api: httpx.AsyncClient, admin_key: str, settings: Settings, gpu_workers: int, processes: list[Service]
) -> None:
    """Until the API lists a live CPU worker and `gpu_workers` live GPU workers on our queues."""
    wanted = {"cpu": 1, "gpu": gpu_workers}
    queues = {settings.temporal.cpu_task_queue, settings.temporal.gpu_task_queue}
    deadline = time.monotonic() + 180
    while True:
        for process in processes:
            if not process.alive():
                raise RuntimeError(f"{process.name} exited at start-up; log:\n{tail(process.log_path)}")
        response = await api.get("/api/admin/workers", headers={"Authorization": f"Bearer {admin_key}"})
        response.raise_for_status()
        live = Counter(w["plane"] for w in response.json()["data"] if w["live"] and w["taskQueue"] in queues)
        if all(live[plane] >= count for plane, count in wanted.items()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"workers not live after 180 s: {dict(live)} of {wanted}")
        await asyncio.sleep(0.5)


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Submitted:
    """One job as the benchmark saw it."""

    job_id: str
    key: str  # the owner's API key
    submit_latency: float
    retries: int = 0  # 429s (and dropped connections) answered by sending it again
    status: str = "queued"
    final: dict[str, Any] = field(default_factory=dict)


def job_body(args: argparse.Namespace, i: int) -> dict[str, Any]:
    """The render preset of every job: short, small, no captions."""
    options = {"durationSeconds": args.duration, "resolution": args.resolution, "fps": args.fps, "captions": False}
    return {"topic": f"load benchmark job {i}", "variant": args.variant, "options": options}


async def submit(api: httpx.AsyncClient, args: argparse.Namespace, i: int, key: str, run_id: str) -> Submitted:
    """`POST /api/generate` once; a 429 or a dropped connection is retried with the same `Idempotency-Key`."""
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": f"load-{run_id}-{i}"}
    started = time.perf_counter()
    first_latency: float | None = None
    retries = 0
    while True:
        try:
            response = await api.post("/api/generate", json=job_body(args, i), headers=headers)
        except httpx.TransportError as err:
            if retries >= 5:
                raise
            logger.warning("job %d: %r; sending it again with the same Idempotency-Key", i, err)
            retries += 1
            continue
        first_latency = first_latency if first_latency is not None else time.perf_counter() - started
        if response.status_code == 429:
            retries += 1
            await asyncio.sleep(float(response.headers.get("Retry-After", "5")))
            continue
        if response.status_code != 202:
            raise RuntimeError(f"job {i}: {response.status_code} {response.text[:300]}")
        return Submitted(response.json()["jobId"], key, first_latency, retries)


async def poll(api: httpx.AsyncClient, jobs: list[Submitted], interval: float, latencies: list[float]) -> None:
    """Read the status of each open job in turn, timing every read, until all have ended."""
    while open_jobs := [j for j in jobs if j.status not in FINAL]:
        for job in open_jobs:
            started = time.perf_counter()
            response = await api.get(f"/api/status/{job.job_id}", headers={"Authorization": f"Bearer {job.key}"})
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"status of {job.job_id}: {response.status_code} {response.text[:300]}")
            body = response.json()
            job.status = body["status"]
            if job.status in FINAL:
                job.final = body
            await asyncio.sleep(interval)


async def progress(jobs: list[Submitted], started: float) -> None:
    """A line on stderr every 15 s."""
    while True:
        await asyncio.sleep(15)
        counts = Counter(j.status for j in jobs)
        logger.info("%.0f s: %s", time.perf_counter() - started, ", ".join(f"{n} {s}" for s, n in counts.items()))


@dataclass
class Verdict:
    """What the checks after the run found."""

    statuses: Counter[str]
    runs_per_job: Counter[int]  # how many jobs have 0, 1, 2… PipelineWorkflow runs
    stray_workflows: int  # PipelineWorkflow runs on our queue that no submission returned
    db_rows_match: bool
    videos_per_job: Counter[int]  # -1: the API and the `artifacts` table disagree
    videos_in_s3: int
    retried_nodes: int
    closes: list[datetime]
    job_seconds: list[float]
    render_seconds: list[float]

    def clean(self, jobs: int) -> bool:
        """Every job completed, with one workflow run, one `jobs` row and one video (API, DB and S3)."""
        return (
            self.statuses["completed"] == jobs
            and self.runs_per_job[1] == jobs
            and self.stray_workflows == 0
            and self.db_rows_match
            and self.videos_per_job[1] == jobs
            and self.videos_in_s3 == jobs
        )


async def verify(api: httpx.AsyncClient, stack: Stack, jobs: list[Submitted], users: list[str]) -> Verdict:
    """The after-run checks: statuses, workflow runs, job rows, video artifacts (API, DB, S3)."""
    settings, client, store = stack.settings, stack.services.temporal, stack.services.store
    runs: dict[str, list[Any]] = defaultdict(list)
    query = f"WorkflowType = '{names.PIPELINE_WORKFLOW}' AND TaskQueue = '{settings.temporal.cpu_task_queue}'"
    async for wf in client.list_workflows(query=query):
        runs[wf.id].append(wf)
    ids = {j.job_id for j in jobs}
    async with stack.services.sessions() as session:
        rows = set((await session.scalars(select(Job.id).where(Job.user_id.in_(users)))).all())
        video_rows = Counter((await session.scalars(select(Artifact.job_id).where(Artifact.kind == "video"))).all())
    videos_per_job: Counter[int] = Counter()
    videos_in_s3 = 0
    for job in jobs:
        record = (await api.get(f"/api/jobs/{job.job_id}", headers={"Authorization": f"Bearer {job.key}"})).json()
        videos = [a for a in record.get("artifacts", []) if a["kind"] == "video" and not a["partial"]]
        videos_per_job[len(videos) if len(videos) == video_rows[job.job_id] else -1] += 1
        if len(videos) == 1 and (info := await asyncio.to_thread(store.stat, videos[0]["uri"])) and info.size > 0:
            videos_in_s3 += 1
    closes = [r.close_time for rs in runs.values() for r in rs if r.close_time is not None]
    job_seconds = [(r.close_time - r.start_time).total_seconds() for rs in runs.values() for r in rs if r.close_time]
    renders = [n for j in jobs for n in j.final.get("nodes", []) if n["id"] == "render" and n["finishedAt"]]
    return Verdict(
        statuses=Counter(j.final.get("status", j.status) for j in jobs),
        runs_per_job=Counter(len(runs.get(i, [])) for i in ids),
        stray_workflows=sum(len(rs) for wid, rs in runs.items() if wid not in ids),
        db_rows_match=rows == ids,
        videos_per_job=videos_per_job,
        videos_in_s3=videos_in_s3,
        retried_nodes=sum(1 for j in jobs for n in j.final.get("nodes", []) if n["attempt"] > 1),
        closes=closes,
        job_seconds=job_seconds,
        render_seconds=[
            (datetime.fromisoformat(n["finishedAt"]) - datetime.fromisoformat(n["startedAt"])).total_seconds()
            for n in renders
        ],
    )


# --- what a run cost ----------------------------------------------------------------------------


async def history_events(stack: Stack, jobs: list[Submitted]) -> list[int]:
    """How many events each job's workflow history holds (fetched after the run)."""
    client = stack.services.temporal
    return [len((await client.get_workflow_handle(job.job_id).fetch_history()).events) for job in jobs]


@dataclass(frozen=True)
class RunSummary:
    """One run's throughput and what it cost, for the scaling table."""

    gpu_workers: int
    completed: int
    span_seconds: float  # first submission → last workflow close
    cpu: CpuSample  # first submission → every job seen ended
    events_per_job: float
    clean: bool

    @property
    def jobs_per_minute(self) -> float:
        """Completed jobs per minute of the span."""
        return self.completed / self.span_seconds * 60 if self.span_seconds > 0 else math.nan

    @property
    def ceiling_jobs_per_minute(self) -> float:
        """Jobs per minute if the stack had every core to itself and kept them busy: no worker count beats it."""
        stack_per_job = self.cpu.stack / max(self.completed, 1)
        return (os.cpu_count() or 1) * 60 / stack_per_job if stack_per_job > 0 else math.nan


# --- the run ---------------------------------------------------------------------------------


async def run_bench(args: argparse.Namespace, stack: Stack, gpu_workers: int) -> RunSummary:
    """Run the jobs with `gpu_workers` GPU workers, check them and print the report."""
    settings = stack.settings
    sessions = stack.services.sessions
    users = [f"load-{u:03d}" for u in range(args.users)]
    keys = [await create_user_with_key(sessions, user) for user in users]
    admin_key = await create_user_with_key(sessions, "load-admin", admin=True)

    processes = [start_worker("cpu-worker", "activities.worker", stack.root, stack.env)]
    processes += [
        start_worker(f"gpu-worker-{g}", "gpu_worker.worker", stack.root, stack.env) for g in range(gpu_workers)
    ]
    gpu_pids = [process.pid for process in processes[1:]]
    temporal_pid = stack.servers["temporal"].pid
    server_pids = [server.pid for server in stack.servers.values()]
    jobs: list[Submitted] = []
    latencies: list[float] = []
    try:
        processes.append(await asyncio.to_thread(start_api, stack.root, stack.env))
        limits = httpx.Limits(max_connections=args.jobs + 10, max_keepalive_connections=args.jobs + 10)
        async with httpx.AsyncClient(base_url=processes[-1].url, limits=limits, timeout=120) as api:
            await wait_for_workers(api, admin_key, settings, gpu_workers, processes[:-1])
            logger.info("stack ready: API, CPU worker, %d GPU worker(s); submitting %d jobs", gpu_workers, args.jobs)
            before = CpuSample.now(server_pids, temporal_pid, gpu_pids)
            t0_wall, t0 = time.time(), time.perf_counter()
            run_id = uuid.uuid4().hex[:8]
            jobs += await asyncio.gather(*(submit(api, args, i, keys[i % len(keys)], run_id) for i in range(args.jobs)))
            submitted_in = time.perf_counter() - t0
            logger.info("submitted %d jobs in %.1f s", len(jobs), submitted_in)
            reporter = asyncio.create_task(progress(jobs, t0))
            try:
                await asyncio.wait_for(poll(api, jobs, args.poll_interval, latencies), args.timeout)
            finally:
                reporter.cancel()
            cost = CpuSample.now(server_pids, temporal_pid, gpu_pids) - before
            logger.info("all %d jobs ended after %.1f s; verifying", len(jobs), time.perf_counter() - t0)
            verdict = await verify(api, stack, jobs, users)
            events = await history_events(stack, jobs)
    except BaseException:
        log_tails(logger, processes)
        raise
    finally:
        for process in reversed(processes):
            process.stop()
    span = max(c.timestamp() for c in verdict.closes) - t0_wall if verdict.closes else math.nan
    summary = RunSummary(
        gpu_workers=gpu_workers,
        completed=verdict.statuses["completed"],
        span_seconds=span,
        cpu=cost,
        events_per_job=statistics.mean(events) if events else math.nan,
        clean=verdict.clean(len(jobs)),
    )
    report(args, jobs, latencies, verdict, summary, submitted_in)
    return summary


def report(
    args: argparse.Namespace,
    jobs: list[Submitted],
    latencies: list[float],
    verdict: Verdict,
    summary: RunSummary,
    submitted_in: float,
) -> None:
    n = len(jobs)
    submit_latencies = [j.submit_latency for j in jobs]

    def exactly_one(counts: Counter[int]) -> str:
        others = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()) if k != 1)
        return f"{counts[1]} of {n}" + (f" (others {others})" if others else "")

    workers = f"{summary.gpu_workers} GPU worker" + ("s" if summary.gpu_workers != 1 else "")
    out(f"## {n} `generate` jobs at once through the HTTP API, {workers}")
    out()
    out(f"{machine()}.")
    about = (
        "Temporal dev server (SQLite), PostgreSQL and S3 on the same machine; the API (uvicorn), the CPU worker "
        f"and the {workers} as processes of their own. {args.users} users, {math.ceil(n / args.users)} jobs each; "
        f"every job {args.variant}, {args.duration:g} s, {args.resolution}, {args.fps} fps, no captions. One poller "
        f"reads `GET /api/status` round-robin over the open jobs, {args.poll_interval * 1000:.0f} ms between reads."
    )
    out(textwrap.fill(about, width=110))
    out()
    cpu = summary.cpu
    rows: list[list[object]] = [
        ["jobs submitted / completed", f"{n} / {summary.completed}"],
        [
            "jobs failed / cancelled / still open",
            f"{verdict.statuses['failed']} / {verdict.statuses['cancelled']} / "
            f"{n - sum(verdict.statuses[s] for s in FINAL)}",
        ],  # fmt: skip
        ["exactly one PipelineWorkflow run per job", exactly_one(verdict.runs_per_job)],
        ["workflows no submission returned", verdict.stray_workflows],
        ["`jobs` rows = the submitted ids", "yes" if verdict.db_rows_match else "NO"],
        ["exactly one video artifact per job (API and DB)", exactly_one(verdict.videos_per_job)],
        ["video object in S3 (size > 0)", f"{verdict.videos_in_s3} of {n}"],
        ["nodes that needed a retry", verdict.retried_nodes],
        ["submissions sent again (429, dropped connection)", sum(j.retries for j in jobs)],
        ["submission: all jobs accepted in", f"{submitted_in:.1f} s"],
        [
            "`POST /api/generate` p50 / p99",
            f"{ms(median(submit_latencies))} / {ms(percentile(submit_latencies, 99))} ms",
        ],
        ["first submission → last job closed", f"{summary.span_seconds:.1f} s"],
        ["throughput", f"{summary.jobs_per_minute:.1f} jobs/min"],
        [
            "job time (workflow start → close) p50 / p99",
            f"{median(verdict.job_seconds):.1f} / {percentile(verdict.job_seconds, 99):.1f} s",
        ],  # fmt: skip
        [
            "render node p50 / p99",
            f"{median(verdict.render_seconds):.2f} / {percentile(verdict.render_seconds, 99):.2f} s",
        ],
        [
            f"`GET /api/status` p50 / p99 / max ({len(latencies)} reads)",
            f"{ms(median(latencies))} / {ms(percentile(latencies, 99))} / {ms(max(latencies, default=math.nan))} ms",
        ],  # fmt: skip
        ["history events per job (mean)", f"{summary.events_per_job:.1f}"],
        ["CPU per job: whole stack (servers, API, workers, ffmpeg)", f"{cpu.stack / max(n, 1):.2f} s"],
        ["CPU per job: Temporal server", f"{cpu.temporal / max(n, 1) * 1000:.0f} ms ({cpu.temporal:.1f} s in all)"],
        ["CPU per job: GPU workers with their ffmpeg runs", f"{cpu.gpu_workers / max(n, 1):.2f} s"],
        [
            f"CPU-bound ceiling on {os.cpu_count()} cores (cores ÷ stack CPU per job)",
            f"{summary.ceiling_jobs_per_minute:.1f} jobs/min",
        ],  # fmt: skip
        ["cores the stack kept busy (its CPU ÷ wall time)", f"{cpu.stack / cpu.wall:.2f}"],
        [
            "machine CPU busy during the run (all processes)",
            f"{cpu.machine / cpu.wall:.2f} of {os.cpu_count()} cores",
        ],  # fmt: skip
    ]
    out(table(["measurement", "result"], rows))


def scaling_report(summaries: list[RunSummary]) -> None:
    """One row per GPU-worker count: throughput, speed-up over the first row, and CPU per job."""
    base = summaries[0]
    out("## Scaling out: the same jobs with more GPU workers")
    out()
    rows: list[list[object]] = []
    for s in summaries:
        per_job = max(s.completed, 1)
        rows.append(
            [
                s.gpu_workers,
                f"{s.completed}",
                f"{s.jobs_per_minute:.1f}",
                f"{s.jobs_per_minute / base.jobs_per_minute:.2f}× ({s.gpu_workers / base.gpu_workers:g}×)",
                f"{s.cpu.stack / per_job:.2f}",
                f"{s.ceiling_jobs_per_minute:.1f}",
                f"{s.cpu.temporal / per_job * 1000:.0f}",
                f"{s.events_per_job:.1f}",
                f"{s.cpu.gpu_workers / per_job:.2f}",
                f"{s.cpu.stack / s.cpu.wall:.2f}",
                f"{s.cpu.machine / s.cpu.wall:.2f} of {os.cpu_count()}",
            ]
        )
    headers = [
        "GPU workers",
        "jobs",
        "jobs/min",
        "speed-up (ideal)",
        "stack CPU s/job",
        "CPU-bound ceiling jobs/min",
        "Temporal CPU ms/job",
        "history events/job",
        "GPU-worker CPU s/job",
        "stack cores",
        "machine cores busy",
    ]
    out(table(headers, rows))
    out()
    out(
        "speed-up: jobs/min over the first row's. Stack CPU: servers, API, workers and their children. "
        "Ceiling: cores × 60 ÷ stack CPU per job. Stack cores: its CPU ÷ wall time; machine cores busy: "
        "every process on the machine, other work included."
    )


def worker_counts(text: str) -> list[int]:
    """`--gpu-workers`: one count or a comma-separated list (`1,2,4`)."""
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("GPU worker counts are positive integers, e.g. 1 or 1,2,4")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100, help="generate jobs submitted at once")
    parser.add_argument(
        "--gpu-workers",
        type=worker_counts,
        default=[1],
        help="GPU worker processes (one render at a time each); a list such as 1,2,4 runs once per count",
    )
    parser.add_argument("--users", type=int, default=25, help="users the jobs are spread over (round-robin)")
    parser.add_argument("--duration", type=float, default=5, help="durationSeconds of each video (at least 5)")
    parser.add_argument("--resolution", default="480p")
    parser.add_argument("--fps", type=int, default=12)
    parser.add_argument("--variant", default="svd", choices=["svd", "sadtalker"])
    parser.add_argument("--poll-interval", type=float, default=0.1, help="seconds between the poller's status reads")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for every job to end")
    parser.add_argument("--smoke", action="store_true", help="CI size: 2 jobs of one user, one GPU worker")
    args = parser.parse_args(argv)
    if args.smoke:
        args.jobs, args.users, args.gpu_workers, args.timeout = 2, 1, [1], 300
    quiet_logging()
    extra_env = {"APP_API__MAX_CONCURRENT_JOBS": str(math.ceil(args.jobs / args.users)), "HF_HUB_OFFLINE": "1"}

    async def each_count() -> list[RunSummary]:
        summaries = []
        for count in args.gpu_workers:  # a fresh stack each: no history or queue left over from the last count
            async with local_stack("load", extra_env) as stack:
                summaries.append(await run_bench(args, stack, count))
        return summaries

    summaries = asyncio.run(each_count())
    if len(summaries) > 1:
        out()
        scaling_report(summaries)
    clean = all(s.clean for s in summaries)
    if not clean:
        logger.error("a job was lost, duplicated or did not complete (see the table)")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
