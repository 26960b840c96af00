"""The planner: a request plus the live capabilities become a validated graph spec.

Pure functions (no I/O): the API calls them before starting a job (`resolve_request` first, to
choose the voice and fit the duration to a user script), and operators' hand-written graphs pass
through the same `validate`.
"""

import math
from collections.abc import Sequence

from schemas import names
from schemas.capabilities import ANY_LANGUAGE, CapabilitiesManifest, VoiceInfo
from schemas.plan import GraphSpec, PlanEdge, PlanNode
from schemas.speech import (
    PROFILE_VOICE,
    estimate_spoken_seconds,
    language_matches,
    normalize_language,
    script_length_error,
    voices_for,
)
from schemas.tasks import JobRequest
from workflows.registry import BUILT_IN_TASKS, plane_of

Loc = tuple[str | int, ...]
_TRAINING_MISSING = (
    "training is not available: the GPU workers were installed without the `gpu` extra "
    "(torch, diffusers; `make install-gpu`, then restart them)"
)


class PlanningError(Exception):
    """A request or graph the planner cannot accept; `loc` names the offending field."""

    status_code = 422

    def __init__(self, loc: Loc, message: str, kind: str = "plan_invalid") -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message
        self.kind = kind


class WorkersUnavailable(PlanningError):
    """No live worker for a plane: nothing could run the job right now."""

    status_code = 503


def resolve_request(
    request: JobRequest, caps: CapabilitiesManifest, *, duration_given: bool = True, profile_clone: str | None = None
) -> JobRequest:
    """The request as its workflow carries it: the voice chosen, and the duration fitted to a user script.

    The voice is the requested one, else the profile's own (`profile`, where the job has clips to clone it
    from, or its profile's voice was cloned by the engine a GPU worker advertises: `profile_clone`, the
    profile's `voice_clone_engine`), else the first advertised for the language. A user `script`
    without a `durationSeconds` (`duration_given` False) sets the duration to its estimated spoken
    length, clamped to the constraints. A request that renders nothing comes back unchanged.

    Raises:
        PlanningError: no advertised voice speaks the language, or the voice is unknown or speaks another.
    """
    voice = _speaking_voice(request, caps, profile_clone)
    if voice is None:
        return request
    options = request.options
    if request.script is not None and not duration_given:
        spoken = estimate_spoken_seconds(request.script.narrative, voice.words_per_minute)
        limits = caps.constraints
        fitted = min(max(math.ceil(spoken * 10) / 10, limits.min_duration_seconds), limits.max_duration_seconds)
        options = options.model_copy(update={"duration_seconds": fitted})
    return request.model_copy(update={"voice": voice.id, "options": options})


def plan(request: JobRequest, caps: CapabilitiesManifest, *, profile_clone: str | None = None) -> GraphSpec:
    """Map a request to `generate_v1`, `train_and_generate_v1` or `train_v1`, then validate it.

    `profile_clone` is the profile's `voice_clone_engine`, as for `resolve_request`.

    The script node's params carry the speaking voice's pace, so the writer sizes the narration for it.
    With `options.review` a `review` node waits before `render`; its params carry the pace the
    person's edits are checked with.
    """
    _check_options(request)
    voice = _speaking_voice(request, caps, profile_clone)
    pace = voice.words_per_minute if voice else None
    script = _node("script", names.GENERATE_SCRIPT, {"words_per_minute": pace})
    select = _node("select", names.SELECT_PIPELINE, {"variant": request.variant})
    render = _node("render", names.RENDER_VIDEO, {"variant": request.variant})  # options travel in the request
    register = _node("register", names.REGISTER_OUTPUTS)
    review = [_node("review", names.APPROVE_SCRIPT, {"words_per_minute": pace})] if request.options.review else []

    if request.mode == "generate":
        profile = _node("profile", names.LOAD_PROFILE, {"profile_id": request.profile_id})
        spec = _chain("generate_v1", [script, profile, select, *review, render, register])
    else:
        profile = _node("profile", names.RESOLVE_PROFILE, {"profile_name": request.profile_name})
        trainers = [_node("train_lora", names.TRAIN_LORA, {"preset": _preset(request, caps)})]
        if request.audio:
            trainers.append(_node("train_voice", names.TRAIN_VOICE))
        if request.mode == "train_only":
            spec = _fan("train_v1", [profile], trainers, [register])
        else:
            spec = _fan("train_and_generate_v1", [script, profile], trainers, [select, *review, render, register])
    validate(spec, caps, request, profile_clone=profile_clone)
    return spec


