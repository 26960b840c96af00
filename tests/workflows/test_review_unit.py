"""The review's state machine and its checks, without Temporal (the workflow and the API use both)."""

import pytest
from temporalio.exceptions import ApplicationError

from schemas import names
from schemas.review import review_action_problem
from schemas.speech import estimate_spoken_seconds
from schemas.tasks import Script, ScriptResult, ScriptReviewInput
from workflows.review import ScriptReviewer

WRITTEN = ScriptResult(script=Script(stage="A studio.", narrative="The tide turns twice a day. " * 3), source="offline")
PACE = 170.0


def reviewer() -> ScriptReviewer:
    duration = estimate_spoken_seconds(WRITTEN.script.narrative, PACE)
    return ScriptReviewer(words_per_minute=PACE, duration_seconds=round(duration))


def test_nothing_can_be_done_before_the_script_is_written() -> None:
    with pytest.raises(ApplicationError, match="not written yet") as err:
        reviewer().check(ScriptReviewInput(action="approve"))
    assert err.value.type == names.ERR_REVIEW_CLOSED


def test_an_edit_keeps_waiting_and_approve_releases_the_edit_keeping_the_original() -> None:
    review = reviewer()
    review.open(WRITTEN)
    edit = ScriptReviewInput(action="edit", narrative="The moon pulls the sea twice a day. " * 2)
    review.check(edit)
    answer = review.apply(edit)
    assert answer.state == "waiting" and not review.decided
    assert answer.script == Script(stage="A studio.", narrative=edit.narrative) and answer.original == WRITTEN.script
    review.apply(ScriptReviewInput(action="approve"))
    assert review.decided and review.state == "approved"
    result = review.result()
    assert (
        result.script.narrative == edit.narrative and result.original == WRITTEN.script and result.source == "offline"
    )


def test_approve_without_edit_renders_what_was_written() -> None:
    review = reviewer()
    review.open(WRITTEN)
    assert review.apply(ScriptReviewInput(action="approve")).original is None
    assert review.result() == WRITTEN


@pytest.mark.parametrize("final", ["approved", "rejected", "timed_out"])
def test_a_closed_review_refuses_every_action(final: str) -> None:
    review = reviewer()
    review.open(WRITTEN)
    if final == "timed_out":
        review.time_out()
    else:
        review.apply(ScriptReviewInput(action="approve" if final == "approved" else "reject", reason=None))
    with pytest.raises(ApplicationError, match=final.replace("_", "_")) as err:
        review.check(ScriptReviewInput(action="approve"))
    assert err.value.type == names.ERR_REVIEW_CLOSED


def test_a_rejection_keeps_its_reason() -> None:
    review = reviewer()
    review.open(WRITTEN)
    assert review.apply(ScriptReviewInput(action="reject", reason="off topic")).reason == "off topic"
    assert review.state == "rejected" and review.decided


@pytest.mark.parametrize(
    ("action", "field"),
    [
        (ScriptReviewInput(action="edit"), "narrative"),
        (ScriptReviewInput(action="edit", narrative="Short."), "narrative"),
        (ScriptReviewInput(action="approve", narrative="word " * 400), "narrative"),
        (ScriptReviewInput(action="approve", reason="x"), "reason"),
        (ScriptReviewInput(action="reject", stage="A beach."), "stage"),
    ],
)
def test_bad_actions_name_their_field_in_the_api_check_and_in_the_validator(action, field) -> None:
    review = reviewer()
    review.open(WRITTEN)
    problem = review_action_problem(action, PACE, review.duration_seconds)
    assert problem is not None and problem[0] == field
    with pytest.raises(ApplicationError) as err:
        review.check(action)
    assert err.value.type == names.ERR_REVIEW_INVALID and err.value.details == (field,)
