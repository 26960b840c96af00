"""Profile routes: the caller's profiles (LoRA, voice, portrait), one profile, and deleting one."""

from fastapi import APIRouter, Depends, status

from api import erasure
from api.deps import ServicesDep, UserDep, get_principal
from api.owned import OwnedProfile
from api.views import profile_public
from core import repo
from schemas.api import ProfilePublic, ProfilesPublic

router = APIRouter(prefix="/api", dependencies=[Depends(get_principal)])


@router.get("/profiles", tags=["uploads"])
async def list_profiles(user: UserDep, services: ServicesDep) -> ProfilesPublic:
    """The caller's profiles with their LoRA and voice status."""
    async with services.sessions() as session:
        rows = await repo.list_profiles(session, user)
    return ProfilesPublic(data=[profile_public(r) for r in rows], count=len(rows))


@router.get("/profiles/{profile_id}", tags=["uploads"])
async def get_profile(profile: OwnedProfile) -> ProfilePublic:
    """One of the caller's profiles."""
    return profile_public(profile)


@router.delete("/profiles/{profile_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["personal data"])
async def delete_profile(profile: OwnedProfile, user: UserDep, services: ServicesDep) -> None:
    """Delete a profile: LoRA weights, voice, portrait, the training uploads and checkpoints.

    Videos already rendered with it stay (they are the user's jobs; delete those separately).
    """
    await erasure.erase_profile(services, user, profile)
