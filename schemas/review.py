"""Checks of a script review action: pure, shared by the API (first) and the workflow's Update validator."""

from schemas.speech import estimate_spoken_seconds, script_length_error
from schemas.tasks import ScriptReviewInput


def review_action_problem(
    action: ScriptReviewInput, words_per_minute: float | None, duration_seconds: float
) -> tuple[str, str] | None:
    """The field a review action gets wrong and why, or None when it is acceptable.

    An edit needs a narrative; a narrative (edit or approve) must fill the video as a user
    script must (the same estimate), and a reason belongs to a rejection only.
    """
    if action.action == "edit" and action.narrative is None:
        return "narrative", "an edit needs the new narrative"
    if action.action == "reject" and (action.narrative is not None or action.stage is not None):
        return "narrative" if action.narrative is not None else "stage", "a rejection carries no edit; leave it out"
    if action.reason is not None and action.action != "reject":
        return "reason", "only a rejection has a reason"
    if action.narrative is not None and words_per_minute is not None:
        spoken = estimate_spoken_seconds(action.narrative, words_per_minute)
        problem = script_length_error(spoken, duration_seconds)
        if problem is not None:
            return "narrative", problem
    return None
