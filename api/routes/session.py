"""Session routes: sign in (an API key becomes an HttpOnly session cookie), who am I, sign out."""

from datetime import timedelta

from fastapi import APIRouter, Request, Response, status

from api.deps import SESSION_COOKIE, PrincipalDep, ServicesDep, SettingsDep, credential_of
from api.errors import ApiError
from core import auth
from schemas.api import Caller, SessionRequest

router = APIRouter(prefix="/api", tags=["auth"])


@router.post("/session")
async def sign_in(body: SessionRequest, response: Response, services: ServicesDep, settings: SettingsDep) -> Caller:
    """Exchange an API key for a session cookie (HttpOnly, SameSite=Strict).

    The page, its WebSocket and its downloads then carry the cookie; page scripts never hold the key again.
    """
    async with services.sessions.begin() as session:
        principal = await auth.authenticate(session, body.api_key, "api_key")
        if principal is None:
            raise ApiError(401, "apiKey: unknown or revoked API key")
        lifetime = timedelta(hours=settings.api.session_hours)
        token, expires_at = await auth.issue_session(session, principal.user_id, lifetime)
    response.set_cookie(
        SESSION_COOKIE, token, max_age=int(lifetime.total_seconds()), path="/",
        httponly=True, samesite="strict", secure=settings.api.secure_cookies,
    )  # fmt: skip
    return Caller(user_id=principal.user_id, is_admin=principal.is_admin, expires_at=expires_at)


@router.get("/session")
async def whoami(principal: PrincipalDep) -> Caller:
    """Who the presented API key or session cookie belongs to."""
    return Caller(user_id=principal.user_id, is_admin=principal.is_admin)


@router.delete("/session", status_code=status.HTTP_204_NO_CONTENT)
async def sign_out(request: Request, services: ServicesDep) -> Response:
    """End the browser session (the cookie is cleared and the token forgotten)."""
    credential = credential_of(request)
    if credential is not None and credential[1] == "session":
        async with services.sessions.begin() as session:
            await auth.revoke(session, credential[0])
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
