"""Planner: the three graph shapes, every validation error, and snapshots of the compiled graphs."""

import asyncio
import math
from collections.abc import Callable

import pytest

from schemas import names
from schemas.capabilities import CapabilitiesManifest, Constraints, PlaneCapabilities, VoiceInfo
from schemas.plan import GraphSpec
from schemas.speech import estimate_spoken_seconds
from schemas.tasks import JobRequest, PipelineInput, RenderSettings, ScriptInput
from workflows.compiler import RUN_NODE, compile_graph, shared_graph
from workflows.planner import PlanningError, WorkersUnavailable, plan, resolve_request, validate
from workflows.registry import TASKS


def voice(voice_id: str, language: str, wpm: float = 170) -> VoiceInfo:
    return VoiceInfo(
        id=voice_id, language=language, engine=voice_id.split(":")[0], license="test", commercial="unclear",
        words_per_minute=wpm,
    )  # fmt: skip


# As the GPU worker advertises them: the neural voice first, then espeak-ng's.
VOICES = (
    voice("piper:en_US-joe-medium", "en-us", 170),
    voice("espeak-ng:en-us", "en-us", 175),
    voice("espeak-ng:en-gb", "en-gb", 175),
    voice("espeak-ng:de", "de", 160),
)


def caps(
    variants: tuple[str, ...] = ("svd", "sadtalker"),
    gpu: bool = True,
    cpu_tasks: tuple[str, ...] = names.CPU_TASKS,
    voices: tuple[VoiceInfo, ...] = VOICES,
    languages: tuple[str, ...] = ("en",),
) -> CapabilitiesManifest:
    return CapabilitiesManifest(
        cpu=PlaneCapabilities(task_queue="c", workers=1, tasks=list(cpu_tasks), languages=list(languages)),
        gpu=PlaneCapabilities(
            task_queue="g", workers=1, tasks=list(names.GPU_TASKS), variants=list(variants), training_presets=["tiny"],
            voices=list(voices),
        )
        if gpu
        else None,
        constraints=Constraints(max_duration_seconds=60, resolutions=["480p", "720p"]),
    )  # fmt: skip


def generate(**kw: object) -> JobRequest:
    return JobRequest.model_validate({"mode": "generate", "topic": "black holes", "variant": "svd", **kw})


def train(**kw: object) -> JobRequest:
    return JobRequest.model_validate(
        {
            "mode": "train_and_generate",
            "topic": "t",
            "variant": "svd",
            "images": ["s3://uploads/local/a.png"],
            "audio": ["s3://uploads/local/b.wav"],
            **kw,
        }
    )


def edges(spec: GraphSpec) -> set[tuple[str, str]]:
    return {(e.from_, e.to) for e in spec.edges}


def test_generate_graph_is_a_chain_with_the_variant_in_params() -> None:
    spec = plan(generate(variant="sadtalker"), caps())
    assert spec.graph_id == "generate_v1"
    assert [n.id for n in spec.nodes] == ["script", "profile", "select", "render", "register"]
    assert spec.node("profile").task == names.LOAD_PROFILE
    assert spec.node("render").params["variant"] == "sadtalker"
    assert spec.node("render").plane == "gpu" and spec.node("script").plane == "cpu"
    assert edges(spec) == {("script", "profile"), ("profile", "select"), ("select", "render"), ("render", "register")}


def test_train_and_generate_graph_fans_out_to_both_trainings() -> None:
    spec = plan(train(), caps())
    assert spec.graph_id == "train_and_generate_v1"
    assert spec.node("profile").task == names.RESOLVE_PROFILE
    assert {
        ("profile", "train_lora"),
        ("profile", "train_voice"),
        ("train_lora", "select"),
        ("train_voice", "select"),
    } <= edges(spec)
    order = spec.topological_order()
    assert order.index("train_voice") < order.index("select") < order.index("render") < order.index("register")


