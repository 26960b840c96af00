"""Compile a graph spec into a LangGraph `StateGraph` whose nodes are supplied by the caller.

The workflow supplies node functions that execute Temporal activities; tests and the
benchmark supply plain coroutines, so the same compiled graph runs with or without Temporal.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from typing_extensions import TypedDict

from schemas.plan import GraphSpec, PlanNode
from schemas.tasks import Asset

NodeFn = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


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
