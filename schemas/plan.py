"""The planner's output as data: the graph spec of seed §2 (planes `cpu`/`gpu`)."""

from typing import Any, Literal

from pydantic import Field

from schemas.base import Contract

Plane = Literal["cpu", "gpu"]
GraphId = Literal["generate_v1", "train_and_generate_v1", "train_v1"]


class PlanNode(Contract):
    """One graph node: which task runs, on which plane, with which parameters."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    task: str
    plane: Plane
    params: dict[str, Any] = Field(default_factory=dict)


class PlanEdge(Contract):
    """A dependency: `to` starts only after `from` completed."""

    from_: str = Field(alias="from")
    to: str

    model_config = Contract.model_config | {"validate_by_name": True, "serialize_by_alias": True}


class GraphSpec(Contract):
    """A whole pipeline graph; `graph_id` is the seed's `workflow_id`."""

    graph_id: str
    nodes: list[PlanNode]
    edges: list[PlanEdge] = Field(default_factory=list)

    def node(self, node_id: str) -> PlanNode:
        """Return the node named `node_id`."""
        return next(n for n in self.nodes if n.id == node_id)

    def parents(self, node_id: str) -> list[str]:
        """Ids of the nodes `node_id` waits for."""
        return [e.from_ for e in self.edges if e.to == node_id]

    def topological_order(self) -> list[str]:
        """Node ids in a stable topological order (Kahn, ties by declaration order)."""
        indegree = {n.id: 0 for n in self.nodes}
        for e in self.edges:
            indegree[e.to] += 1
        ready = [n.id for n in self.nodes if indegree[n.id] == 0]
        order: list[str] = []
        while ready:
            current = ready.pop(0)
            order.append(current)
            for e in self.edges:
                if e.from_ == current:
                    indegree[e.to] -= 1
                    if indegree[e.to] == 0:
                        ready.append(e.to)
        return order