def test_train_without_audio_trains_only_the_lora() -> None:
    spec = plan(train(audio=[]), caps())
    assert "train_voice" not in [n.id for n in spec.nodes]


def test_train_only_graph_has_no_render() -> None:
    spec = plan(train(mode="train_only"), caps())
    assert spec.graph_id == "train_v1"
    assert [n.task for n in spec.nodes if n.plane == "gpu"] == [names.TRAIN_LORA, names.TRAIN_VOICE]


def test_a_review_waits_after_the_script_and_training_before_the_render() -> None:
    reviewed = plan(generate(options={"review": True}), caps())
    assert [n.id for n in reviewed.nodes] == ["script", "profile", "select", "review", "render", "register"]
    review = reviewed.node("review")
    assert review.task == names.APPROVE_SCRIPT and review.plane == "cpu"
    assert review.params == {"words_per_minute": 170}  # the voice's pace, to check edits with
    assert names.APPROVE_SCRIPT not in caps().cpu.tasks  # built into the workflow: nobody advertises it

    trained = plan(train(options={"review": True}), caps())
    order = trained.topological_order()
    assert order.index("train_lora") < order.index("review") and order.index("train_voice") < order.index("review")
    assert order.index("review") < order.index("render")
    assert "review" not in [n.id for n in plan(generate(), caps()).nodes]


def test_review_of_a_train_only_job_is_rejected() -> None:
    with pytest.raises(PlanningError, match="writes no script") as err:
        plan(train(mode="train_only", options={"review": True}), caps())
    assert err.value.loc == ("body", "options", "review")


def test_own_media_with_the_talking_head_variant_is_rejected() -> None:
    with pytest.raises(PlanningError, match="svd") as err:
        plan(generate(variant="sadtalker", options={"media": ["s3://uploads/local/a.png"]}), caps())
    assert err.value.loc == ("body", "options", "media")
    assert plan(generate(options={"media": ["s3://uploads/local/a.png"]}), caps()).node("render")


def test_unadvertised_variant_is_rejected_naming_it() -> None:
    with pytest.raises(PlanningError, match="sadtalker") as err:
        plan(generate(variant="sadtalker"), caps(variants=("svd",)))
    assert err.value.loc == ("body", "variant")
    assert err.value.kind == "capability_missing"


def test_no_live_gpu_worker_is_unavailable_not_invalid() -> None:
    with pytest.raises(WorkersUnavailable) as err:
        plan(generate(), caps(gpu=False))
    assert err.value.status_code == 503


def test_duration_and_resolution_beyond_constraints_are_rejected_not_capped() -> None:
    with pytest.raises(PlanningError, match="durationSeconds") as err:
        plan(generate(options=RenderSettings(duration_seconds=90)), caps())
    assert err.value.loc == ("body", "options", "durationSeconds")
    with pytest.raises(PlanningError, match="1080p"):
        plan(generate(options=RenderSettings(resolution="1080p")), caps())


def test_unadvertised_cpu_task_is_rejected() -> None:
    with pytest.raises(PlanningError, match=names.LOAD_PROFILE):
        plan(generate(), caps(cpu_tasks=(names.GENERATE_SCRIPT,)))


def spec_with(nodes: list[dict[str, object]], edge_list: list[tuple[str, str]]) -> GraphSpec:
    return GraphSpec.model_validate(
        {"graph_id": "custom", "nodes": nodes, "edges": [{"from": a, "to": b} for a, b in edge_list]}
    )


SCRIPT = {"id": "script", "task": names.GENERATE_SCRIPT, "plane": "cpu"}
RENDER = {"id": "render", "task": names.RENDER_VIDEO, "plane": "gpu", "params": {"variant": "svd"}}


