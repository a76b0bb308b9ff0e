"""Compile a graph tree into immutable plans, validating it on the way.

A plan holds, per node, its resolved input bindings, predecessor counts (hard
and soft), successors and output writes, so a run only walks arrays.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hush.core.nodes.base import END, START, BaseNode, Terminal, find_refs
from hush.core.nodes.graph.graph_node import GraphNode
from hush.core.refs import PARENT, Each, Ref

CONST, FROM_PARENT, FROM_NODE, NESTED = range(4)


@dataclass(frozen=True, slots=True)
class Binding:
    """Where one input's value comes from at run time."""

    name: str
    kind: int
    value: Any
    key: Any = None
    subpath: tuple[Any, ...] = ()
    source: str = ""


@dataclass(frozen=True, slots=True)
class NodePlan:
    """One node of a compiled graph."""

    node: BaseNode
    index: int
    name: str
    bindings: tuple[Binding, ...]
    successors: tuple[tuple[int, bool], ...]
    hard_preds: int
    soft_preds: int
    handles: frozenset[int]
    outputs: tuple[tuple[str, str], ...]
    route_targets: frozenset[int] | None
    is_leaf: bool
    error_handled: bool


@dataclass(frozen=True, slots=True)
class GraphPlan:
    """A compiled graph: nodes, start set and counters to copy per execution."""

    graph: GraphNode
    nodes: tuple[NodePlan, ...]
    initial: tuple[int, ...]
    hard_counts: tuple[int, ...]
    soft_counts: tuple[int, ...]
    linear: bool
    reads_parent: frozenset[str]
    writes_parent: frozenset[str]
    writes_all: bool
    required_inputs: frozenset[str]

    @property
    def path(self) -> str:
        """The graph's path."""
        return self.graph.path


def compile_tree(root: GraphNode) -> tuple[list[tuple[GraphNode, GraphPlan]], list[str]]:
    """Compile ``root`` and every graph inside it; return plans and all problems."""
    plans: list[tuple[GraphNode, GraphPlan]] = []
    problems: list[str] = []
    _compile(root, plans, problems, available=None)
    return plans, problems


def _node_label(node: BaseNode | Terminal) -> str:
    return node.name


