"""The node base class, ``START``/``END``, and the ``>>`` edge operators."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from hush.core.building import current_graph
from hush.core.errors import GraphDefinitionError
from hush.core.policies import RetryPolicy, check_timeout
from hush.core.refs import PARENT, Each, Ref, is_parent_ref

if TYPE_CHECKING:
    from hush.core.call import NodeCall
    from hush.core.nodes.graph.graph_node import GraphNode

_NAME = re.compile(r"^[^/\[\]\s][^/\[\]]*$")


class Connectable:
    """The edge operators: ``a >> b``, ``[a, b] >> c`` and ``~a`` (a soft target)."""

    __slots__ = ()

    def __rshift__(self, other: Any) -> Any:
        return connect(self, other)

    def __rrshift__(self, other: Any) -> Any:
        return connect(other, self)

    def __invert__(self) -> Soft:
        assert isinstance(self, BaseNode | Terminal)
        return Soft(self)


class Terminal(Connectable):
    """``START`` or ``END`` of whichever graph the edge is drawn in."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


START = Terminal("START")
END = Terminal("END")


class Soft:
    """``~node``: an edge into it is soft (the target waits for any one that ran)."""

    __slots__ = ("node",)

    def __init__(self, node: BaseNode | Terminal) -> None:
        self.node = node

    def __rrshift__(self, other: Any) -> Any:
        return connect(other, self)

    def __rshift__(self, other: Any) -> Any:
        raise GraphDefinitionError(f"~{self.node!r} can only be the target of an edge")

    def __repr__(self) -> str:
        return f"~{self.node!r}"


class NodeGroup(list[Any]):
    """The list returned by ``a >> [b, c]`` so that chains can go on from it."""

    def __rshift__(self, other: Any) -> Any:
        return connect(self, other)

    def __rrshift__(self, other: Any) -> Any:
        return connect(other, self)


def _endpoints(side: Any, *, target: bool) -> list[tuple[BaseNode | Terminal, bool]]:
    items = list(side) if isinstance(side, list | tuple) else [side]
    out: list[tuple[BaseNode | Terminal, bool]] = []
    for item in items:
        if isinstance(item, Soft):
            if not target:
                raise GraphDefinitionError(f"{item!r} can only be the target of an edge")
            out.append((item.node, True))
        elif isinstance(item, BaseNode | Terminal):
            out.append((item, False))
        else:
            raise GraphDefinitionError(f"cannot draw an edge to or from {item!r}: not a node")
    return out


def connect(left: Any, right: Any) -> Any:
    """Add an edge from every node on the left to every node on the right."""
    sources = _endpoints(left, target=False)
    targets = _endpoints(right, target=True)
    for src, _ in sources:
        for dst, soft in targets:
            owner = _owner(src, dst)
            owner.add_edge(src, dst, soft)
    if isinstance(right, list | tuple):
        return NodeGroup(right)
    return right.node if isinstance(right, Soft) else right


def _owner(src: BaseNode | Terminal, dst: BaseNode | Terminal) -> GraphNode:
    graphs = {id(n.parent): n.parent for n in (src, dst) if isinstance(n, BaseNode)}
    if len(graphs) > 1:
        a, b = (n for n in (src, dst) if isinstance(n, BaseNode))
        raise GraphDefinitionError(
            f"edge {src!r} >> {dst!r} joins nodes of different graphs "
            f"('{a.parent_path}' and '{b.parent_path}'); pass values through graph inputs instead"
        )
    graph = next(iter(graphs.values()), None) or current_graph()
    if graph is None:
        raise GraphDefinitionError(f"edge {src!r} >> {dst!r} drawn outside any graph")
    return graph