@pytest.mark.parametrize(
    ("nodes", "edge_list", "message"),
    [
        ([{"id": "x", "task": "does.not.exist", "plane": "cpu"}], [], "not registered"),
        ([{**SCRIPT, "plane": "gpu"}], [], "runs on the cpu plane"),
        ([SCRIPT, RENDER], [("script", "ghost")], "unknown node 'ghost'"),
        ([SCRIPT, RENDER], [("script", "render"), ("render", "script")], "cycle"),
        ([SCRIPT, RENDER], [], "exactly one entry"),
        ([SCRIPT, SCRIPT], [], "used twice"),
        ([SCRIPT], [("script", "script")], "depends on itself"),
        ([], [], "at least one node"),
    ],
)
def test_invalid_graphs_are_rejected(
    nodes: list[dict[str, object]], edge_list: list[tuple[str, str]], message: str
) -> None:
    with pytest.raises(PlanningError, match=message):
        validate(spec_with(nodes, edge_list), caps())


def test_a_valid_operator_graph_passes() -> None:
    validate(spec_with([SCRIPT, RENDER], [("script", "render")]), caps())


async def _noop(_state: dict[str, object]) -> dict[str, object]:
    return {}


@pytest.mark.parametrize(
    "request_of",
    [generate, train, lambda: train(mode="train_only"), lambda: train(options={"review": True})],
    ids=["generate_v1", "train_and_generate_v1", "train_v1", "train_and_generate_v1_reviewed"],
)
def test_compiled_graph_snapshot(request_of: Callable[[], JobRequest], snapshot: object) -> None:
    spec = plan(request_of(), caps())
    compiled = compile_graph(spec, lambda _node: _noop)
    assert compiled.get_graph().draw_mermaid(with_styles=False) == snapshot
    assert spec.model_dump(mode="json", by_alias=True) == snapshot


async def test_compiled_graph_runs_parallel_branches_in_one_step() -> None:
    spec = plan(train(), caps())
    steps: list[str] = []

    def node_fn(node: object) -> object:
        async def run(_state: dict[str, object]) -> dict[str, object]:
            steps.append(node.id)  # type: ignore[attr-defined]
            return {}

        return run

    await compile_graph(spec, node_fn).ainvoke({"outputs": {}})  # type: ignore[arg-type]
    assert steps[:2] == ["script", "profile"] and set(steps[2:4]) == {"train_lora", "train_voice"}
    assert steps[4:] == ["select", "render", "register"]


async def test_runs_share_one_compiled_graph_per_shape_and_each_gets_its_own_nodes() -> None:
    spec = plan(train(), caps())
    slower_voice = spec.model_copy(deep=True)
    slower_voice.node("script").params["words_per_minute"] = 120  # same shape, other params
    assert shared_graph(spec) is shared_graph(slower_voice)
    assert shared_graph(plan(generate(), caps())) is not shared_graph(spec)

    async def run(label: str) -> list[str]:
        steps: list[str] = []

        async def run_node(node_id: str) -> dict[str, object]:
            await asyncio.sleep(0)  # interleave the two runs
            steps.append(f"{label}:{node_id}")
            return {}

        await shared_graph(spec).ainvoke({"outputs": {}}, {"configurable": {RUN_NODE: run_node}})
        return steps

    first, second = await asyncio.gather(run("a"), run("b"))
    assert [s.split(":")[1] for s in first][:2] == ["script", "profile"] and len(first) == len(spec.nodes)
    assert {s.split(":")[0] for s in first} == {"a"} and {s.split(":")[0] for s in second} == {"b"}


def test_training_preset_must_be_advertised() -> None:
    assert plan(train(training_preset="tiny"), caps()).node("train_lora").params["preset"] == "tiny"
    with pytest.raises(PlanningError, match="'huge' is not advertised") as err:
        plan(train(training_preset="huge"), caps())
    assert err.value.loc == ("body", "trainingPreset")


def test_duration_below_the_minimum_is_rejected() -> None:
    with pytest.raises(PlanningError, match="below the minimum of 5 s") as err:
        plan(generate(options=RenderSettings(duration_seconds=4.9)), caps())
    assert err.value.loc == ("body", "options", "durationSeconds")
    assert plan(generate(options=RenderSettings(duration_seconds=5)), caps()).graph_id == "generate_v1"


