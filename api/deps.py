"""FastAPI dependencies: settings, clients built in the lifespan, and the calling user."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from core.settings import Settings, get_settings
from core.storage import ObjectStore

LOCAL_USER = "local"  # until API keys arrive (hardening issue) every caller is this user


@dataclass
class Services:
    """Long-lived clients, created once in the app's lifespan."""

    sessions: async_sessionmaker[AsyncSession]
    store: ObjectStore
    temporal: Client


def get_services(request: Request) -> Services:
    """The services built by the lifespan."""
    services: Services = request.app.state.services
    return services


def get_user() -> str:
    """The calling user's id."""
    return LOCAL_USER


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServicesDep = Annotated[Services, Depends(get_services)]
UserDep = Annotated[str, Depends(get_user)]
