"""Compile a graph spec into a LangGraph `StateGraph` whose nodes are supplied by the caller.

The workflow runs a shared graph (`shared_graph`) whose nodes call back into the run that invokes
it; tests and the benchmark supply plain coroutines to `compile_graph`, so the same graph runs with
or without Temporal.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from typing_extensions import TypedDict

from schemas.plan import GraphSpec, PlanNode
from schemas.tasks import Asset

NodeFn = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
NodeRunner = Callable[[str], Awaitable[dict[str, Any]]]  # node id → its state update
RUN_NODE = "run_node"  # the `configurable` key under which `shared_graph`'s caller passes its `NodeRunner`
Shape = tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]]  # graph id, node ids, edges
MAX_SHARED_GRAPHS = 64  # the planner emits a handful of shapes
_SHARED: dict[Shape, CompiledStateGraph[Any, Any, Any, Any]] = {}


def _merge_outputs(left: dict[str, list[Asset]], right: dict[str, list[Asset]]) -> dict[str, list[Asset]]:
    return {**left, **right}


class PipelineState(TypedDict, total=False):
    """What nodes read and write; each task's result lands under its registry `state_key`."""

    script: Any
    profile: Any
    lora: Any
    voice: Any
    pipeline: Any
    render: Any
    artifacts: Any
    outputs: Annotated[dict[str, list[Asset]], _merge_outputs]


def compile_graph(spec: GraphSpec, node_fn: Callable[[PlanNode], NodeFn]) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Build and compile the `StateGraph` for `spec`.

    A node with several parents waits for all of them (a LangGraph join); nodes whose
    parents finish together run concurrently in the same step.
    """
    builder = StateGraph(PipelineState)
    for node in spec.nodes:
        builder.add_node(node.id, node_fn(node))  # type: ignore[call-overload]
    for node in spec.nodes:
        parents = spec.parents(node.id)
        if not parents:
            builder.add_edge(START, node.id)
        elif len(parents) == 1:
            builder.add_edge(parents[0], node.id)
        else:
            builder.add_edge(parents, node.id)
        if not any(e.from_ == node.id for e in spec.edges):
            builder.add_edge(node.id, END)
    return builder.compile(name=spec.graph_id)


def shared_graph(spec: GraphSpec) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The compiled graph of `spec`'s shape, built once per process and shared by every run of it.

    Compiling costs a few milliseconds of CPU per job, more than running the graph. A node of the
    shared graph knows only its id; the run invoking it passes `{"configurable": {RUN_NODE: runner}}`
    and the node awaits `runner(node_id)`. Compiled graphs keep no state between invocations.
    """
    shape = _shape(spec)
    graph = _SHARED.get(shape)
    if graph is None:  # two runs racing here compile twice; either graph serves
        if len(_SHARED) >= MAX_SHARED_GRAPHS:
            _SHARED.clear()
        graph = _SHARED.setdefault(shape, compile_graph(spec, _calling_back))
    return graph


def _shape(spec: GraphSpec) -> Shape:
    return spec.graph_id, tuple(n.id for n in spec.nodes), tuple((e.from_, e.to) for e in spec.edges)


def _calling_back(node: PlanNode) -> NodeFn:
    node_id = node.id

    async def call_back(_state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        runner: NodeRunner = config["configurable"][RUN_NODE]
        return await runner(node_id)

    return call_back  # type: ignore[return-value]  # LangGraph passes `config` to nodes that declare it