def test_a_language_no_voice_speaks_is_rejected_listing_some_that_are_spoken() -> None:
    with pytest.raises(PlanningError, match="no advertised voice speaks 'fr'") as err:
        plan(generate(language="fr"), caps())
    assert err.value.loc == ("body", "language") and err.value.kind == "capability_missing"
    assert "en-us, en-gb, de" in err.value.message


def test_a_long_list_of_languages_is_shortened() -> None:
    many = tuple(voice(f"espeak-ng:l{i}", f"l{i}") for i in range(30))
    with pytest.raises(PlanningError, match="and 22 more"):
        plan(generate(language="fr"), caps(voices=many))


def test_a_topic_needs_a_writer_for_its_language() -> None:
    with pytest.raises(PlanningError, match="script writer cannot write 'de' \\(it writes: en\\)") as err:
        plan(generate(language="de"), caps())
    assert err.value.loc == ("body", "language")
    with pytest.raises(PlanningError, match="it writes: none"):
        plan(generate(), caps(languages=()))
    assert plan(generate(language="de"), caps(languages=("*",))).graph_id == "generate_v1"
    assert plan(generate(language="en-gb"), caps()).graph_id == "generate_v1"  # `en` writes every English


def test_a_user_script_needs_no_writer_language() -> None:
    script = {"stage": "A studio.", "narrative": "Hallo und willkommen. " * 3}
    request = generate(language="de", script=script, options=RenderSettings(duration_seconds=5))
    assert plan(request, caps()).graph_id == "generate_v1"


def test_an_unknown_voice_is_rejected_listing_the_language_voices() -> None:
    with pytest.raises(PlanningError, match="voice 'piper:nobody' is not advertised") as err:
        plan(generate(voice="piper:nobody"), caps())
    assert err.value.loc == ("body", "voice")
    assert "piper:en_US-joe-medium, espeak-ng:en-us" in err.value.message


def test_a_voice_of_another_language_is_rejected() -> None:
    with pytest.raises(PlanningError, match="speaks 'de'") as err:
        plan(generate(voice="espeak-ng:de"), caps())
    assert err.value.loc == ("body", "voice")
    with pytest.raises(PlanningError, match="speaks 'en-us'"):  # another region is another language
        plan(generate(language="en-gb", voice="piper:en_US-joe-medium"), caps())


@pytest.mark.parametrize(
    ("language", "requested", "chosen"),
    [
        ("en", None, "piper:en_US-joe-medium"),
        ("en-us", None, "piper:en_US-joe-medium"),
        ("en-gb", None, "espeak-ng:en-gb"),
        ("en", "espeak-ng:en-gb", "espeak-ng:en-gb"),
        ("de", None, "espeak-ng:de"),
    ],
)
def test_the_voice_is_resolved_at_submission(language: str, requested: str | None, chosen: str) -> None:
    request = resolve_request(generate(language=language, voice=requested), caps(languages=("*",)))
    assert request.voice == chosen
    wpm = next(v.words_per_minute for v in VOICES if v.id == chosen)
    assert plan(request, caps(languages=("*",))).node("script").params == {"words_per_minute": wpm}


def test_the_script_node_carries_the_voice_pace_into_the_writer_input() -> None:
    request = resolve_request(generate(), caps())
    spec = plan(request, caps())
    job = PipelineInput(
        job_id="job-1", user_id="u", request=request, graph=spec, cpu_task_queue="c", gpu_task_queue="g"
    )
    node = spec.node("script")
    assert TASKS[node.task].build_input(job, {}, node) == ScriptInput(
        job_id="job-1", topic="black holes", language="en", duration_seconds=12, words_per_minute=170
    )
    old_node = node.model_copy(update={"params": {}})  # graphs planned before the pace was passed on
    assert TASKS[node.task].build_input(job, {}, old_node).words_per_minute is None  # type: ignore[attr-defined]


