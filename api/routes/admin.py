"""Operator routes (admin API key): users and the workers' advertised capabilities."""

from datetime import timedelta

from fastapi import APIRouter, Depends, status

from api.deps import AdminDep, ServicesDep, WorkerIdPath, get_admin
from api.errors import ApiError
from api.views import worker_public
from core import repo
from core.auth import create_user_with_key
from core.db import utcnow
from schemas.api import UserCreate, UserCreated, WorkersPublic

router = APIRouter(prefix="/api/admin", tags=["admin"], dependencies=[Depends(get_admin)])

LIVE_WINDOW = timedelta(minutes=2)  # the planner's window (ARCHITECTURE.md "Capabilities")


@router.post("/users", status_code=status.HTTP_201_CREATED)
async def create_user(body: UserCreate, _admin: AdminDep, services: ServicesDep) -> UserCreated:
    """Create a user (or reuse one) and return a new API key for them, shown only this once."""
    key = await create_user_with_key(services.sessions, body.user_id, admin=body.admin, name=body.key_name)
    return UserCreated(user_id=body.user_id, api_key=key)


@router.get("/workers")
async def list_workers(_admin: AdminDep, services: ServicesDep) -> WorkersPublic:
    """Every worker's last manifest; `live` ones are what the planner currently plans against."""
    async with services.sessions() as session:
        rows = await repo.list_workers(session)
    live_since = utcnow() - LIVE_WINDOW
    data = [worker_public(r, live_since) for r in rows]
    return WorkersPublic(data=data, count=len(data))


@router.delete("/workers/{worker_id}", status_code=status.HTTP_204_NO_CONTENT)
async def forget_worker(worker_id: WorkerIdPath, _admin: AdminDep, services: ServicesDep) -> None:
    """Forget a worker's manifest now instead of waiting two minutes for it to age out.

    For a worker that was shut down; one that is still running re-advertises within 30 s.
    """
    async with services.sessions.begin() as session:
        found = await repo.delete_worker(session, worker_id)
    if not found:
        raise ApiError(404, f"worker '{worker_id}' not found")