def _check_options(request: JobRequest) -> None:
    """Options that do not fit the mode or the variant."""
    if request.options.review and request.mode == "train_only":
        raise PlanningError(
            ("body", "options", "review"), "a train_only job writes no script to review; leave review out"
        )
    if request.options.media and request.variant != "svd":
        raise PlanningError(
            ("body", "options", "media"),
            f"your own pictures and clips replace the scene of the svd variant; the {request.variant} variant "
            "shows only the presenter: choose variant svd or leave media out",
        )


def validate(
    spec: GraphSpec, caps: CapabilitiesManifest, request: JobRequest | None = None, *, profile_clone: str | None = None
) -> None:
    """Reject any graph that the workers could not run as-is (`profile_clone` as for `resolve_request`).

    Raises:
        PlanningError: unknown task, wrong plane, bad edges, a cycle, several entries, a capability
            (task, variant, resolution, duration, language, voice) nobody advertises, or a user
            script that cannot fill the duration.
        WorkersUnavailable: a plane the graph needs has no live worker.
    """
    _check_structure(spec)
    for i, node in enumerate(spec.nodes):
        plane_caps = caps.cpu if node.plane == "cpu" else caps.gpu
        if plane_caps is None:
            raise WorkersUnavailable(
                ("graph", "nodes", i, "plane"), f"no live {node.plane.upper()} worker is connected"
            )
        if node.task not in plane_caps.tasks and node.task not in BUILT_IN_TASKS:
            raise PlanningError(
                ("graph", "nodes", i, "task"),
                _TRAINING_MISSING
                if node.task == names.TRAIN_LORA
                else f"task '{node.task}' is not advertised by the {node.plane} workers",
                "capability_missing",
            )
        variant = node.params.get("variant")
        if node.task == names.RENDER_VIDEO and variant not in plane_caps.variants:
            raise PlanningError(
                ("body", "variant"),
                f"variant '{variant}' is not advertised by the GPU workers (they offer: {', '.join(plane_caps.variants) or 'none'})",
                "capability_missing",
            )
    if request is not None and request.mode != "train_only":
        _check_constraints(request, caps)
        _check_speech(request, caps, profile_clone)


def _check_structure(spec: GraphSpec) -> None:
    ids = [n.id for n in spec.nodes]
    if not ids:
        raise PlanningError(("graph", "nodes"), "a graph needs at least one node")
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise PlanningError(("graph", "nodes"), f"node id '{dup}' is used twice")
    for i, node in enumerate(spec.nodes):
        plane = plane_of(node.task)
        if plane is None:
            raise PlanningError(("graph", "nodes", i, "task"), f"task '{node.task}' is not registered")
        if plane != node.plane:
            raise PlanningError(
                ("graph", "nodes", i, "plane"), f"task '{node.task}' runs on the {plane} plane, not {node.plane}"
            )
    for i, edge in enumerate(spec.edges):
        for end in ("from", "to"):
            ref = edge.from_ if end == "from" else edge.to
            if ref not in ids:
                raise PlanningError(("graph", "edges", i, end), f"edge references unknown node '{ref}'")
        if edge.from_ == edge.to:
            raise PlanningError(("graph", "edges", i), f"node '{edge.to}' depends on itself")
    if len(spec.topological_order()) != len(ids):
        raise PlanningError(("graph", "edges"), "the graph has a cycle")
    entries = [n.id for n in spec.nodes if not spec.parents(n.id)]
    if len(entries) != 1:
        raise PlanningError(
            ("graph", "edges"), f"a graph has exactly one entry node, this one has {len(entries)}: {', '.join(entries)}"
        )


