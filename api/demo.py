"""`make demo`: submit one job per variant to the running API, follow it, and save the videos."""

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import httpx

API = "http://127.0.0.1:8000"
TOPIC = "Why the sky is blue"


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def wait_for_stack(api: httpx.Client, stack_log: Path | None, timeout: float = 300) -> None:
    """Wait until `/healthz` answers 200 and both workers advertise capabilities."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if api.get("/healthz").status_code == 200:
                caps = api.get("/api/capabilities").json()
                if caps.get("cpu") and caps.get("gpu"):
                    return
        except httpx.TransportError:
            pass
        if stack_log and stack_log.exists() and "died" in stack_log.read_text():
            raise SystemExit(f"the stack failed to start:\n{stack_log.read_text()[-3000:]}")
        time.sleep(1)
    raise SystemExit(f"the stack did not become healthy within {timeout:.0f} s; see {stack_log}")


def follow(api: httpx.Client, job_id: str, timeout: float = 600) -> dict[str, Any]:
    """Print each node's state as it changes until the job ends."""
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status: dict[str, Any] = api.get(f"/api/status/{job_id}").json()
        for node in status["nodes"]:
            progress = node.get("progress") or {}
            line = f"{node['state']}" + (
                f" {progress.get('stage')} {progress.get('percent', 0):.0f}%"
                if node["state"] == "running" and progress
                else ""
            )
            if seen.get(node["id"]) != line:
                seen[node["id"]] = line
                _say(f"  {node['id']:<12} {node['task']:<26} {line}")
        if status["status"] in ("completed", "failed", "cancelled"):
            return status
        time.sleep(0.5)
    raise SystemExit(f"job {job_id} did not finish within {timeout:.0f} s")


def run_one(api: httpx.Client, variant: str, out_dir: Path) -> bool:
    """Submit, follow and download one job; True when it completed."""
    started = time.monotonic()
    body = {
        "mode": "generate",
        "topic": TOPIC,
        "style": "playful",
        "variant": variant,
        "options": {"durationSeconds": 12, "resolution": "480p"},
    }
    response = api.post("/api/generate", json=body)
    if response.status_code != 202:
        _say(f"submission refused ({response.status_code}): {response.text}")
        return False
    job_id = response.json()["jobId"]
    _say(f"\n{variant}: job {job_id} queued")
    status = follow(api, job_id)
    record = api.get(f"/api/jobs/{job_id}").json()
    _say(f"{variant}: {status['status']} in {time.monotonic() - started:.1f} s")
    _say(f"  Temporal Web UI: {record['temporalUiUrl']}")
    _say(f"  web page: {API}/ (job cards, history, player)")
    if status["status"] != "completed":
        _say(f"  error: {status.get('error')}")
        return False
    video = record["video"]
    path = out_dir / f"{job_id}-{variant}.mp4"
    path.write_bytes(httpx.get(video["url"], timeout=60).content)
    _say(f"  script ({record['scriptSource']}): {record['scriptSummary']}")
    _say(f"  video: {path} ({path.stat().st_size // 1024} KiB)")
    _say(f"  download URL: {video['url']}")
    return True


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--api", default=API)
    parser.add_argument("--wait-for-stack", action="store_true")
    parser.add_argument("--stack-log", type=Path)
    parser.add_argument("--out", type=Path, default=Path(".local/demo"))
    parser.add_argument("--variants", nargs="+", default=["svd", "sadtalker"])
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with httpx.Client(base_url=args.api, timeout=30) as api:
        if args.wait_for_stack:
            wait_for_stack(api, args.stack_log)
        results = [run_one(api, variant, args.out) for variant in args.variants]
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
