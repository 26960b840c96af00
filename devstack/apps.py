"""The local stack's apps (the API and both workers): how each starts, when they are up, and the dev API key.

The servers they need come from `devstack.servers`; `python -m devstack.stack up --with-apps`
starts the apps with `start_app` and keeps them running with `devstack.supervisor`.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import httpx

from devstack.process import Service, run_async, spawn, wait_until

logger = logging.getLogger(__name__)

API_PORT = 8000
DEV_USER = "local"  # the admin user of a local stack
DEV_KEY_FILE = "dev-api-key"  # under the stack's root, mode 0600


def app_commands(api_port: int) -> dict[str, list[str]]:
    """The command line of each app, by name, in start order."""
    return {
        "cpu-worker": [sys.executable, "-m", "activities.worker"],
        "gpu-worker": [sys.executable, "-m", "gpu_worker.worker"],
        "api": [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(api_port)],
    }


def start_app(root: Path, env: dict[str, str], name: str, api_port: int) -> Service:
    """Start the app `name` with the servers' `APP_*` variables `env`, logging to `<root>/logs/<name>.log`."""
    app_env = os.environ | env | {"PYTHONUNBUFFERED": "1"}  # so logs reach the files as they happen
    url = f"http://127.0.0.1:{api_port}" if name == "api" else ""
    log_path = root / "logs" / f"{name}.log"
    return Service(name, url, log_path, process=spawn(name, app_commands(api_port)[name], log_path, app_env))


def wait_until_healthy(services: dict[str, Service], api_port: int) -> None:
    """Wait until the API's `/healthz` answers 200; a worker that crashes at start-up fails this too.

    Raises:
        RuntimeError: If an app exits first.
        TimeoutError: If the API does not answer within two minutes.
    """

    def healthy() -> bool:
        return httpx.get(f"http://127.0.0.1:{api_port}/healthz", timeout=2).status_code == 200

    workers = tuple(services[name] for name in app_commands(api_port) if name != "api")
    wait_until("/healthz returns 200", healthy, services["api"], timeout=120, watch=workers)


def ensure_dev_api_key(root: Path, database_url: str) -> str:
    """The API key of the local admin `local`, kept in `<root>/dev-api-key` (mode 0600).

    The key in the file is reused while it still authenticates as `local`; otherwise (no file, a
    revoked key, a fresh database) a new key is issued and the file replaced. Migrates first, so
    it works whether or not the API has started.
    """
    from core import auth  # the database layer is needed here only, not by the servers
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
    run_async(ensure)
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
