"""`python -m ops.users`: argument checks before any database work, and a user whose key authenticates."""

import asyncio
import subprocess
import sys
import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.auth import authenticate
from ops import users


def test_a_bad_user_id_is_refused_before_the_database_is_touched(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        users.main(["create-user", "Bad User!"])
    assert exited.value.code == 2 and "user id 'Bad User!'" in capsys.readouterr().err


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        users.main([])
    assert exited.value.code == 2 and "create-user" in capsys.readouterr().err


def test_python_m_core_auth_still_works_with_a_deprecation_message() -> None:
    shim = subprocess.run(
        [sys.executable, "-m", "core.auth", "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    assert "deprecated" in shim.stderr and "python -m ops.users" in shim.stderr
    assert shim.stdout.startswith("usage: python -m ops.users")


@pytest.mark.integration
async def test_create_user_prints_a_key_that_authenticates_as_that_admin(
    sessions: async_sessionmaker[AsyncSession], capsys: pytest.CaptureFixture[str]
) -> None:
    user_id = f"ops-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(users.main, ["create-user", user_id, "--admin", "--name", "laptop"])
    key = capsys.readouterr().out.strip()
    assert key.startswith("msb_")
    async with sessions() as session:
        principal = await authenticate(session, key, "api_key")
    assert principal is not None and principal.user_id == user_id and principal.is_admin
