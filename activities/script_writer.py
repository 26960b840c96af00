"""Script writers: Ollama (structured JSON, one repair attempt) or the offline writer."""

import logging
import re
from typing import Protocol

import httpx
import ollama
from pydantic import ValidationError

from schemas.speech import DURATION_TOLERANCE, SENTENCE_PAUSE_SECONDS, count_words, estimate_spoken_seconds
from schemas.tasks import Script, ScriptInput

logger = logging.getLogger(__name__)

DEFAULT_WORDS_PER_MINUTE = 165.0  # the default Piper voice's pace, for inputs that name no voice
_WORDS_PER_SENTENCE = 12  # a spoken sentence's typical length, to budget the pauses between sentences
_MAX_NARRATIVE_CHARS = 5000  # `Script.narrative`'s limit


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
        words = target_words(inp.duration_seconds, inp.words_per_minute or DEFAULT_WORDS_PER_MINUTE)
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


def target_words(seconds: float, words_per_minute: float) -> int:
    """How many words fill `seconds` of speech at `words_per_minute`, pauses between sentences included."""
    seconds_per_word = 60.0 / words_per_minute + SENTENCE_PAUSE_SECONDS / _WORDS_PER_SENTENCE
    return max(10, round(seconds / seconds_per_word))


def _short(err: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in err.errors()[:3])


class OfflineScriptWriter:
    """Builds a script from the topic and style alone, with no language model.

    It cannot know facts about the topic, so it says so and offers a way to explore it instead,
    sized to the requested duration as the chosen voice speaks it, in English only (the CPU
    manifest advertises `en`). Jobs record `script_source = "offline"` so nobody mistakes it for
    an LLM's script.
    """

    source = "offline"

    async def write(self, inp: ScriptInput) -> Script:
        """Compose a stage description and a narration whose estimated spoken length is the requested duration."""
        topic = _clean(inp.topic)
        style = _clean(inp.style or "friendly")
        stage = f"A {style} presenter in a bright studio, with a large backdrop illustrating {_lower_first(topic)}."
        wpm = inp.words_per_minute or DEFAULT_WORDS_PER_MINUTE
        narrative = offline_narrative(topic, style, inp.duration_seconds, wpm)
        return Script(stage=stage[:2000], narrative=narrative)


# The offline narration: an opening naming the topic, a prefix of the body, a sign-off. The writer
# knows no facts, so the body says so and walks through how to explore any topic instead. Every
# sentence is distinct; `{t}` is the topic as said mid-sentence, `{s}` the style.
_OPENINGS = (
    "Let us talk about {t}.",
    "Today we talk about {t}.",
    "Hello! Today we talk about {t}.",
    "Hello, and welcome. Today we talk about {t}.",
    "Hello, and welcome! Today we are going to talk about {t}.",
)
_GREETINGS = ("Hello!", "Hello, and welcome.")  # for a topic too long to name in a very short video
_BODY = (
    "It can sound complicated at first, so let us take it one step at a time.",
    "This is not a list of facts, but a {s} way to think about the subject.",
    "First, picture the big picture, and name the main parts.",
    "Then, look at how those parts work together.",
    "Finally, ask what would change if one part were missing.",
    "That simple habit makes almost any subject easier to follow.",
    "Every topic starts with a question, and this one is no different.",
    "What made people curious about {t} in the first place?",
    "Try to put that question into your own words.",
    "A good question is short, clear, and a little surprising.",
    "Next, think about who cares about this subject, and why.",
    "Some people meet it in their daily work.",
    "Others come across it in the news, at school, or at the dinner table.",
    "Each of them sees a slightly different side of it.",
    "Now think about time.",
    "How has our understanding of {t} changed over the years?",
    "Ideas rarely arrive fully formed.",
    "They grow, they get tested, and they get corrected.",
    "It helps to start with the simplest example you can find.",
    "A small, concrete case often explains more than a long definition.",
    "Then compare it with a case that looks similar but behaves differently.",
    "The difference between the two usually points at what really matters.",
    "Watch out for common myths along the way.",
    "If an explanation sounds too neat, it is worth a second look.",
    "Ask where a claim comes from, and how someone could check it.",
    "Good sources show their evidence and admit what they do not know.",
    "Numbers can help too, as long as we know what they measure.",
    "A rough sense of scale goes a long way.",
    "Is it big or small, fast or slow, rare or everywhere?",
    "Pictures and diagrams are another great tool.",
    "Try sketching the main parts and drawing arrows between them.",
    "If the sketch gets messy, you have found something worth exploring.",
    "It also helps to explain the idea to a friend.",
    "The places where you get stuck are exactly where to dig deeper.",
    "And do not worry about getting everything right the first time.",
    "Every expert once started with the same basic questions.",
    "So here is a small challenge for you.",
    "Write down three things you would like to know about {t}.",
    "Then pick one, and spend ten minutes looking into it.",
    "You may be surprised how quickly the picture fills in.",
    "Curiosity is the best guide, whatever the subject.",
)
_SIGN_OFFS = (
    "",
    "Stay curious.",
    "That is all for today.",
    "Keep asking good questions.",
    "I hope this gives you a useful place to start.",
    "That was a quick tour of how to approach {t}.",
)
# One word apart where they can be, so the sign-off fine-tunes the length.
_THANKS = (
    "Thanks!",
    "Thanks for watching.",
    "Thanks for watching, bye.",
    "Thanks for watching, and goodbye.",
    "Thanks for watching, see you soon.",
    "Thanks for watching, and see you soon.",
    "Thanks for watching, and see you next time.",
    "Thank you for watching, and see you next time.",
    "Thank you for watching, and see you again next time.",
    "Thank you so much for watching, and see you again next time.",
)


