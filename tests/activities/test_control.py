"""The control activities that need no database: script choice, the render plan, refusing training without consent."""

from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.control import ControlActivities
from activities.script_writer import OfflineScriptWriter, ScriptRejected
from schemas.tasks import ProfileInput, ProfileRef, RenderSettings, Script, ScriptInput, SelectInput


class RejectingWriter:
    source = "ollama:test"

    async def write(self, inp: ScriptInput) -> Script:
        raise ScriptRejected("no valid JSON after one repair attempt")


def control(writer: Any = None) -> ControlActivities:
    # No database or store: these activities must not touch them (a call would fail on None).
    return ControlActivities(None, None, writer or OfflineScriptWriter())  # type: ignore[arg-type]


async def test_a_user_script_is_used_as_given_and_gets_a_stage() -> None:
    given = Script(stage="x", narrative="Hello there.").model_copy(update={"stage": ""})
    result = await ActivityEnvironment().run(
        control().generate_script, ScriptInput(job_id="j", topic="tides", given=given)
    )
    assert result.source == "user" and result.script.narrative == "Hello there."
    assert "tides" in result.script.stage


async def test_without_a_script_the_writer_writes_it_and_is_named() -> None:
    result = await ActivityEnvironment().run(
        control().generate_script, ScriptInput(job_id="j", topic="tides", duration_seconds=10, words_per_minute=200)
    )
    assert result.source == "offline" and "tides" in result.script.narrative


async def test_a_writer_that_gives_up_fails_the_job_without_retrying() -> None:
    with pytest.raises(ApplicationError) as failure:
        await ActivityEnvironment().run(control(RejectingWriter()).generate_script, ScriptInput(job_id="j", topic="t"))
    assert failure.value.type == "ScriptInvalid" and failure.value.non_retryable


@pytest.mark.parametrize(
    ("portrait", "profile_portrait", "expected"),
    [
        ("s3://uploads/u/a.png", "s3://artifacts/profiles/p/portrait.png", ("s3://uploads/u/a.png", "request")),
        (None, "s3://artifacts/profiles/p/portrait.png", ("s3://artifacts/profiles/p/portrait.png", "profile")),
        (None, None, (None, "presenter")),
    ],
)
async def test_the_render_plan_animates_the_request_portrait_then_the_profile_then_the_presenter(
    portrait: str | None, profile_portrait: str | None, expected: tuple[str | None, str]
) -> None:
    inp = SelectInput(
        job_id="j",
        requested_variant="sadtalker",
        profile=ProfileRef(id="p", portrait_uri=profile_portrait),
        options=RenderSettings(),
        portrait=portrait,
    )
    plan = await ActivityEnvironment().run(control().select_render_plan, inp)
    assert (plan.variant, plan.portrait_uri, plan.face_source) == ("sadtalker", *expected)
    assert plan.params == {}, "the options travel once, in the render input"


async def test_training_without_consent_is_refused_before_any_row_is_written() -> None:
    inp = ProfileInput(job_id="j", user_id="u", profile_name="me", images=["s3://uploads/u/a.png"])
    with pytest.raises(ApplicationError) as failure:
        await ActivityEnvironment().run(control().resolve_or_create_profile, inp)
    assert failure.value.type == "ConsentMissing" and failure.value.non_retryable
