"""FastAPI dependencies: settings, clients built in the lifespan, and the authenticated caller.

Every `/api/*` call authenticates with `Authorization: Bearer <API key>`; the web page signs in
once (`POST /api/session`) and then sends an HttpOnly session cookie, because a browser cannot
put a header on a WebSocket or a `<video>` request.
"""

from typing import Annotated, Final

from fastapi import Depends, Path, Request
from starlette.requests import HTTPConnection

from api.errors import ApiError
from api.followers import StatusFollowers
from core.auth import Principal, authenticate
from core.services import Services as Services  # re-exported: routes and helpers type their clients with it
from core.settings import Settings, get_settings

SESSION_COOKIE: Final = "myspinbot_session"
_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="myspinbot"'}


# Dependencies that do no I/O are `async def` all the same: FastAPI runs a plain `def` dependency in
# its thread pool, a hop per dependency per request for nothing.


async def get_services(request: Request) -> Services:
    """The services built by the lifespan."""
    services: Services = request.app.state.services
    return services


async def get_followers(request: Request) -> StatusFollowers:
    """The job-status followers of this API process (`api.followers`), built by the lifespan."""
    followers: StatusFollowers = request.app.state.followers
    return followers


def credential_of(conn: HTTPConnection) -> tuple[str, str] | None:
    """The secret the caller presents and its kind: a bearer API key, else the session cookie."""
    header = conn.headers.get("authorization")
    if header is not None:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise ApiError(401, "Authorization must be 'Bearer <API key>'", headers=_CHALLENGE)
        return secret.strip(), "api_key"
    if cookie := conn.cookies.get(SESSION_COOKIE):
        return cookie, "session"
    return None


async def principal_of(conn: HTTPConnection) -> Principal | None:
    """Who presents the connection's credential; None when it carries none or an invalid one."""
    credential = credential_of(conn)
    if credential is None:
        return None
    services: Services = conn.app.state.services
    async with services.sessions() as session:
        return await authenticate(session, *credential)


async def get_principal(conn: HTTPConnection) -> Principal:
    """The authenticated caller, else 401."""
    credential = credential_of(conn)
    if credential is None:
        raise ApiError(401, "authentication required: send 'Authorization: Bearer <API key>'", headers=_CHALLENGE)
    principal = await principal_of(conn)
    if principal is None:
        what = "API key" if credential[1] == "api_key" else "session (sign in again)"
        raise ApiError(401, f"invalid or expired {what}", headers=_CHALLENGE)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_user(principal: PrincipalDep) -> str:
    """The calling user's id: from their credential, never from the body."""
    return principal.user_id


async def get_admin(principal: PrincipalDep) -> Principal:
    """The caller, who must be an admin (403 otherwise)."""
    if not principal.is_admin:
        raise ApiError(403, "this operation needs an admin API key")
    return principal


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServicesDep = Annotated[Services, Depends(get_services)]
FollowersDep = Annotated[StatusFollowers, Depends(get_followers)]
UserDep = Annotated[str, Depends(get_user)]
AdminDep = Annotated[Principal, Depends(get_admin)]

# Ids in paths are ours (`job-<hex>`, `prof-<hex>`, worker ids): anything else is a 422, not a query.
ID_PATTERN: Final = r"^[A-Za-z0-9_.:-]{1,120}$"
JobIdPath = Annotated[str, Path(pattern=ID_PATTERN, examples=["job-3f0c9a7d5b1e4c2a"])]
ProfileIdPath = Annotated[str, Path(pattern=ID_PATTERN, examples=["prof-1f2e3d4c5b6a7988"])]
WorkerIdPath = Annotated[str, Path(pattern=ID_PATTERN)]
