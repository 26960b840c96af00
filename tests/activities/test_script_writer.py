"""Script writers: the offline writer's length and the Ollama writer's schema enforcement."""

import json

import httpx
import pytest

from activities.script_writer import (
    DEFAULT_WORDS_PER_MINUTE,
    OfflineScriptWriter,
    OllamaScriptWriter,
    ScriptRejected,
    target_words,
)
from schemas.speech import DURATION_TOLERANCE, count_words, estimate_spoken_seconds, split_sentences
from schemas.tasks import ScriptInput


async def offline(seconds: float, words_per_minute: float | None = None, topic: str = "Why the sky is blue") -> str:
    inp = ScriptInput(
        job_id="j", topic=topic, style="playful", duration_seconds=seconds, words_per_minute=words_per_minute
    )
    return (await OfflineScriptWriter().write(inp)).narrative


@pytest.mark.parametrize("seconds", [5, 10, 20, 60, 120])
@pytest.mark.parametrize("words_per_minute", [None, 140, 175, 210])
async def test_offline_script_is_as_long_as_asked_as_the_voice_speaks(
    seconds: int, words_per_minute: float | None
) -> None:
    narrative = await offline(seconds, words_per_minute)
    spoken = estimate_spoken_seconds(narrative, words_per_minute or DEFAULT_WORDS_PER_MINUTE)
    assert abs(spoken - seconds) <= DURATION_TOLERANCE * seconds, (spoken, narrative)
    sentences = split_sentences(narrative)
    assert len(set(sentences)) == len(sentences), narrative  # never padded by repeating itself
    assert "why the sky is blue" in narrative


@pytest.mark.parametrize("topic", ["AI", "How the Roman empire built and kept up its roads across three continents"])
@pytest.mark.parametrize("seconds", [5, 7, 13, 45])
async def test_offline_script_fits_short_and_long_topics(topic: str, seconds: int) -> None:
    narrative = await offline(seconds, topic=topic)
    assert abs(estimate_spoken_seconds(narrative, DEFAULT_WORDS_PER_MINUTE) - seconds) <= DURATION_TOLERANCE * seconds


async def test_offline_script_names_the_style_and_admits_it_knows_no_facts() -> None:
    script = await OfflineScriptWriter().write(
        ScriptInput(job_id="j", topic="Black holes", style="playful", duration_seconds=20)
    )
    assert "playful" in script.stage and "black holes" in script.narrative
    assert "not a list of facts" in script.narrative


async def test_a_topic_too_long_to_name_ends_short_rather_than_long() -> None:
    narrative = await offline(5, topic=" ".join(["very"] * 40) + " long topic")
    assert estimate_spoken_seconds(narrative, DEFAULT_WORDS_PER_MINUTE) <= 5 * (1 + DURATION_TOLERANCE)
    assert narrative.startswith("Hello")


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


@pytest.mark.parametrize(("seconds", "words_per_minute"), [(10, 150), (60, 150), (60, 200)])
async def test_ollama_is_asked_for_the_words_the_voice_says_in_the_duration(
    seconds: float, words_per_minute: float
) -> None:
    seen: list[dict] = []
    answer = '{"stage": "s", "narrative": "n"}'
    await ollama_writer([answer], seen).write(
        ScriptInput(job_id="j", topic="t", duration_seconds=seconds, words_per_minute=words_per_minute)
    )
    words = target_words(seconds, words_per_minute)
    assert f"about {words} words" in seen[0]["messages"][0]["content"]
    # A narration of that many words, in sentences of about a dozen, is estimated at the duration.
    narrative = " ".join(["Word " * 11 + "word."] * (words // 12)) + " word" * (words % 12) + "."
    assert count_words(narrative) == words
    assert estimate_spoken_seconds(narrative, words_per_minute) == pytest.approx(seconds, rel=DURATION_TOLERANCE)


async def test_invalid_json_gets_one_repair_attempt() -> None:
    seen: list[dict] = []
    writer = ollama_writer(['{"stage": "x"}', '{"stage": "x", "narrative": "fixed"}'], seen)
    assert (await writer.write(ScriptInput(job_id="j", topic="t"))).narrative == "fixed"
    assert len(seen) == 2 and "invalid" in seen[1]["messages"][-1]["content"]


async def test_two_invalid_answers_are_rejected() -> None:
    with pytest.raises(ScriptRejected, match="after one repair attempt"):
        await ollama_writer(["nope", "still nope"], []).write(ScriptInput(job_id="j", topic="t"))