def _check_constraints(request: JobRequest, caps: CapabilitiesManifest) -> None:
    limits = caps.constraints
    options = request.options
    if options.duration_seconds < limits.min_duration_seconds:
        raise PlanningError(
            ("body", "options", "durationSeconds"),
            f"durationSeconds {options.duration_seconds:g} is below the minimum of {limits.min_duration_seconds:g} s",
        )
    if options.duration_seconds > limits.max_duration_seconds:
        raise PlanningError(
            ("body", "options", "durationSeconds"),
            f"durationSeconds {options.duration_seconds:g} exceeds the advertised maximum of {limits.max_duration_seconds:g} s",
        )
    if options.resolution not in limits.resolutions:
        raise PlanningError(
            ("body", "options", "resolution"),
            f"resolution '{options.resolution}' is not advertised (available: {', '.join(limits.resolutions) or 'none'})",
        )


def _check_speech(request: JobRequest, caps: CapabilitiesManifest, profile_clone: str | None) -> None:
    """A topic needs a writer for its language, and a user script must fill the duration."""
    voice = _speaking_voice(request, caps, profile_clone)
    if voice is None:  # no GPU worker: `validate` already answered 503
        return
    if request.script is None and caps.cpu is not None:
        writes = caps.cpu.languages
        if not any(lang == ANY_LANGUAGE or language_matches(request.language, lang) for lang in writes):
            raise PlanningError(
                ("body", "language"),
                f"the script writer cannot write '{request.language}' (it writes: {_few(writes)}); "
                "give your own script or choose one of those languages",
                "capability_missing",
            )
    if request.options.captions and not voice.captions:
        raise PlanningError(
            ("body", "options", "captions"),
            f"captions cannot be drawn in the script of '{request.language}' (the caption font lacks its letters); "
            "turn captions off for this language",
            "capability_missing",
        )
    if request.script is not None:
        spoken = estimate_spoken_seconds(request.script.narrative, voice.words_per_minute)
        problem = script_length_error(spoken, request.options.duration_seconds)
        if problem is not None:
            raise PlanningError(("body", "script", "narrative"), problem)


def _speaking_voice(request: JobRequest, caps: CapabilitiesManifest, profile_clone: str | None) -> VoiceInfo | None:
    """The voice that will speak the request; None when nothing is spoken or no GPU worker is live.

    Raises:
        PlanningError: no advertised voice speaks the language, or the voice is unknown or speaks another.
    """
    if request.mode == "train_only" or caps.gpu is None:
        return None

    # The `profile` voice (a cloned voice) needs clips to clone it from, or a profile whose voice that engine cloned.
    def own(voice: VoiceInfo) -> bool:
        return bool(request.audio) or (bool(request.profile_id) and voice.engine == profile_clone)

    advertised = [v for v in caps.gpu.voices if v.id != PROFILE_VOICE or own(v)]
    speaking = voices_for(advertised, request.language)
    if not speaking:
        languages = list(dict.fromkeys(normalize_language(v.language) for v in advertised))
        raise PlanningError(
            ("body", "language"),
            f"no advertised voice speaks '{request.language}' (available languages: {_few(languages)})",
            "capability_missing",
        )
    if request.voice is None:
        return next((v for v in speaking if v.id == PROFILE_VOICE), speaking[0])
    if request.voice == PROFILE_VOICE:
        return _profile_voice(request, caps.gpu.voices, speaking, profile_clone)
    chosen = next((v for v in advertised if v.id == request.voice), None)
    if chosen is None or chosen not in speaking:
        why = "is not advertised" if chosen is None else f"speaks '{chosen.language}'"
        raise PlanningError(
            ("body", "voice"),
            f"voice '{request.voice}' {why}; voices for '{request.language}': {_few([v.id for v in speaking])}",
            "capability_missing",
        )
    return chosen


