"""Preset routes: the caller's saved option sets (variant, voice, language, render options) by name."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, status

from api.deps import ServicesDep, SettingsDep, UserDep, get_principal
from api.errors import ApiError
from api.views import preset_public
from core import repo
from schemas.api import PRESET_NAME_PATTERN, PresetIn, PresetPublic, PresetsPublic

router = APIRouter(prefix="/api", dependencies=[Depends(get_principal)])

PresetNamePath = Annotated[str, Path(min_length=1, max_length=64, pattern=PRESET_NAME_PATTERN, examples=["shorts"])]


@router.get("/presets", tags=["presets"])
async def list_presets(user: UserDep, services: ServicesDep) -> PresetsPublic:
    """The caller's presets, newest first."""
    async with services.sessions() as session:
        rows = await repo.list_presets(session, user)
    return PresetsPublic(data=[preset_public(r) for r in rows], count=len(rows))


@router.post("/presets", status_code=status.HTTP_201_CREATED, tags=["presets"])
async def create_preset(body: PresetIn, user: UserDep, services: ServicesDep, settings: SettingsDep) -> PresetPublic:
    """Save a named option set; a generate or train body names it as `preset`; 409 when the name is taken."""
    saved = body.model_dump(mode="json", exclude_unset=True, exclude_none=True, exclude={"name"})
    limit = settings.api.max_presets
    async with services.sessions.begin() as session:
        if await repo.count_presets_locked(session, user) >= limit:
            raise ApiError(409, f"you already have {limit} presets, the most allowed; delete one first")
        row = await repo.insert_preset(session, user, body.name, saved)
    if row is None:
        raise ApiError(409, f"preset '{body.name}' exists; delete it first or choose another name")
    return preset_public(row)


@router.delete("/presets/{name}", status_code=status.HTTP_204_NO_CONTENT, tags=["presets"])
async def delete_preset(name: PresetNamePath, user: UserDep, services: ServicesDep) -> None:
    """Delete one of the caller's presets (jobs that named it keep its name and the options they ran with)."""
    async with services.sessions.begin() as session:
        if not await repo.delete_preset(session, user, name):
            raise ApiError(404, f"preset '{name}' not found")
