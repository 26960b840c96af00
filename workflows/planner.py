"""The planner: a request plus the live capabilities become a validated graph spec.

Pure functions (no I/O): the API calls them before starting a job, and operators' hand-written
graphs pass through the same `validate`.
"""

from collections.abc import Sequence

from schemas import names
from schemas.capabilities import CapabilitiesManifest
from schemas.plan import GraphSpec, PlanEdge, PlanNode
from schemas.tasks import JobRequest
from workflows.registry import TASKS

Loc = tuple[str | int, ...]


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


def plan(request: JobRequest, caps: CapabilitiesManifest) -> GraphSpec:
    """Map a request to `generate_v1`, `train_and_generate_v1` or `train_v1`, then validate it."""
    render_params = {"variant": request.variant, **request.options.model_dump()}
    script = _node("script", names.GENERATE_SCRIPT)
    select = _node("select", names.SELECT_PIPELINE, {"variant": request.variant})
    render = _node("render", names.RENDER_VIDEO, render_params)
    register = _node("register", names.REGISTER_OUTPUTS)

    if request.mode == "generate":
        profile = _node("profile", names.LOAD_PROFILE, {"profile_id": request.profile_id})
        spec = _chain("generate_v1", [script, profile, select, render, register])
    else:
        profile = _node("profile", names.RESOLVE_PROFILE, {"profile_name": request.profile_name})
        trainers = [_node("train_lora", names.TRAIN_LORA, {"preset": _preset(request, caps)})]
        if request.audio:
            trainers.append(_node("train_voice", names.TRAIN_VOICE))
        if request.mode == "train_only":
            spec = _fan("train_v1", [profile], trainers, [register])
        else:
            spec = _fan("train_and_generate_v1", [script, profile], trainers, [select, render, register])
    validate(spec, caps, request)
    return spec


def validate(spec: GraphSpec, caps: CapabilitiesManifest, request: JobRequest | None = None) -> None:
    """Reject any graph that the workers could not run as-is.

    Raises:
        PlanningError: unknown task, wrong plane, bad edges, a cycle, several entries,
            or a capability (task, variant, resolution, duration) nobody advertises.
        WorkersUnavailable: a plane the graph needs has no live worker.
    """
    _check_structure(spec)
    for i, node in enumerate(spec.nodes):
        plane_caps = caps.cpu if node.plane == "cpu" else caps.gpu
        if plane_caps is None:
            raise WorkersUnavailable(
                ("graph", "nodes", i, "plane"), f"no live {node.plane.upper()} worker is connected"
            )
        if node.task not in plane_caps.tasks:
            raise PlanningError(
                ("graph", "nodes", i, "task"),
                f"task '{node.task}' is not advertised by the {node.plane} workers",
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


def _check_structure(spec: GraphSpec) -> None:
    ids = [n.id for n in spec.nodes]
    if not ids:
        raise PlanningError(("graph", "nodes"), "a graph needs at least one node")
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise PlanningError(("graph", "nodes"), f"node id '{dup}' is used twice")
    for i, node in enumerate(spec.nodes):
        task = TASKS.get(node.task)
        if task is None:
            raise PlanningError(("graph", "nodes", i, "task"), f"task '{node.task}' is not registered")
        if task.plane != node.plane:
            raise PlanningError(
                ("graph", "nodes", i, "plane"), f"task '{node.task}' runs on the {task.plane} plane, not {node.plane}"
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
    return PlanNode(
        id=node_id,
        task=task,
        plane=TASKS[task].plane,
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