def offline_narrative(topic: str, style: str, seconds: float, words_per_minute: float) -> str:
    """A narration of `topic` whose estimated spoken length is `seconds` (within 5 %, never over).

    It may end short only when the topic is too long to name in a very short video, or the
    duration is longer than every distinct sentence the writer has.
    """
    fill = {"t": _lower_first(topic), "s": style}
    openings = [o.format(**fill) for o in _OPENINGS]
    body = [b.format(**fill) for b in _BODY]
    endings = [" ".join(p for p in (s.format(**fill), t) if p) for s in _SIGN_OFFS for t in _THANKS]
    best = _best_fit(openings, body, endings, seconds, words_per_minute)
    if best[0] > DURATION_TOLERANCE * seconds:  # naming the topic and thanking does not fit
        fallback = _best_fit([*openings, *_GREETINGS], body, ["", *endings], seconds, words_per_minute)
        best = min(best, fallback)
    return " ".join(best[1])


def _best_fit(
    openings: list[str], body: list[str], endings: list[str], seconds: float, words_per_minute: float
) -> tuple[float, list[str]]:
    """The opening, body prefix and ending closest to `seconds`, never over it by more than the tolerance.

    Among the candidates within 2 % of `seconds`, one that ends with more than a bare "Thanks!" and
    then the one with the most body wins (a talk, not a long goodbye); otherwise the closest.

    Returns:
        The error in seconds and the sentences; the shortest opening alone when nothing fits.
    """

    def cost(text: str) -> float:
        return estimate_spoken_seconds(text, words_per_minute) if text else 0.0

    # The estimate is a sum over sentences, so the candidates' lengths add up piece by piece.
    body_costs, body_chars = [0.0], [0]
    for sentence in body:
        body_costs.append(body_costs[-1] + cost(sentence))
        body_chars.append(body_chars[-1] + len(sentence) + 1)
    ending_costs = [cost(e) for e in endings]
    limit, close_enough = seconds * (1 + DURATION_TOLERANCE), seconds * 0.02
    abrupt = [count_words(e) < 3 for e in endings]
    best_key: tuple[bool, bool, int, float] = (True, True, 0, float("inf"))
    best: tuple[float, list[str]] = (float("inf"), [min(openings, key=len)])
    for opening in openings:
        for n in range(len(body) + 1):
            head = cost(opening) + body_costs[n]
            if head > limit:
                break
            for ending, ending_cost, bare in zip(endings, ending_costs, abrupt, strict=True):
                error = abs(head + ending_cost - seconds)
                fits = (
                    head + ending_cost <= limit and len(opening) + body_chars[n] + len(ending) <= _MAX_NARRATIVE_CHARS
                )
                good = error <= close_enough
                key = (not good, bare and good, -n if good else 0, error)
                if fits and key < best_key:
                    best_key, best = key, (error, [opening, *body[:n], *([ending] if ending else [])])
    return best


def _lower_first(text: str) -> str:
    """`Why the sky is blue` → `why the sky is blue`, but keep acronyms (`NASA`, `AI`)."""
    first = text.split(" ", 1)[0]
    return text if first.isupper() else text[0].lower() + text[1:]


def _clean(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip().rstrip(".!?")
    return text or "this topic"
