"""``GraphNode``: a graph of nodes, usable as the root or as a node of another graph."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from hush.core.building import pop_graph, push_graph
from hush.core.errors import GraphBuildError, GraphDefinitionError, NodeFailedError
from hush.core.nodes.base import BaseNode, Terminal
from hush.core.policies import RetryPolicy

if TYPE_CHECKING:
    from hush.core.call import NodeCall
    from hush.core.plan import GraphPlan


class GraphNode(BaseNode):
    """A graph: ``with GraphNode(name="g") as g:`` collects the nodes created inside.

    Used inside another graph it is one node: its ``inputs`` become the inner
    ``PARENT`` state and what inner nodes write to ``PARENT`` become its outputs.
    """

    kind = "graph"
    trace_kind = "graph"
    is_leaf = False

    def __init__(
        self,
        name: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        outputs: Mapping[str, Any] | None = None,
        retry: int | RetryPolicy | dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        self.nodes: dict[str, BaseNode] = {}
        self.edges: list[tuple[BaseNode | Terminal, BaseNode | Terminal, bool]] = []
        self.definition_problems: list[str] = []
        self.plan: GraphPlan | None = None
        super().__init__(name, inputs=inputs, outputs=outputs, retry=retry, timeout=timeout)

    def requires_parent(self) -> bool:
        """A graph may be the root."""
        return False

    def __enter__(self) -> GraphNode:
        push_graph(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pop_graph(self)

    def _check_open(self) -> None:
        if self.plan is not None:
            raise GraphDefinitionError(f"graph '{self.path}' is already built; it cannot change")

    def add_node(self, node: BaseNode) -> None:
        """Register a node created inside this graph's ``with`` block."""
        self._check_open()
        if node.name in self.nodes:
            self.definition_problems.append(
                f"{self.path}/{node.name}: duplicate node name '{node.name}' in graph '{self.path}'"
            )
            return
        self.nodes[node.name] = node

    def add_edge(self, src: BaseNode | Terminal, dst: BaseNode | Terminal, soft: bool) -> None:
        """Register ``src >> dst`` (``soft`` for ``src >> ~dst``)."""
        self._check_open()
        self.edges.append((src, dst, soft))

    @property
    def is_built(self) -> bool:
        """True once :meth:`build` succeeded."""
        return self.plan is not None

    def build(self) -> GraphNode:
        """Validate the whole tree and compile it; raises one error listing every problem."""
        if self.plan is not None:
            return self
        from hush.core.compiler import compile_tree

        plans, problems = compile_tree(self)
        if problems:
            raise GraphBuildError(self.path, problems)
        for graph, plan in plans:
            graph.plan = plan
        return self

    def body_keys(self) -> set[str]:
        """Keys of ``PARENT`` that inner nodes can read: this node's inputs."""
        return set(self.inputs)

    def body_writes(self) -> frozenset[str] | None:
        """Keys the inner nodes write to ``PARENT``; ``None`` if one writes every key it returns."""
        keys: set[str] = set()
        for node in self.nodes.values():
            for _src, dst in node.output_map:
                if dst == "*":
                    return None
                keys.add(dst)
        return frozenset(keys)

    def output_keys(self) -> frozenset[str] | None:
        """What the inner nodes write to ``PARENT``, and ``error``."""
        writes = self.body_writes()
        return None if writes is None else writes | {"error"}

    def describe_outputs(self) -> str:
        """For build errors: what the body writes."""
        keys = sorted((self.output_keys() or set()) - {"error"})
        have = ", ".join(keys) if keys else "nothing"
        return f"no node inside '{self.name}' writes that key to PARENT (they write: {have})"

    def to_mermaid(self) -> str:
        """The graph as a Mermaid flowchart (nested graphs as subgraphs)."""
        from hush.core.mermaid import to_mermaid

        return to_mermaid(self)

    async def run(self, inputs: dict[str, Any], call: NodeCall) -> Mapping[str, Any] | None:
        """Run the inner graph with ``inputs`` as its state."""
        assert self.plan is not None
        outcome = await call.run_graph(self.plan, dict(inputs))
        if outcome.error is not None:
            raise NodeFailedError(outcome.error)
        return outcome.written
