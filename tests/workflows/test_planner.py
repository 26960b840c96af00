"""Planner: both graph shapes, every validation error, and a snapshot of the compiled graph."""

import pytest

from schemas import names
from schemas.capabilities import CapabilitiesManifest, Constraints, PlaneCapabilities
from schemas.plan import GraphSpec
from schemas.tasks import JobRequest, RenderSettings
from workflows.compiler import compile_graph
from workflows.planner import PlanningError, WorkersUnavailable, plan, validate


def caps(
    variants: tuple[str, ...] = ("svd", "sadtalker"), gpu: bool = True, cpu_tasks: tuple[str, ...] = names.CPU_TASKS
) -> CapabilitiesManifest:
    return CapabilitiesManifest(
        cpu=PlaneCapabilities(task_queue="c", workers=1, tasks=list(cpu_tasks)),
        gpu=PlaneCapabilities(
            task_queue="g", workers=1, tasks=list(names.GPU_TASKS), variants=list(variants), training_presets=["tiny"]
        )
        if gpu
        else None,
        constraints=Constraints(max_duration_seconds=60, resolutions=["480p", "720p"]),
    )


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


def test_compiled_graph_snapshot(snapshot: object) -> None:
    spec = plan(train(), caps())
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


def test_training_preset_must_be_advertised() -> None:
    assert plan(train(training_preset="tiny"), caps()).node("train_lora").params["preset"] == "tiny"
    with pytest.raises(PlanningError, match="'huge' is not advertised") as err:
        plan(train(training_preset="huge"), caps())
    assert err.value.loc == ("body", "trainingPreset")
