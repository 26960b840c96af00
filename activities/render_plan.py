"""`planner.selectPipeline`: the render plan of a job, i.e. its variant and which face is animated."""

from typing import Literal

from temporalio import activity

from schemas import names
from schemas.tasks import RenderPlan, SelectInput


class RenderPlanActivities:
    """The render-plan activity; it needs no clients (the activity name keeps its wire name)."""

    @activity.defn(name=names.SELECT_PIPELINE)
    async def select_render_plan(self, inp: SelectInput) -> RenderPlan:
        """Fix the variant and which face is animated (the request's portrait, the profile's, or the presenter)."""
        face_source: Literal["request", "profile", "presenter"]
        if inp.portrait:
            face, face_source = inp.portrait, "request"
        elif inp.profile.portrait_uri:
            face, face_source = inp.profile.portrait_uri, "profile"
        else:
            face, face_source = None, "presenter"
        return RenderPlan(variant=inp.requested_variant, portrait_uri=face, face_source=face_source)