SCRIPT_40_WORDS = {"stage": "A studio.", "narrative": "One two three four five six seven eight nine ten. " * 4}
SPOKEN_40_WORDS = estimate_spoken_seconds(SCRIPT_40_WORDS["narrative"], 170)  # 40 words, 4 pauses: 15.52 s


def test_a_user_script_without_a_duration_sets_it() -> None:
    request = resolve_request(generate(script=SCRIPT_40_WORDS), caps(), duration_given=False)
    assert request.options.duration_seconds == math.ceil(SPOKEN_40_WORDS * 10) / 10 == 15.6
    assert request.options.duration_seconds == 15.6  # what the render input carries (`RenderInput.options`)


def test_a_user_script_duration_is_clamped_to_the_constraints() -> None:
    short = resolve_request(
        generate(script={"stage": "s", "narrative": "Hi there, friends."}), caps(), duration_given=False
    )
    assert short.options.duration_seconds == 5
    with pytest.raises(PlanningError, match="too little for a 5 s video"):  # 1.4 s of speech cannot fill 5 s
        plan(short, caps())
    long = resolve_request(
        generate(script={**SCRIPT_40_WORDS, "narrative": SCRIPT_40_WORDS["narrative"] * 5}),
        caps(),
        duration_given=False,
    )
    assert long.options.duration_seconds == 60
    with pytest.raises(PlanningError, match="about 77.6 s to say") as err:
        plan(long, caps())
    assert err.value.loc == ("body", "script", "narrative")


def test_a_user_script_must_fit_the_duration_given() -> None:
    with pytest.raises(PlanningError, match=r"takes about 15\.5 s to say, more than the 10 s video") as err:
        plan(generate(script=SCRIPT_40_WORDS, options=RenderSettings(duration_seconds=10)), caps())
    assert err.value.loc == ("body", "script", "narrative")
    with pytest.raises(PlanningError, match=r"only about 15\.5 s to say, too little for a 30 s video"):
        plan(generate(script=SCRIPT_40_WORDS, options=RenderSettings(duration_seconds=30)), caps())
    for seconds in (14.5, 15.5, 20):  # up to 10 % too long is sped up; speech covers at least 75 %
        plan(generate(script=SCRIPT_40_WORDS, options=RenderSettings(duration_seconds=seconds)), caps())
    given = resolve_request(generate(script=SCRIPT_40_WORDS, options=RenderSettings(duration_seconds=20)), caps())
    assert given.options.duration_seconds == 20  # duration_given (the default) keeps the user's


def test_train_and_generate_checks_speech_too() -> None:
    with pytest.raises(PlanningError) as err:
        plan(train(language="fr"), caps())
    assert err.value.loc == ("body", "language")
    with pytest.raises(PlanningError) as err:
        plan(train(options=RenderSettings(duration_seconds=2)), caps())
    assert err.value.loc == ("body", "options", "durationSeconds")
    assert resolve_request(train(), caps()).voice == "piper:en_US-joe-medium"


def test_train_only_renders_nothing_and_skips_speech_checks() -> None:
    request = train(mode="train_only", language="fr", voice="none", options=RenderSettings(duration_seconds=1))
    assert resolve_request(request, caps(), duration_given=False) == request
    assert plan(request, caps()).graph_id == "train_v1"


def test_no_gpu_worker_is_still_unavailable_whatever_the_language() -> None:
    request = generate(language="fr")
    assert resolve_request(request, caps(gpu=False)) == request
    with pytest.raises(WorkersUnavailable):
        plan(request, caps(gpu=False))


def test_captions_in_a_script_the_font_cannot_draw_are_rejected() -> None:
    russian = VoiceInfo(
        id="espeak-ng:ru", language="ru", engine="espeak-ng", license="test", commercial="yes",
        words_per_minute=170, captions=False,
    )  # fmt: skip
    script = {"stage": "A studio", "narrative": "Привет. " * 12}
    with_russian = caps(voices=(*VOICES, russian))
    with pytest.raises(PlanningError, match="captions cannot be drawn") as err:
        plan(generate(language="ru", script=script, options={"captions": True}), with_russian)
    assert err.value.loc == ("body", "options", "captions")
    plan(generate(language="ru", script=script, options={"captions": False}), with_russian)  # without: fine
    plan(generate(options={"captions": True}), with_russian)  # English captions: fine