def _compile(
    graph: GraphNode,
    plans: list[tuple[GraphNode, GraphPlan]],
    problems: list[str],
    available: set[str] | None,
) -> None:
    gpath = graph.path
    problems.extend(graph.definition_problems)
    nodes = list(graph.nodes.values())
    index = {id(n): i for i, n in enumerate(nodes)}
    if not nodes:
        problems.append(f"{gpath}: graph has no nodes")

    succ: list[list[tuple[int, bool]]] = [[] for _ in nodes]
    preds: list[list[tuple[int, bool]]] = [[] for _ in nodes]
    starts: set[int] = set()
    ends: set[int] = set()
    seen_edges: set[tuple[int, int]] = set()
    for src, dst, soft in graph.edges:
        if src is END:
            problems.append(f"{gpath}: END cannot be the source of an edge (END >> {dst!r})")
            continue
        if dst is START:
            problems.append(f"{gpath}: START cannot be the target of an edge ({src!r} >> START)")
            continue
        if isinstance(src, BaseNode) and id(src) not in index:
            problems.append(f"{gpath}: edge from '{src.name}', which is not a node of this graph")
            continue
        if isinstance(dst, BaseNode) and id(dst) not in index:
            problems.append(f"{gpath}: edge to '{dst.name}', which is not a node of this graph")
            continue
        if src is START and dst is END:
            continue
        if src is START:
            starts.add(index[id(dst)])
        elif dst is END:
            ends.add(index[id(src)])
        else:
            s, d = index[id(src)], index[id(dst)]
            if (s, d) in seen_edges:
                continue
            seen_edges.add((s, d))
            succ[s].append((d, soft))
            preds[d].append((s, soft))

    bindings, handles = _compile_bindings(graph, nodes, index, problems, available)

    for n in nodes:
        for p in n.check():
            problems.append(f"{n.path}: {p}")

    cyclic = _cycle_nodes(nodes, succ)
    if cyclic:
        names = ", ".join(nodes[i].name for i in sorted(cyclic))
        problems.append(f"{gpath}: cycle among nodes {names}")

    reach = _walk(starts, succ)
    for i, n in enumerate(nodes):
        if i not in reach:
            problems.append(f"{n.path}: not reachable from START (add START >> ... >> {n.name})")
    rpreds = [[(p, s) for p, s in pl] for pl in preds]
    to_end = _walk(ends, rpreds)
    for i, n in enumerate(nodes):
        if i not in to_end:
            problems.append(f"{n.path}: never reaches END (add {n.name} >> ... >> END)")

    for j, n in enumerate(nodes):
        direct = {s for s, soft in preds[j] if not soft}
        for i in sorted(handles[j] - direct):
            problems.append(
                f"{n.path}: reads {nodes[i].name}['error'] but an error handler must be a direct "
                f"successor of the node it handles (add {nodes[i].name} >> {n.name})"
            )
        handles[j] &= direct

    ancestors: list[set[int]] = [set() for _ in nodes]
    if not cyclic:
        ancestors = _ancestors(len(nodes), preds)
        for i, n in enumerate(nodes):
            for b in bindings[i]:
                _check_upstream(b, i, n, nodes, ancestors, problems)

    for i, n in enumerate(nodes):
        routes = n.routes()
        if routes is None:
            continue
        hard_succ = {nodes[j].name for j, soft in succ[i] if not soft}
        for target in sorted(routes):
            if target not in graph.nodes:
                problems.append(f"{n.path}: routes to '{target}', which is not a node of '{gpath}'")
            elif target not in hard_succ:
                problems.append(
                    f"{n.path}: routes to '{target}' but has no edge to it (add {n.name} >> {target})"
                )

    reads: set[str] = set()
    writes: set[str] = set()
    star_writers: set[int] = set()
    for i, n in enumerate(nodes):
        for b in bindings[i]:
            reads.update(_parent_keys(b))
        for out_key, parent_key in n.output_map:
            if out_key == "*" and parent_key == "*":
                star_writers.add(i)
            else:
                writes.add(parent_key)
    required: set[str] = set()
    for i, n in enumerate(nodes):
        if star_writers & ancestors[i]:
            continue
        for b in bindings[i]:
            for key in _parent_keys(b):
                if key in writes:
                    continue
                required.add(key)
                if available is not None and key not in available:
                    known = ", ".join(sorted(available)) or "none"
                    problems.append(
                        f"{n.path}: input '{b.name}' reads PARENT['{key}'] but graph "
                        f"'{gpath}' has no input '{key}' (its inputs: {known})"
                    )

    for n in nodes:
        if isinstance(n, GraphNode):
            _compile(n, plans, problems, available=n.body_keys())

    handled = [False] * len(nodes)
    for j in range(len(nodes)):
        for i in handles[j]:
            handled[i] = True
    node_plans = tuple(
        NodePlan(
            node=n,
            index=i,
            name=n.name,
            bindings=tuple(bindings[i]),
            successors=tuple(succ[i]),
            hard_preds=sum(1 for _, s in preds[i] if not s),
            soft_preds=sum(1 for _, s in preds[i] if s),
            handles=frozenset(handles[i]),
            outputs=tuple(n.output_map),
            route_targets=_route_indices(n, graph),
            is_leaf=n.is_leaf,
            error_handled=handled[i],
        )
        for i, n in enumerate(nodes)
    )
    initial = tuple(sorted(i for i in starts if not preds[i]))
    linear = (
        len(initial) == 1 and all(len(s) <= 1 for s in succ) and all(len(p) <= 1 for p in preds)
    )
    plans.append(
        (
            graph,
            GraphPlan(
                graph=graph,
                nodes=node_plans,
                initial=initial,
                hard_counts=tuple(p.hard_preds for p in node_plans),
                soft_counts=tuple(p.soft_preds for p in node_plans),
                linear=linear,
                reads_parent=frozenset(reads),
                writes_parent=frozenset(writes),
                writes_all=bool(star_writers),
                required_inputs=frozenset(required),
            ),
        )
    )


def _route_indices(node: BaseNode, graph: GraphNode) -> frozenset[int] | None:
    """Indices of the successors a branch chooses among (other successors always run)."""
    routes = node.routes()
    if routes is None:
        return None
    names = list(graph.nodes)
    return frozenset(names.index(r) for r in routes if r in graph.nodes)


def _compile_bindings(
    graph: GraphNode,
    nodes: list[BaseNode],
    index: dict[int, int],
    problems: list[str],
    available: set[str] | None,
) -> tuple[list[list[Binding]], list[set[int]]]:
    all_bindings: list[list[Binding]] = []
    handles: list[set[int]] = []
    for n in nodes:
        node_bindings: list[Binding] = []
        node_handles: set[int] = set()
        allows_each = getattr(n, "allows_each", False)
        for name, value in n.inputs.items():
            if isinstance(value, Each):
                if not allows_each:
                    problems.append(
                        f"{n.path}: input '{name}' uses Each(...), which only iteration nodes "
                        "(MapNode, ForLoopNode) accept"
                    )
                    continue
                value = value.source
            if _contains_each(value):
                problems.append(f"{n.path}: input '{name}' has Each(...) nested inside a literal")
                continue
            binding = _bind(name, value, n, graph, index, problems)
            if binding is None:
                continue
            node_bindings.append(binding)
            for ref in find_refs(value):
                if (
                    isinstance(ref.source, BaseNode)
                    and ref.path[0] == "error"
                    and id(ref.source) in index
                ):
                    node_handles.add(index[id(ref.source)])
        all_bindings.append(node_bindings)
        handles.append(node_handles)
    return all_bindings, handles


