"""Create users and issue their API keys: `python -m ops.users create-user NAME [--admin] [--name LABEL]`.

Prints the new key once (only its hash is stored). The database comes from `core.settings`
(`APP_DATABASE__URL`); it is migrated first, so this works on a fresh database too.
"""

import argparse
import asyncio
import sys
from collections.abc import Sequence

from core.auth import check_user_id, create_user_with_key
from core.db import create_async_engine, migrate, session_factory
from core.settings import get_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ops.users", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-user", help="create a user (or reuse one) and print a new API key")
    create.add_argument("user_id")
    create.add_argument("--admin", action="store_true", help="may retry any user's job and administer workers")
    create.add_argument("--name", help="a label for the key, e.g. the machine it is for")
    return parser


async def create_user(database_url: str, user_id: str, *, admin: bool = False, name: str | None = None) -> str:
    """Create (or reuse) `user_id` in the database at `database_url` and return a new API key."""
    engine = create_async_engine(database_url)
    try:
        return await create_user_with_key(session_factory(engine), user_id, admin=admin, name=name)
    finally:
        await engine.dispose()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: `python -m ops.users create-user alice [--admin] [--name laptop]`."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        check_user_id(args.user_id)  # before touching the database
    except ValueError as err:
        parser.error(str(err))
    url = get_settings().database.url
    migrate(url)
    key = asyncio.run(create_user(url, args.user_id, admin=args.admin, name=args.name))
    sys.stdout.write(key + "\n")


if __name__ == "__main__":
    main()