def test_every_error_a_retry_policy_names_is_raised_somewhere() -> None:
    """A non-retryable type nothing raises is dead configuration (it hid that `RenderFailed` was never raised)."""
    from pathlib import Path

    from schemas import names as names_module
    from workflows.registry import CALLBACK_RETRY, NON_RETRYABLE_ERRORS

    constants = {value: key for key, value in vars(names_module).items() if key.startswith("ERR_")}
    root = Path(__file__).resolve().parents[2]
    sources = [
        p.read_text(encoding="utf-8")
        for package in ("api", "activities", "gpu_worker", "core", "workflows")
        for p in (root / package).rglob("*.py")
        if p.name != "registry.py"
    ]
    for error_type in [*NON_RETRYABLE_ERRORS, *CALLBACK_RETRY.non_retryable_error_types]:
        assert error_type in constants, f"{error_type} is not a constant in schemas/names.py"
        assert any(constants[error_type] in source for source in sources), f"nothing raises {error_type}"


# XTTS v2 advertises the `profile` voice (a profile's cloned voice) last, once per language it speaks.
CLONING = (*VOICES, voice("espeak-ng:fr", "fr"), voice("profile", "en", 165), voice("profile", "de", 165))


@pytest.mark.parametrize(
    ("request_", "clone", "chosen"),
    [
        (generate(), None, "piper:en_US-joe-medium"),  # no profile: never the cloned voice
        (generate(profile_id="prof-1"), "profile", "profile"),  # a profile with a cloned voice: that voice
        (generate(profile_id="prof-1"), None, "piper:en_US-joe-medium"),  # a fitted pace only: the default voice
        (generate(profile_id="prof-1"), "another-engine", "piper:en_US-joe-medium"),  # cloned where nothing runs
        (train(), None, "profile"),  # clips to clone from
        (train(audio=[]), None, "piper:en_US-joe-medium"),
        (generate(profile_id="prof-1", voice="espeak-ng:en-us"), "profile", "espeak-ng:en-us"),  # a named voice wins
        (generate(profile_id="prof-1", language="de", voice="profile"), "profile", "profile"),
    ],
)
def test_a_profile_speaks_in_its_own_voice_when_none_is_named(request_: JobRequest, clone, chosen: str) -> None:
    resolved = resolve_request(request_, caps(voices=CLONING, languages=("*",)), profile_clone=clone)
    assert resolved.voice == chosen
    assert plan(resolved, caps(voices=CLONING, languages=("*",)), profile_clone=clone).graph_id.endswith("_v1")


@pytest.mark.parametrize(
    ("request_", "voices", "clone", "words"),
    [
        (generate(voice="profile"), CLONING, None, "give profileId, or audio clips to train one"),
        (generate(profile_id="p", voice="profile"), VOICES, "profile", "needs a voice-cloning model (XTTS v2)"),
        (generate(profile_id="p", voice="profile"), CLONING, None, "profile 'p' has none"),
        (generate(profile_id="p", voice="profile"), CLONING, "xtts-v1", "was cloned by xtts-v1, which no GPU worker"),
        (generate(profile_id="p", voice="profile", language="fr"), CLONING, "profile", "cannot speak 'fr'; it speaks en, de"),
    ],
)  # fmt: skip
def test_the_profile_voice_without_a_profile_model_or_language_is_a_422(request_, voices, clone, words: str) -> None:
    with pytest.raises(PlanningError) as err:
        plan(request_, caps(voices=voices, languages=("*",)), profile_clone=clone)
    assert err.value.loc == ("body", "voice") and err.value.kind == "capability_missing"
    assert words in err.value.message and "voices for" in err.value.message
