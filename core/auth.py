"""Users and credentials: API keys and browser sessions, stored as SHA-256 hashes.

Secrets are 32 random bytes, so a plain SHA-256 is enough to make a leaked table useless (a
slow password hash only matters for guessable secrets). The prefix tells what a secret is
(`msb_` API key, `mss_` session) when one turns up in a log or a secret scanner.

The command that creates users is `python -m ops.users create-user NAME [--admin]`; `python -m
core.auth` still hands over to it for one release, with a deprecation message.
"""

from __future__ import annotations

import hashlib
import re
import runpy
import secrets
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db import Credential, User, utcnow

API_KEY_PREFIX: Final = "msb_"
SESSION_PREFIX: Final = "mss_"
USER_ID_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")  # also a safe object-key prefix


@dataclass(frozen=True)
class Principal:
    """Who is calling: the user id every row, object key and search attribute is scoped by."""

    user_id: str
    is_admin: bool = False


def hash_secret(secret: str) -> str:
    """The stored form of a key or session token."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def check_user_id(user_id: str) -> None:
    """Raise `ValueError`, with a sentence saying what is allowed, unless `user_id` is a valid user id."""
    if not USER_ID_PATTERN.match(user_id):
        raise ValueError(f"user id {user_id!r}: use 1–63 of a-z, 0-9, '_', '.', '-', starting with a letter or digit")


async def create_user(session: AsyncSession, user_id: str, *, admin: bool = False) -> None:
    """Create `user_id` (a no-op when it exists; `admin=True` also promotes an existing user)."""
    check_user_id(user_id)
    stmt = insert(User).values(id=user_id, is_admin=admin)
    if admin:
        await session.execute(stmt.on_conflict_do_update(index_elements=[User.id], set_={"is_admin": True}))
    else:
        await session.execute(stmt.on_conflict_do_nothing(index_elements=[User.id]))


async def issue_api_key(session: AsyncSession, user_id: str, name: str | None = None) -> str:
    """A new API key for `user_id`; the caller shows it once, only its hash is kept."""
    key = _new_secret(API_KEY_PREFIX)
    session.add(Credential(user_id=user_id, kind="api_key", secret_sha256=hash_secret(key), name=name))
    await session.flush()
    return key


async def issue_session(session: AsyncSession, user_id: str, lifetime: timedelta) -> tuple[str, datetime]:
    """A browser session token for `user_id` and when it expires."""
    token = _new_secret(SESSION_PREFIX)
    expires_at = utcnow() + lifetime
    session.add(Credential(user_id=user_id, kind="session", secret_sha256=hash_secret(token), expires_at=expires_at))
    await session.flush()
    return token, expires_at


async def authenticate(session: AsyncSession, secret: str, kind: str) -> Principal | None:
    """The principal a key or session token belongs to; None when unknown, revoked or expired."""
    stmt = (
        select(User.id, User.is_admin, Credential.expires_at)
        .join(User, User.id == Credential.user_id)
        .where(Credential.secret_sha256 == hash_secret(secret), Credential.kind == kind)
    )
    row = (await session.execute(stmt)).one_or_none()
    if row is None or (row.expires_at is not None and row.expires_at <= utcnow()):
        return None
    return Principal(user_id=row.id, is_admin=row.is_admin)


async def revoke(session: AsyncSession, secret: str) -> None:
    """Forget a key or session token (sign-out)."""
    await session.execute(delete(Credential).where(Credential.secret_sha256 == hash_secret(secret)))


async def create_user_with_key(
    sessions: async_sessionmaker[AsyncSession], user_id: str, *, admin: bool = False, name: str | None = None
) -> str:
    """Create (or reuse) `user_id` and return a fresh API key for them."""
    async with sessions.begin() as session:
        await create_user(session, user_id, admin=admin)
        return await issue_api_key(session, user_id, name)


if __name__ == "__main__":
    # `core` must not import `ops`, so the command line is only handed over.
    sys.stderr.write("`python -m core.auth` is deprecated and will be removed: use `python -m ops.users`\n")
    runpy.run_module("ops.users", run_name="__main__", alter_sys=True)
