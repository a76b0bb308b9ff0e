"""The compiled form of a graph: what a run walks.

``build()`` turns each graph of a tree into one immutable :class:`GraphPlan`
(see :mod:`hush.core.compiler`); runs share plans and keep their own state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hush.core.nodes.base import BaseNode
    from hush.core.nodes.graph.graph_node import GraphNode

CONST, FROM_PARENT, FROM_NODE, NESTED = range(4)
"""Binding kinds: a literal, a key of the graph state, a sibling's output, a literal holding refs."""

READ_CONST, READ_PARENT, READ_NODE, READ_OTHER = range(4)
"""How the scheduler reads an input (see :data:`Read`)."""


@dataclass(frozen=True, slots=True)
class Binding:
    """Where one input's value comes from at run time."""

    name: str
    kind: int
    value: Any
    key: Any = None
    subpath: tuple[Any, ...] = ()
    source: str = ""


Read = tuple[str, int, Any, Any, Binding]
"""One input as the scheduler reads it, decided at compile time: ``(name, how, source, key,
binding)``: ``READ_NODE`` reads output ``key`` of sibling ``source``, ``READ_PARENT`` state
key ``key``, ``READ_CONST`` is the literal ``source``; ``READ_OTHER`` (indexing, refs in a
literal) and every read that fails go through the binding."""


def read_of(b: Binding) -> Read:
    """How the scheduler reads binding ``b``."""
    if b.kind == CONST:
        return (b.name, READ_CONST, b.value, None, b)
    if b.subpath:
        return (b.name, READ_OTHER, None, None, b)
    if b.kind == FROM_NODE:
        return (b.name, READ_NODE, b.value, b.key, b)
    if b.kind == FROM_PARENT:
        return (b.name, READ_PARENT, None, b.key, b)
    return (b.name, READ_OTHER, None, None, b)


@dataclass(frozen=True, slots=True)
class NodePlan:
    """One node of a compiled graph."""

    node: BaseNode
    index: int
    name: str
    path: str
    """The node's path when its graph runs outside any map item (``graph/sub/node``)."""
    bindings: tuple[Binding, ...]
    successors: tuple[tuple[int, bool], ...]
    hard_preds: int
    soft_preds: int
    handles: frozenset[int]
    """Predecessors whose ``error`` this node reads (it is their error handler)."""
    outputs: tuple[tuple[str, str], ...]
    """``(output key, PARENT key)`` writes; ``("*", "*")`` writes every key."""
    demanded: frozenset[str]
    """Output keys that siblings read or that are written to ``PARENT``."""
    route_targets: frozenset[int] | None
    is_leaf: bool
    error_handled: bool
    plain: Callable[..., Awaitable[Any]] | None
    """For an async ``CodeNode`` without retry or timeout, its function: the fast path."""
    expected: frozenset[str] = frozenset()
    """For a node writing ``"*"`` to ``PARENT``: keys read after it that no node writes by
    name (an iteration node returns them, as lists, even when no item ran)."""
    reads: tuple[Read, ...] = ()
    """The bindings as the scheduler reads them (one :data:`Read` each, in order)."""


@dataclass(frozen=True, slots=True)
class GraphPlan:
    """A compiled graph: nodes, start set and counters to copy per execution."""

    graph: GraphNode
    path: str
    nodes: tuple[NodePlan, ...]
    initial: tuple[int, ...]
    hard_counts: tuple[int, ...]
    soft_counts: tuple[int, ...]
    linear: bool
    """One start node and no fan-out or fan-in: runs in one task."""
    reads_parent: frozenset[str]
    writes_parent: frozenset[str]
    writes_all: bool
    """Some node writes ``outputs={"*": PARENT}``: the keys are known only at run time."""
    required_inputs: frozenset[str]
    one_plain: bool = False
    """A single node that takes the scheduler's fast path where it may (``NodePlan.plain``): a
    map item of it saves nothing under the item's name while it runs (``Frame.fast``)."""


def node_sources(b: Binding) -> list[Binding]:
    """The sibling outputs a binding reads."""
    if b.kind == FROM_NODE:
        return [b]
    if b.kind == NESTED:
        return [x for x in _flatten(b.value) if x.kind == FROM_NODE]
    return []


def parent_keys(b: Binding) -> list[str]:
    """The graph-state keys a binding reads."""
    if b.kind == FROM_PARENT:
        return [b.key]
    if b.kind == NESTED:
        return [x.key for x in _flatten(b.value) if x.kind == FROM_PARENT]
    return []


def _flatten(value: Any) -> list[Binding]:
    if isinstance(value, Binding):
        return [value]
    if isinstance(value, Mapping):
        return [x for v in value.values() for x in _flatten(v)]
    if isinstance(value, list | tuple):
        return [x for v in value for x in _flatten(v)]
    return []
