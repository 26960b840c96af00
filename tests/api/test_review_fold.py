"""The review read from a real history (`tests/histories/generate_v1.reviewed.json`: edited, then approved)."""

from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter

from api.review import fold_review, public_view

GOLDEN = Path(__file__).parents[1] / "histories" / "generate_v1.reviewed.json"


async def test_an_edited_then_approved_review_reads_back_with_both_scripts() -> None:
    history = WorkflowHistory.from_json("reviewed", GOLDEN.read_text())
    review = await fold_review(history, pydantic_data_converter)
    assert review.state == "approved" and review.closed and review.waiting_since is not None
    assert [request.action for request, _ in review.answers.values()] == ["edit", "approve"]
    [(_, edited), (_, approved)] = review.answers.values()
    assert edited.state == "waiting" and approved.state == "approved" and approved.script == edited.script

    view = public_view(review)
    assert view.state == "approved" and view.edited and view.source == "offline"
    assert review.written is not None and view.original_narrative == review.written.script.narrative
    assert view.narrative != view.original_narrative and view.estimated_seconds
    low, high = view.spoken_seconds_range or (0, 0)
    assert low <= view.estimated_seconds <= high
    assert view.waiting_until is not None and view.waiting_until > review.waiting_since
