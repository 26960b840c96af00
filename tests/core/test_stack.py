"""`devstack`: the real servers start from their pip packages, restart on their data, and `up`/`down` work."""

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest, RemoveSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client, WorkflowExecutionStatus

from core.settings import Settings
from core.storage import ObjectStore
from devstack.process import REPO_ROOT, Service, free_port
from devstack.servers import env_for, start_postgres, start_s3, start_temporal
from schemas.names import ARTIFACTS_BUCKET, SEARCH_ATTRIBUTES
from tests.helpers import storage_settings


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


@pytest.mark.integration
async def test_temporal_has_default_namespace_and_search_attributes(temporal_service: Service) -> None:
    client = await Client.connect(temporal_service.url)
    described = await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace="default"))
    assert described.namespace_info.name == "default"
    listed = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace="default"))
    for name in SEARCH_ATTRIBUTES:
        assert listed.custom_attributes[name] == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD


@pytest.mark.integration
async def test_temporal_restart_keeps_workflows(tmp_path: Path) -> None:
    workflow_id = f"job-{uuid.uuid4()}"
    service = await asyncio.to_thread(start_temporal, tmp_path)
    try:
        client = await Client.connect(service.url)
        # No worker polls this queue, so the workflow stays running across the restart.
        await client.start_workflow("NoWorkerWorkflow", id=workflow_id, task_queue=f"tq-{uuid.uuid4()}")
    finally:
        await asyncio.to_thread(service.stop)
    service = await asyncio.to_thread(start_temporal, tmp_path)  # same db file, new ports
    try:
        client = await Client.connect(service.url)
        described = await client.get_workflow_handle(workflow_id).describe()
        assert described.status == WorkflowExecutionStatus.RUNNING
    finally:
        await asyncio.to_thread(service.stop)


