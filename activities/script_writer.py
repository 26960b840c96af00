"""Script writers: Ollama (structured JSON, one repair attempt) or the offline writer."""

import logging
import re
from typing import Protocol

import httpx
import ollama
from pydantic import ValidationError

from schemas.tasks import Script, ScriptInput

logger = logging.getLogger(__name__)

WORDS_PER_SECOND = 2.4  # a calm narration pace, close to espeak-ng's default rate


class ScriptRejected(Exception):
    """The LLM's answer did not match the script schema, even after one repair attempt."""


class LlmUnavailable(Exception):
    """The LLM endpoint gave no usable answer (timeout, connection or HTTP error, not Ollama's JSON); retryable."""


class ScriptWriter(Protocol):
    """Writes `{stage, narrative}` for a topic."""

    source: str

    async def write(self, inp: ScriptInput) -> Script:
        """Return a validated script."""
        ...


SYSTEM_PROMPT = """You write scripts for short narrated explainer videos.
Answer with JSON only, exactly this shape: {"stage": string, "narrative": string}.
"stage" describes the scene the viewer sees, in one or two sentences.
"narrative" is what the presenter says: plain spoken sentences, about %d words, no stage directions."""


class OllamaScriptWriter:
    """Asks an Ollama model for a JSON script constrained by the script schema."""

    def __init__(self, host: str, model: str, timeout: float) -> None:
        self._client = ollama.AsyncClient(host=host, timeout=timeout)
        self._timeout = timeout
        self._model = model
        self.source = f"ollama:{model}"

    async def write(self, inp: ScriptInput) -> Script:
        """Ask once; on an invalid answer ask once more with the validation error, then give up."""
        words = max(10, int(inp.duration_seconds * WORDS_PER_SECOND))
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT % words},
            {
                "role": "user",
                "content": f"Topic: {inp.topic}\nStyle: {inp.style or 'friendly'}\nLanguage: {inp.language}",
            },
        ]
        answer = await self._chat(messages)
        try:
            return Script.model_validate_json(answer)
        except ValidationError as err:
            logger.warning("script from %s was invalid, asking for a repair: %s", self.source, err)
            messages += [
                {"role": "assistant", "content": answer},
                {
                    "role": "user",
                    "content": f"That JSON was invalid ({_short(err)}). Answer again with valid JSON only.",
                },
            ]
            repaired = await self._chat(messages)
            try:
                return Script.model_validate_json(repaired)
            except ValidationError as err2:
                raise ScriptRejected(
                    f"the LLM ({self.source}) returned no valid script after one repair attempt: {_short(err2)}"
                ) from err2

    async def _chat(self, messages: list[dict[str, str]]) -> str:
        # Transport errors would otherwise reach the job as e.g. "Application error" (an httpx
        # timeout's empty message) or "Expecting value: line 1 column 1": say what went wrong.
        try:
            response = await self._client.chat(
                model=self._model, messages=messages, format=Script.model_json_schema(), options={"temperature": 0.7}
            )
        except httpx.TimeoutException as err:
            raise LlmUnavailable(f"the LLM ({self.source}) did not answer within {self._timeout:g} s") from err
        except ollama.ResponseError as err:
            raise LlmUnavailable(f"the LLM ({self.source}) answered HTTP {err.status_code}: {err.error}") from err
        except (httpx.HTTPError, ConnectionError) as err:
            raise LlmUnavailable(f"the LLM ({self.source}) could not be reached: {err}") from err
        except ValueError as err:  # a body that is not Ollama's JSON (a proxy's error page, ...)
            raise LlmUnavailable(
                f"the LLM ({self.source}) answered something that is not Ollama's JSON: {err}"
            ) from err
        return response.message.content or ""


def _short(err: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in err.errors()[:3])


class OfflineScriptWriter:
    """Builds a script from the topic and style alone, with no language model.

    It cannot know facts about the topic; it frames it as a spoken introduction of the right
    length, so a machine without an LLM still produces a narrated video. Jobs record
    `script_source = "offline"` so nobody mistakes it for an LLM's script.
    """

    source = "offline"

    async def write(self, inp: ScriptInput) -> Script:
        """Compose a stage description and a narration sized to the requested duration."""
        topic = _clean(inp.topic)
        style = _clean(inp.style or "friendly")
        stage = f"A {style} presenter in a bright studio, with a large backdrop illustrating {_lower_first(topic)}."
        opening = f"Hello, and welcome. Today we talk about {_lower_first(topic)}."
        closing = "Thanks for watching, and see you next time."
        body = [
            f"Here is the idea in a {style} way.",
            f"{topic[0].upper() + topic[1:]} can sound complicated at first.",
            "So let us take it one small step at a time.",
            "First, picture the big picture, and name the main parts.",
            "Then, look at how those parts work together.",
            "Finally, ask what would change if one part were missing.",
            "That simple habit makes almost any subject easier to follow.",
            f"And that is {_lower_first(topic)}, in a nutshell.",
        ]
        budget = max(8, int(inp.duration_seconds * WORDS_PER_SECOND)) - len(opening.split()) - len(closing.split())
        narrative = [opening]
        for sentence in body:
            budget -= len(sentence.split())
            if budget < 0:
                break
            narrative.append(sentence)
        narrative.append(closing)
        return Script(stage=stage[:2000], narrative=" ".join(narrative)[:5000])


def _lower_first(text: str) -> str:
    """`Why the sky is blue` → `why the sky is blue`, but keep acronyms (`NASA`, `AI`)."""
    first = text.split(" ", 1)[0]
    return text if first.isupper() else text[0].lower() + text[1:]


def _clean(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip().rstrip(".!?")
    return text or "this topic"
