"""The script review a job waits on (`options.review`): state kept by the workflow, changed by its Update.

Pure and deterministic (no I/O): the workflow's Update validator calls `check`, its handler
`apply`; the same checks run in the API first, so a bad edit is refused before it reaches
Temporal and never enters the history.
"""

from dataclasses import dataclass

from temporalio.exceptions import ApplicationError

from schemas import names
from schemas.review import review_action_problem
from schemas.tasks import ReviewState, Script, ScriptResult, ScriptReview, ScriptReviewInput


@dataclass
class ScriptReviewer:
    """One job's review: the written script, the person's edit, and the decision."""

    words_per_minute: float | None
    duration_seconds: float
    state: ReviewState = "pending"
    written: ScriptResult | None = None
    edit: Script | None = None
    reason: str | None = None

    @property
    def decided(self) -> bool:
        """Whether the person approved or rejected (the wait is over)."""
        return self.state in ("approved", "rejected")

    def open(self, written: ScriptResult) -> None:
        """The script is written: wait for the person."""
        self.written, self.state = written, "waiting"

    def check(self, action: ScriptReviewInput) -> None:
        """Refuse an action the job cannot take now, or whose fields are wrong.

        Raises:
            ApplicationError: `ReviewClosed` (not waiting: too early, or already decided or timed
                out) or `ReviewInvalid` (details: the field and why).
        """
        if self.state != "waiting":
            why = "the script is not written yet" if self.state == "pending" else f"the review is {self.state}"
            raise ApplicationError(f"{why}: nothing to {action.action}", type=names.ERR_REVIEW_CLOSED)
        problem = review_action_problem(action, self.words_per_minute, self.duration_seconds)
        if problem is not None:
            field, message = problem
            raise ApplicationError(message, field, type=names.ERR_REVIEW_INVALID)

    def apply(self, action: ScriptReviewInput) -> ScriptReview:
        """Take a checked action; the answer is the review as it now stands."""
        current = self.script()
        if action.narrative is not None or action.stage is not None:
            self.edit = Script(stage=action.stage or current.stage, narrative=action.narrative or current.narrative)
        if action.action == "approve":
            self.state = "approved"
        elif action.action == "reject":
            self.state, self.reason = "rejected", action.reason
        return self.view()

    def time_out(self) -> None:
        """Nobody decided in time."""
        self.state = "timed_out"

    def script(self) -> Script:
        """The script the render would speak now: the person's edit, else what was written."""
        if self.written is None:
            raise ValueError("the script is not written yet")
        return self.edit or self.written.script

    def result(self) -> ScriptResult:
        """The approved script as the render and the record take it (the original kept when edited)."""
        if self.written is None:
            raise ValueError("the script is not written yet")
        if self.edit is None or self.edit == self.written.script:
            return self.written
        return self.written.model_copy(update={"script": self.edit, "original": self.written.script})

    def view(self) -> ScriptReview:
        """The review as the API shows it."""
        edited = self.edit is not None and self.written is not None and self.edit != self.written.script
        return ScriptReview(
            state=self.state,
            script=self.script() if self.written else None,
            original=self.written.script if edited and self.written else None,
            source=self.written.source if self.written else None,
            reason=self.reason,
        )
