"""Script writers: the offline writer's length and the Ollama writer's schema enforcement."""

import json

import httpx
import pytest

from activities.script_writer import WORDS_PER_SECOND, OfflineScriptWriter, OllamaScriptWriter, ScriptRejected
from schemas.tasks import ScriptInput


@pytest.mark.parametrize("seconds", [4, 12, 30])
async def test_offline_script_fits_the_duration_and_names_the_topic(seconds: int) -> None:
    script = await OfflineScriptWriter().write(
        ScriptInput(job_id="j", topic="Why the sky is blue", style="playful", duration_seconds=seconds)
    )
    words = len(script.narrative.split())
    assert words <= max(8, seconds * WORDS_PER_SECOND) + 20
    assert "why the sky is blue" in script.narrative and "playful" in script.stage
    assert script.narrative.endswith("see you next time.")


def ollama_writer(answers: list[str], seen: list[dict]) -> OllamaScriptWriter:
    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(
            200,
            json={
                "model": "m",
                "created_at": "2026-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": answers.pop(0)},
                "done": True,
            },
        )

    writer = OllamaScriptWriter("http://ollama.test", "m", 5)
    writer._client._client = httpx.AsyncClient(base_url="http://ollama.test", transport=httpx.MockTransport(handler))
    return writer


async def test_ollama_answer_is_constrained_by_the_script_schema() -> None:
    seen: list[dict] = []
    script = await ollama_writer(['{"stage": "An observatory.", "narrative": "Black holes bend light."}'], seen).write(
        ScriptInput(job_id="j", topic="black holes")
    )
    assert script.narrative == "Black holes bend light."
    assert seen[0]["format"]["required"] == ["stage", "narrative"]
    assert "black holes" in seen[0]["messages"][1]["content"]


async def test_invalid_json_gets_one_repair_attempt() -> None:
    seen: list[dict] = []
    writer = ollama_writer(['{"stage": "x"}', '{"stage": "x", "narrative": "fixed"}'], seen)
    assert (await writer.write(ScriptInput(job_id="j", topic="t"))).narrative == "fixed"
    assert len(seen) == 2 and "invalid" in seen[1]["messages"][-1]["content"]


async def test_two_invalid_answers_are_rejected() -> None:
    with pytest.raises(ScriptRejected, match="after one repair attempt"):
        await ollama_writer(["nope", "still nope"], []).write(ScriptInput(job_id="j", topic="t"))