@pytest.mark.integration
def test_postgres_answers_through_sqlalchemy(postgres_service: Service) -> None:
    assert postgres_service.url.startswith("postgresql+psycopg://")
    engine = sa.create_engine(postgres_service.url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
            assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == "myspinbot"
    finally:
        engine.dispose()


@pytest.mark.integration
def test_postgres_restart_keeps_data(tmp_path: Path) -> None:
    service = start_postgres(tmp_path / "pg")
    try:
        with psycopg.connect(service.url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
    finally:
        service.stop()
    assert service.pid is not None
    assert not _alive(service.pid)
    service = start_postgres(tmp_path / "pg")
    try:
        with psycopg.connect(service.url.replace("+psycopg", "")) as conn:
            assert conn.execute("SELECT v FROM kept").fetchone() == (42,)
    finally:
        service.stop()


@pytest.mark.integration
def test_s3_restart_keeps_objects(tmp_path: Path) -> None:
    service = start_s3(tmp_path)
    try:
        store = ObjectStore(storage_settings(service))
        store.ensure_buckets()
        uri = store.put_bytes(ARTIFACTS_BUCKET, "kept.bin", b"still here", "application/octet-stream")
    finally:
        service.stop()
    service = start_s3(tmp_path)  # new ports for master/volume/filer too
    try:
        assert ObjectStore(storage_settings(service)).get_bytes(uri) == b"still here"
    finally:
        service.stop()


@pytest.mark.integration
def test_env_for_feeds_settings(
    temporal_service: Service, postgres_service: Service, s3_service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = env_for({s.name: s for s in (temporal_service, postgres_service, s3_service)})
    monkeypatch.delenv("DATABASE_URL", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.temporal.address == temporal_service.url
    assert settings.temporal.ui_url == env["APP_TEMPORAL__UI_URL"]
    assert settings.database.url == postgres_service.url
    assert settings.storage.endpoint == s3_service.url
    assert settings.storage.access_key == "myspinbot"
    assert settings.storage.secret_key.get_secret_value() == "myspinbot-secret"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # Reparented daemons may linger as zombies when init does not reap them.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _fixed_ports(count: int) -> list[int]:
    """Distinct free ports below the ephemeral range, for `up`'s fixed ports (it never picks other ones).

    A port the OS hands out for binding (`free_port`) comes from the ephemeral range, where any
    process's next outgoing connection may take it before `up` binds it (seen in CI: Temporal's UI
    port); below that range only a server could.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports: list[int] = []
    for port in random.Random().sample(range(20000, low), 100):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"not {count} free ports in 20000..{low}")


def _cli(root: Path, command: str) -> list[str]:
    cmd = [sys.executable, "-m", "devstack.stack", command, "--root", str(root)]
    if command == "up":
        temporal, temporal_ui, postgres, s3 = map(str, _fixed_ports(4))
        cmd += ["--temporal-port", temporal, "--temporal-ui-port", temporal_ui, "--postgres-port", postgres]
        cmd += ["--s3-port", s3]
    return cmd


def _start_up(root: Path) -> tuple[subprocess.Popen[bytes], dict[str, str], dict[str, Any]]:
    up = subprocess.Popen(_cli(root, "up"), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not (root / "stack.env").exists() or not (root / "pids.json").exists():
        if up.poll() is not None:
            pytest.fail(f"up exited with {up.returncode}: {up.stdout.read().decode() if up.stdout else ''}")
        assert time.monotonic() < deadline, "up did not write stack.env"
        time.sleep(0.2)
    env = dict(line.split("=", 1) for line in (root / "stack.env").read_text().splitlines())
    return up, env, json.loads((root / "pids.json").read_text())


@pytest.mark.integration
def test_cli_up_then_down(tmp_path: Path) -> None:
    up, env, pids = _start_up(tmp_path)
    assert set(env) == {
        "APP_TEMPORAL__ADDRESS",
        "APP_TEMPORAL__UI_URL",
        "APP_DATABASE__URL",
        "APP_STORAGE__ENDPOINT",
        "APP_STORAGE__ACCESS_KEY",
        "APP_STORAGE__SECRET_KEY",
    }
    assert [s["name"] for s in pids["services"]] == ["postgres", "s3", "temporal"]
    with psycopg.connect(env["APP_DATABASE__URL"].replace("+psycopg", "")) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)

    subprocess.run(_cli(tmp_path, "down"), cwd=REPO_ROOT, check=True, timeout=120)
    assert up.wait(30) == 0
    assert not (tmp_path / "pids.json").exists()
    assert not any(_alive(s["pid"]) for s in pids["services"])


@pytest.mark.integration
def test_cli_down_cleans_up_after_a_killed_up(tmp_path: Path) -> None:
    up, _env, pids = _start_up(tmp_path)
    up.send_signal(signal.SIGKILL)  # the servers live on in their own sessions
    up.wait()
    assert all(_alive(s["pid"]) for s in pids["services"])
    subprocess.run(_cli(tmp_path, "down"), cwd=REPO_ROOT, check=True, timeout=120)
    assert not any(_alive(s["pid"]) for s in pids["services"])


async def test_the_development_key_is_kept_reused_and_replaced_when_revoked(settings, sessions, tmp_path) -> None:
    import asyncio

    from sqlalchemy import delete

    from core.auth import authenticate
    from core.db import Credential
    from devstack.apps import DEV_KEY_FILE, ensure_dev_api_key

    first = await asyncio.to_thread(ensure_dev_api_key, tmp_path, settings.database.url)
    key_file = tmp_path / DEV_KEY_FILE
    assert key_file.read_text().strip() == first and key_file.stat().st_mode & 0o777 == 0o600
    assert await asyncio.to_thread(ensure_dev_api_key, tmp_path, settings.database.url) == first
    async with sessions() as session:
        principal = await authenticate(session, first, "api_key")
    assert principal is not None and principal.user_id == "local" and principal.is_admin
    async with sessions.begin() as session:  # revoke it: the next start issues a new key
        await session.execute(delete(Credential).where(Credential.user_id == "local"))
    second = await asyncio.to_thread(ensure_dev_api_key, tmp_path, settings.database.url)
    assert second != first and key_file.read_text().strip() == second


def test_temporal_picks_new_ports_when_a_picked_one_was_taken(tmp_path, monkeypatch) -> None:
    import socket

    from devstack import process, servers

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    # The Web UI port (the second pick) is taken between picking and binding, as happened in CI.
    picks = iter([process.free_port(), taken.getsockname()[1], process.free_port(), process.free_port()])
    monkeypatch.setattr(servers, "free_port", lambda: next(picks))
    try:
        service = servers.start_temporal(tmp_path / "temporal")
        try:
            assert service.env["APP_TEMPORAL__UI_URL"] != f"http://127.0.0.1:{taken.getsockname()[1]}"
        finally:
            service.stop()
    finally:
        taken.close()


def test_s3_picks_new_ports_when_a_picked_one_was_taken(tmp_path, monkeypatch) -> None:
    import socket

    from devstack import process, servers

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    fresh = [process.free_port() for _ in range(40)]
    picks = iter([fresh[0], taken.getsockname()[1], *fresh[1:]])  # the master port is taken
    monkeypatch.setattr(servers, "free_port", lambda: next(picks))
    try:
        service = servers.start_s3(tmp_path / "s3")
        service.stop()
    finally:
        taken.close()


@pytest.mark.integration
def test_a_killed_gpu_worker_is_restarted_and_its_render_completes_while_the_api_keeps_answering(
    tmp_path: Path,
) -> None:
    import httpx

    api_port = free_port()
    cmd = [*_cli(tmp_path, "up"), "--with-apps", "--api-port", str(api_port)]
    up = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 180
        while not (tmp_path / "dev-api-key").exists():
            assert up.poll() is None and time.monotonic() < deadline, "the stack did not start"
            time.sleep(0.5)
        headers = {"Authorization": f"Bearer {(tmp_path / 'dev-api-key').read_text().strip()}"}
        with httpx.Client(base_url=api, headers=headers, timeout=10) as client:
            while client.get("/api/capabilities").json().get("gpu") is None:  # the GPU worker advertises last
                assert time.monotonic() < deadline, "no GPU worker advertised itself"
                time.sleep(0.5)
            # 60 s at 720p renders for several seconds: long enough to be killed in the middle.
            body = {"topic": "volcanoes", "variant": "svd", "options": {"durationSeconds": 60, "resolution": "720p"}}
            response = client.post("/api/generate", json=body)
            assert response.status_code == 202, response.text
            job = response.json()["jobId"]
            while _node(client, job, "render")["state"] != "running":
                time.sleep(0.2)
            gpu = next(
                s for s in json.loads((tmp_path / "pids.json").read_text())["services"] if s["name"] == "gpu-worker"
            )
            os.kill(gpu["pid"], signal.SIGKILL)

            answered = failed_reads = 0
            deadline = time.monotonic() + 240
            while (status := client.get(f"/api/status/{job}")).json()["status"] not in ("completed", "failed"):
                answered += status.status_code == 200
                failed_reads += status.status_code != 200
                assert time.monotonic() < deadline, status.json()
                time.sleep(0.5)
            assert status.json()["status"] == "completed" and failed_reads == 0 and answered > 10
            assert _node(client, job, "render")["attempt"] == 2, "the restarted worker rendered it"
            record = client.get(f"/api/jobs/{job}").json()
            assert [a["kind"] for a in record["artifacts"]].count("video") == 1
        restarted = next(
            s for s in json.loads((tmp_path / "pids.json").read_text())["services"] if s["name"] == "gpu-worker"
        )
        assert restarted["pid"] != gpu["pid"] and _alive(restarted["pid"])
        assert up.poll() is None, "the stack kept serving"
    finally:
        subprocess.run(_cli(tmp_path, "down"), cwd=REPO_ROOT, check=True, timeout=120)
        up.wait(60)


def _node(client: Any, job: str, node_id: str) -> dict[str, Any]:
    return next(n for n in client.get(f"/api/status/{job}").json()["nodes"] if n["id"] == node_id)


async def test_a_data_dir_from_an_older_version_gets_the_new_search_attributes(tmp_path: Path) -> None:
    """`--search-attribute` registers only into a new database: a restart adds what an upgrade brought."""
    service = await asyncio.to_thread(start_temporal, tmp_path / "temporal")
    try:
        client = await Client.connect(service.url)
        await client.operator_service.remove_search_attributes(
            RemoveSearchAttributesRequest(namespace="default", search_attributes=["BatchId", "ReviewState"])
        )
        listed = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace="default"))
        assert "BatchId" not in listed.custom_attributes  # as a data dir made before batches existed
        await asyncio.to_thread(service.stop)
        service = await asyncio.to_thread(service.restart_hook)  # same data dir and ports
        client = await Client.connect(service.url)
        listed = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace="default"))
        for name in SEARCH_ATTRIBUTES:
            assert listed.custom_attributes[name] == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD, name
    finally:
        await asyncio.to_thread(service.stop)