def _profile_voice(
    request: JobRequest, advertised: list[VoiceInfo], speaking: list[VoiceInfo], profile_clone: str | None
) -> VoiceInfo:
    """The `profile` voice for the request's language, or why it cannot speak this job."""
    chosen = next((v for v in speaking if v.id == PROFILE_VOICE), None)
    if chosen is not None:
        return chosen
    engines = sorted({v.engine for v in advertised if v.id == PROFILE_VOICE})
    cloned = [normalize_language(v.language) for v in advertised if v.id == PROFILE_VOICE]
    if not engines:
        why = "needs a voice-cloning model (XTTS v2) on the GPU workers, and none is advertised"
    elif not request.profile_id and not request.audio:
        why = "speaks in your profile's cloned voice: give profileId, or audio clips to train one"
    elif not request.audio and profile_clone is None:
        why = (
            f"needs a cloned voice, and profile '{request.profile_id}' has none (its voice was trained before "
            "cloning, or without a cloning model): train it again with audio clips"
        )
    elif not request.audio and profile_clone not in engines:
        why = f"was cloned by {profile_clone}, which no GPU worker runs now (they clone with {_few(engines)})"
    else:
        why = f"(your cloned voice) cannot speak '{request.language}'; it speaks {_few(cloned)}"
    others = [v.id for v in speaking]
    raise PlanningError(
        ("body", "voice"), f"voice '{PROFILE_VOICE}' {why}; voices for '{request.language}': {_few(others)}",
        "capability_missing",
    )  # fmt: skip


def _few(items: Sequence[str], shown: int = 8) -> str:
    """`a, b, c and 12 more`: enough of a long list to act on, without printing hundreds."""
    if not items:
        return "none"
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def _preset(request: JobRequest, caps: CapabilitiesManifest) -> str:
    presets = caps.gpu.training_presets if caps.gpu else []
    if request.training_preset is None:
        return presets[0] if presets else "tiny"
    if request.training_preset not in presets:
        raise PlanningError(
            ("body", "trainingPreset"),
            f"training preset '{request.training_preset}' is not advertised (available: {', '.join(presets) or 'none'})",
            "capability_missing",
        )
    return request.training_preset


def _node(node_id: str, task: str, params: dict[str, object] | None = None) -> PlanNode:
    plane = plane_of(task)
    if plane is None:
        raise KeyError(f"the planner names an unregistered task: {task}")
    return PlanNode(
        id=node_id,
        task=task,
        plane=plane,
        params={k: v for k, v in (params or {}).items() if v is not None},
    )


def _chain(graph_id: str, nodes: Sequence[PlanNode]) -> GraphSpec:
    edges = [PlanEdge(**{"from": a.id, "to": b.id}) for a, b in zip(nodes, nodes[1:], strict=False)]
    return GraphSpec(graph_id=graph_id, nodes=list(nodes), edges=edges)


def _fan(graph_id: str, before: list[PlanNode], parallel: list[PlanNode], after: list[PlanNode]) -> GraphSpec:
    """`before` as a chain, then every `parallel` node at once, joined into the `after` chain."""
    head, tail = _chain(graph_id, before), _chain(graph_id, after)
    fan_out = [PlanEdge(**{"from": before[-1].id, "to": p.id}) for p in parallel]
    fan_in = [PlanEdge(**{"from": p.id, "to": after[0].id}) for p in parallel]
    return GraphSpec(
        graph_id=graph_id, nodes=[*before, *parallel, *after], edges=[*head.edges, *fan_out, *fan_in, *tail.edges]
    )
