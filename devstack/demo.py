"""`make demo`: submit one job per variant to the running API, follow it, and save the videos.

Every API call carries `Authorization: Bearer <key>`: the key comes from `MYSPINBOT_API_KEY`, else
from the file `python -m devstack.stack up --with-apps` writes (`<root>/dev-api-key`).
"""

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

API = "http://127.0.0.1:8000"
TOPIC = "Why the sky is blue"
KEY_ENV = "MYSPINBOT_API_KEY"
KEY_FILE = "dev-api-key"  # devstack.apps.DEV_KEY_FILE, not imported: the demo needs only httpx


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def api_key(key_file: Path) -> str | None:
    """The key to call the API with: `MYSPINBOT_API_KEY`, else the stack's key file; None when neither exists."""
    if key := os.environ.get(KEY_ENV, "").strip():
        return key
    try:
        return key_file.read_text().strip() or None
    except FileNotFoundError:
        return None


def authenticate(api: httpx.Client, key_file: Path) -> None:
    """Send the API key with every call of `api`."""
    key = api_key(key_file)
    if key is None:
        raise SystemExit(
            f"no API key: set {KEY_ENV}, or start the stack with `python -m devstack.stack up --with-apps` "
            f"(it writes {key_file})"
        )
    api.headers["Authorization"] = f"Bearer {key}"


def wait_for_stack(api: httpx.Client, key_file: Path, stack_log: Path | None, timeout: float = 300) -> None:
    """Wait until `/healthz` answers 200, the API key is accepted and both workers advertise capabilities.

    The key file is read again on every try: `up` writes it once the API is healthy, and may
    replace a stale one left from an earlier stack.
    """
    deadline = time.monotonic() + timeout
    refused = ""
    while time.monotonic() < deadline:
        try:
            key = api_key(key_file)
            if key is not None and api.get("/healthz").status_code == 200:
                api.headers["Authorization"] = f"Bearer {key}"
                answer = api.get("/api/capabilities")
                refused = answer.text if answer.status_code == 401 else ""
                caps = answer.json() if answer.status_code == 200 else {}
                if caps.get("cpu") and caps.get("gpu"):
                    return
        except httpx.TransportError:
            pass
        if stack_log and stack_log.exists() and "died" in stack_log.read_text():
            raise SystemExit(f"the stack failed to start:\n{stack_log.read_text()[-3000:]}")
        time.sleep(1)
    if refused:
        raise SystemExit(f"the API refuses the key ({KEY_ENV} or {key_file}): {refused}")
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
    _say(f"  web page: {api.base_url}/ (sign in with the API key; job cards, history, player)")
    if status["status"] != "completed":
        _say(f"  error: {status.get('error')}")
        return False
    video = record["video"]
    path = out_dir / f"{job_id}-{variant}.mp4"
    path.write_bytes(httpx.get(video["url"], timeout=60).content)
    _say(f"  script ({record['scriptSource']}): {record['scriptSummary']}")
    rendered_by = ", ".join(f"{stage} = {runtime}" for stage, runtime in record.get("rendering", {}).items())
    _say(f"  rendered by: {rendered_by or 'not recorded'}")
    _say(f"  video: {path} ({path.stat().st_size // 1024} KiB)")
    _say(f"  download URL: {video['url']}")
    return True


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--api", default=API)
    parser.add_argument("--wait-for-stack", action="store_true")
    parser.add_argument("--stack-log", type=Path)
    parser.add_argument("--root", type=Path, help="the stack's root (default: the stack log's, else .local)")
    parser.add_argument("--out", type=Path, default=Path(".local/demo"))
    parser.add_argument("--variants", nargs="+", default=["svd", "sadtalker"])
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    root = args.root or (args.stack_log.parent.parent if args.stack_log else Path(".local"))  # <root>/logs/stack.log
    key_file = root / KEY_FILE
    with httpx.Client(base_url=args.api, timeout=30) as api:
        if args.wait_for_stack:
            wait_for_stack(api, key_file, args.stack_log)
        else:
            authenticate(api, key_file)
        results = [run_one(api, variant, args.out) for variant in args.variants]
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