def _contains_each(value: Any) -> bool:
    if isinstance(value, Each):
        return True
    if isinstance(value, Mapping):
        return any(_contains_each(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_contains_each(v) for v in value)
    return False


def _bind(
    name: str,
    value: Any,
    node: BaseNode,
    graph: GraphNode,
    index: dict[int, int],
    problems: list[str],
) -> Binding | None:
    if isinstance(value, Ref):
        if value.source is PARENT:
            return Binding(name, FROM_PARENT, None, value.path[0], value.path[1:], repr(value))
        src = value.source
        assert isinstance(src, BaseNode)
        if id(src) not in index:
            where = f"graph '{src.parent_path}'" if src.parent is not None else "no graph"
            problems.append(
                f"{node.path}: input '{name}' reads {value!r}, but '{src.name}' belongs to {where}, "
                f"not to '{graph.path}' (pass it in through the graph's inputs)"
            )
            return None
        return Binding(name, FROM_NODE, index[id(src)], value.path[0], value.path[1:], repr(value))
    refs = list(find_refs(value))
    if not refs:
        return Binding(name, CONST, value)
    for ref in refs:
        if isinstance(ref.source, BaseNode) and id(ref.source) not in index:
            problems.append(
                f"{node.path}: input '{name}' reads {ref!r}, but '{ref.source.name}' is not a node "
                f"of '{graph.path}'"
            )
            return None
    nested = _nest(value, index, name)
    return Binding(name, NESTED, nested, source="literal")


def _nest(value: Any, index: dict[int, int], name: str) -> Any:
    if isinstance(value, Ref):
        if value.source is PARENT:
            return Binding(name, FROM_PARENT, None, value.path[0], value.path[1:], repr(value))
        assert isinstance(value.source, BaseNode)
        return Binding(
            name, FROM_NODE, index[id(value.source)], value.path[0], value.path[1:], repr(value)
        )
    if isinstance(value, Mapping):
        return {k: _nest(v, index, name) for k, v in value.items()}
    if isinstance(value, list):
        return [_nest(v, index, name) for v in value]
    if isinstance(value, tuple):
        return tuple(_nest(v, index, name) for v in value)
    return Binding(name, CONST, value)


def _node_sources(b: Binding) -> list[Binding]:
    if b.kind == FROM_NODE:
        return [b]
    if b.kind == NESTED:
        return [x for x in _flatten(b.value) if x.kind == FROM_NODE]
    return []


def _parent_keys(b: Binding) -> list[str]:
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


def _check_upstream(
    b: Binding,
    i: int,
    n: BaseNode,
    nodes: list[BaseNode],
    ancestors: list[set[int]],
    problems: list[str],
) -> None:
    for src in _node_sources(b):
        j = src.value
        if j == i:
            problems.append(
                f"{n.path}: input '{b.name or src.source}' reads its own output {src.source}"
            )
        elif j not in ancestors[i]:
            other = nodes[j].name
            problems.append(
                f"{n.path}: input '{b.name}' reads {src.source} but '{other}' is not upstream of "
                f"'{n.name}' (add {other} >> {n.name})"
            )


def _cycle_nodes(nodes: list[BaseNode], succ: list[list[tuple[int, bool]]]) -> set[int]:
    indeg = [0] * len(nodes)
    for edges in succ:
        for d, _ in edges:
            indeg[d] += 1
    queue = deque(i for i, d in enumerate(indeg) if d == 0)
    done = 0
    while queue:
        i = queue.popleft()
        done += 1
        for d, _ in succ[i]:
            indeg[d] -= 1
            if indeg[d] == 0:
                queue.append(d)
    return {i for i, d in enumerate(indeg) if d > 0}


def _walk(seeds: set[int], edges: list[list[tuple[int, bool]]]) -> set[int]:
    seen = set(seeds)
    stack = list(seeds)
    while stack:
        i = stack.pop()
        for j, _ in edges[i]:
            if j not in seen:
                seen.add(j)
                stack.append(j)
    return seen


def _ancestors(count: int, preds: list[list[tuple[int, bool]]]) -> list[set[int]]:
    order: list[int] = []
    indeg = [len(p) for p in preds]
    succ: list[list[int]] = [[] for _ in range(count)]
    for d, pl in enumerate(preds):
        for s, _ in pl:
            succ[s].append(d)
    queue = deque(i for i in range(count) if indeg[i] == 0)
    while queue:
        i = queue.popleft()
        order.append(i)
        for d in succ[i]:
            indeg[d] -= 1
            if indeg[d] == 0:
                queue.append(d)
    anc: list[set[int]] = [set() for _ in range(count)]
    for i in order:
        for s, _ in preds[i]:
            anc[i].add(s)
            anc[i] |= anc[s]
    return anc