class BaseNode(Connectable):
    """A unit of work in a graph, with inputs, outputs and run options.

    Subclasses implement :meth:`run`. Every node has an ``error`` output that is
    ``None`` when it succeeds.
    """

    kind: ClassVar[str] = "node"
    trace_kind: ClassVar[str] = "node"
    is_leaf: ClassVar[bool] = True
    """Leaves hold a run-wide slot (``run(max_concurrency=...)``) while they run; containers do not."""
    allows_each: ClassVar[bool] = False
    """Whether ``Each(...)`` inputs are accepted (iteration nodes)."""
    owns_policy: ClassVar[bool] = False
    """The node applies ``retry`` and ``timeout`` itself (read from its ``NodeCall``)."""

    def __init__(
        self,
        name: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        outputs: Mapping[str, Any] | None = None,
        retry: int | RetryPolicy | dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        cls = type(self).__name__
        if not isinstance(name, str) or not _NAME.match(name):
            raise GraphDefinitionError(
                f"{cls} name {name!r} is not valid: use a non-empty string without '/', '[' or ']'"
            )
        self.name = name
        if inputs is not None and not isinstance(inputs, Mapping):
            raise GraphDefinitionError(f"{cls} '{name}': inputs must be a dict, got {inputs!r}")
        self.inputs: dict[str, Any] = dict(inputs or {})
        for key in self.inputs:
            if not isinstance(key, str):
                raise GraphDefinitionError(f"{cls} '{name}': input names are strings, got {key!r}")
        self.output_map: list[tuple[str, str]] = []
        try:
            self.retry = RetryPolicy.coerce(retry)
        except (TypeError, ValueError) as exc:
            raise GraphDefinitionError(f"{cls} '{name}': bad retry: {exc}") from None
        try:
            self.timeout = check_timeout(timeout)
        except (TypeError, ValueError) as exc:
            raise GraphDefinitionError(f"{cls} '{name}': {exc}") from None
        self.parent: GraphNode | None = current_graph()
        if self.parent is None:
            if self.requires_parent():
                raise GraphDefinitionError(
                    f"{cls} '{name}' was created outside any graph: create it inside "
                    "`with GraphNode(name=...) as graph:`"
                )
        else:
            self.parent.add_node(self)
        for key, target in (outputs or {}).items():
            self.add_output(key, target)

    def requires_parent(self) -> bool:
        """Leaf nodes must live in a graph; graphs may be roots."""
        return True

    @property
    def parent_path(self) -> str:
        """Path of the graph this node belongs to."""
        return self.parent.path if self.parent is not None else ""

    @property
    def path(self) -> str:
        """Slash-separated path from the root graph, for messages and records."""
        return f"{self.parent.path}/{self.name}" if self.parent is not None else self.name

    def add_output(self, key: str, target: Any) -> None:
        """Write output ``key`` (``"*"`` for all) into the enclosing graph's state."""
        if target is PARENT:
            dst = key
        elif is_parent_ref(target) and len(target.path) == 1:
            dst = target.path[0]
        else:
            raise GraphDefinitionError(
                f"{type(self).__name__} '{self.name}': output {key!r} must go to PARENT or "
                f"PARENT['key'], got {target!r}"
            )
        self.output_map.append((key, dst))

    def __getitem__(self, key: str) -> Ref:
        return Ref(self, (key,))

    def __repr__(self) -> str:
        return self.name

    def check(self) -> list[str]:
        """Problems with this node's own configuration, found at build time."""
        return []

    def describe_options(self) -> dict[str, Any]:
        """Settings that change what the node does, for graph fingerprints."""
        return {}

    def output_keys(self) -> frozenset[str] | None:
        """The output keys this node can produce (``error`` included), or ``None`` if unknown."""
        return None

    def describe_outputs(self) -> str:
        """For build errors: what this node produces."""
        keys = self.output_keys()
        have = ", ".join(sorted(keys)) if keys else "nothing"
        return f"'{self.name}' produces no such key (it produces: {have})"

    def times_itself(self) -> bool:
        """Whether the node applies its ``timeout`` itself (read from its ``NodeCall``)."""
        return self.owns_policy

    def plain_call(self) -> Callable[..., Awaitable[Any]] | None:
        """An async function the scheduler may call directly with the inputs (see ``CodeNode``)."""
        return None

    def routes(self) -> set[str] | None:
        """Names of successors this node chooses among (a branch), else ``None``."""
        return None

    def select(self, outputs: Mapping[str, Any]) -> str | None:
        """The successor chosen from this node's outputs, for nodes with routes."""
        return None

    def iter_refs(self) -> Iterable[tuple[str, Ref]]:
        """Every reference in this node's inputs, with the input it belongs to."""
        for name, value in self.inputs.items():
            for ref in find_refs(value):
                yield name, ref

    async def run(self, inputs: dict[str, Any], call: NodeCall) -> Mapping[str, Any] | None:
        """Do the node's work and return its outputs."""
        raise NotImplementedError


def find_refs(value: Any) -> Iterable[Ref]:
    """References anywhere inside a literal (dicts, lists, tuples, ``Each``)."""
    if isinstance(value, Ref):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from find_refs(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from find_refs(v)
    elif isinstance(value, Each):
        yield from find_refs(value.source)
