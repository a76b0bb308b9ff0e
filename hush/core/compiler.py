"""Compile a graph tree into plans, validating it on the way.

Every check here is linear in the size of a graph, except the reachability
questions, which :mod:`hush.core.wiring` answers with bounded walks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hush.core.nodes.base import END, START, BaseNode, find_refs
from hush.core.nodes.graph.graph_node import GraphNode
from hush.core.plan import (
    CONST,
    FROM_NODE,
    FROM_PARENT,
    NESTED,
    Binding,
    GraphPlan,
    NodePlan,
    node_sources,
    parent_keys,
    read_of,
)
from hush.core.refs import PARENT, Each, Ref
from hush.core.wiring import Wiring

Edges = list[list[tuple[int, bool]]]


def compile_tree(root: GraphNode) -> tuple[list[tuple[GraphNode, GraphPlan]], list[str]]:
    """Compile ``root`` and every graph inside it; return plans and all problems."""
    plans: list[tuple[GraphNode, GraphPlan]] = []
    problems: list[str] = []
    if root.parent is None and root.retry is not None:
        problems.append(
            f"{root.path}: retry= on the root graph cannot be applied (a run is attempted "
            "once); put its nodes in a nested GraphNode with the retry"
        )
    stack: list[tuple[GraphNode, set[str] | None, frozenset[str]]] = [(root, None, frozenset())]
    while stack:
        graph, available, wanted = stack.pop()
        plan = _compile(graph, problems, available, wanted)
        plans.append((graph, plan))
        stack.extend(
            (np.node, np.node.body_keys(), np.demanded)
            for np in plan.nodes
            if isinstance(np.node, GraphNode)
        )
    return plans, problems


def _compile(
    graph: GraphNode,
    problems: list[str],
    available: set[str] | None,
    wanted: frozenset[str] = frozenset(),
) -> GraphPlan:
    """``wanted``: the keys read from this graph's outputs by the graph around it."""
    gpath = graph.path
    problems.extend(graph.definition_problems)
    nodes = list(graph.nodes.values())
    index = {id(n): i for i, n in enumerate(nodes)}
    if not nodes:
        problems.append(f"{gpath}: graph has no nodes")
    succ, preds, starts, ends = _edges(graph, index, len(nodes), problems)
    bindings, handles = _bindings(graph, nodes, index, problems)
    for n in nodes:
        problems.extend(f"{n.path}: {p}" for p in n.check())

    wiring = Wiring(nodes, succ, preds)
    if wiring.cyclic:
        names = ", ".join(nodes[i].name for i in sorted(wiring.cyclic))
        problems.append(f"{gpath}: cycle among nodes {names}")
    reach = wiring.walk(starts, succ)
    problems.extend(
        f"{n.path}: not reachable from START (add START >> ... >> {n.name})"
        for i, n in enumerate(nodes)
        if i not in reach
    )
    to_end = wiring.walk(ends, preds)
    problems.extend(
        f"{n.path}: never reaches END (add {n.name} >> ... >> END)"
        for i, n in enumerate(nodes)
        if i not in to_end
    )
    _check_handlers(nodes, preds, handles, problems)
    routes = [_route_indices(n, graph) for n in nodes]
    _check_routes(graph, nodes, succ, problems)
    _check_output_keys(nodes, bindings, problems)
    if not wiring.cyclic:
        wiring.check_reads(bindings, problems)
        wiring.check_writers(routes, problems)

    reads = {key for bs in bindings for b in bs for key in parent_keys(b)}
    writes = {dst for n in nodes for src, dst in n.output_map if dst != "*"}
    star_writers = [i for i, n in enumerate(nodes) if ("*", "*") in n.output_map]
    exempt = wiring.descendants(star_writers) if star_writers and not wiring.cyclic else set()
    required: set[str] = set()
    for i, n in enumerate(nodes):
        if i in exempt:
            continue
        for b in bindings[i]:
            for key in parent_keys(b):
                if key in writes:
                    continue
                required.add(key)
                if available is not None and key not in available:
                    known = ", ".join(sorted(available)) or "none"
                    problems.append(
                        f"{n.path}: input '{b.name}' reads PARENT['{key}'] but graph "
                        f"'{gpath}' has no input '{key}' (its inputs: {known})"
                    )

    demanded: list[set[str]] = [{src for src, _ in n.output_map if src != "*"} for n in nodes]
    for bs in bindings:
        for b in bs:
            for src in node_sources(b):
                demanded[src.value].add(src.key)
    expected = _expected(nodes, bindings, star_writers, writes, wanted, wiring)
    handled = [False] * len(nodes)
    for hs in handles:
        for i in hs:
            handled[i] = True
    node_plans = tuple(
        NodePlan(
            node=n,
            index=i,
            name=n.name,
            path=n.path,
            bindings=tuple(bindings[i]),
            successors=tuple(succ[i]),
            hard_preds=sum(1 for _, s in preds[i] if not s),
            soft_preds=sum(1 for _, s in preds[i] if s),
            handles=frozenset(handles[i]),
            outputs=tuple(n.output_map),
            demanded=frozenset(demanded[i]),
            route_targets=routes[i],
            is_leaf=n.is_leaf,
            error_handled=handled[i],
            plain=n.plain_call(),
            expected=expected.get(i, frozenset()),
            reads=tuple(read_of(b) for b in bindings[i]),
        )
        for i, n in enumerate(nodes)
    )
    initial = tuple(sorted(i for i in starts if not preds[i]))
    linear = (
        len(initial) == 1 and all(len(s) <= 1 for s in succ) and all(len(p) <= 1 for p in preds)
    )
    return GraphPlan(
        graph=graph,
        path=gpath,
        nodes=node_plans,
        initial=initial,
        hard_counts=tuple(p.hard_preds for p in node_plans),
        soft_counts=tuple(p.soft_preds for p in node_plans),
        linear=linear,
        reads_parent=frozenset(reads),
        writes_parent=frozenset(writes),
        writes_all=bool(star_writers),
        required_inputs=frozenset(required),
        one_plain=len(node_plans) == 1 and node_plans[0].plain is not None,
    )


def _expected(
    nodes: list[BaseNode],
    bindings: list[list[Binding]],
    star_writers: list[int],
    writes: set[str],
    wanted: frozenset[str],
    wiring: Wiring,
) -> dict[int, frozenset[str]]:
    """For each node writing ``"*"`` to ``PARENT``: the keys that nodes after it (or the
    graph around this one) read and that no node writes by name."""
    out: dict[int, frozenset[str]] = {}
    if wiring.cyclic:
        return out
    for i in star_writers:
        keys = set(wanted)
        for j in wiring.descendants([i]):
            for b in bindings[j]:
                keys.update(parent_keys(b))
        keys -= writes
        if keys:
            out[i] = frozenset(keys)
    return out


def _edges(
    graph: GraphNode, index: dict[int, int], count: int, problems: list[str]
) -> tuple[Edges, Edges, set[int], set[int]]:
    gpath = graph.path
    succ: Edges = [[] for _ in range(count)]
    preds: Edges = [[] for _ in range(count)]
    starts: set[int] = set()
    ends: set[int] = set()
    seen: set[tuple[int, int]] = set()
    for src, dst, soft in graph.edges:
        if src is END:
            problems.append(f"{gpath}: END cannot be the source of an edge (END >> {dst!r})")
        elif dst is START:
            problems.append(f"{gpath}: START cannot be the target of an edge ({src!r} >> START)")
        elif isinstance(src, BaseNode) and id(src) not in index:
            problems.append(f"{gpath}: edge from '{src.name}', which is not a node of this graph")
        elif isinstance(dst, BaseNode) and id(dst) not in index:
            problems.append(f"{gpath}: edge to '{dst.name}', which is not a node of this graph")
        elif src is START and dst is END:
            continue
        elif src is START:
            starts.add(index[id(dst)])
        elif dst is END:
            ends.add(index[id(src)])
        else:
            s, d = index[id(src)], index[id(dst)]
            if (s, d) not in seen:
                seen.add((s, d))
                succ[s].append((d, soft))
                preds[d].append((s, soft))
    return succ, preds, starts, ends


def _check_handlers(
    nodes: list[BaseNode], preds: Edges, handles: list[set[int]], problems: list[str]
) -> None:
    for j, n in enumerate(nodes):
        direct = {s for s, soft in preds[j] if not soft}
        for i in sorted(handles[j] - direct):
            problems.append(
                f"{n.path}: reads {nodes[i].name}['error'] but an error handler must be a direct "
                f"successor of the node it handles (add {nodes[i].name} >> {n.name})"
            )
        handles[j] &= direct


def _check_routes(
    graph: GraphNode, nodes: list[BaseNode], succ: Edges, problems: list[str]
) -> None:
    for i, n in enumerate(nodes):
        routes = n.routes()
        if routes is None:
            continue
        hard_succ = {nodes[j].name for j, soft in succ[i] if not soft}
        for target in sorted(routes):
            if target not in graph.nodes:
                problems.append(
                    f"{n.path}: routes to '{target}', which is not a node of '{graph.path}'"
                )
            elif target not in hard_succ:
                problems.append(
                    f"{n.path}: routes to '{target}' but has no edge to it (add {n.name} >> {target})"
                )


def _check_output_keys(
    nodes: list[BaseNode], bindings: list[list[Binding]], problems: list[str]
) -> None:
    """Reads of a sibling's output, and writes to PARENT, name keys the node can produce."""
    for n in nodes:
        keys = n.output_keys()
        if keys is None:
            continue
        for src, dst in n.output_map:
            if src != "*" and src not in keys:
                problems.append(
                    f"{n.path}: output '{src}' is written to PARENT['{dst}'] but {n.describe_outputs()}"
                )
    for i, bs in enumerate(bindings):
        for b in bs:
            for read in node_sources(b):
                other = nodes[read.value]
                keys = other.output_keys()
                if keys is not None and read.key not in keys:
                    problems.append(
                        f"{nodes[i].path}: input '{b.name}' reads {read.source} but "
                        f"{other.describe_outputs()}"
                    )


def _route_indices(node: BaseNode, graph: GraphNode) -> frozenset[int] | None:
    """Indices of the successors a branch chooses among (other successors always run)."""
    routes = node.routes()
    if routes is None:
        return None
    names = list(graph.nodes)
    return frozenset(names.index(r) for r in routes if r in graph.nodes)


def _bindings(
    graph: GraphNode, nodes: list[BaseNode], index: dict[int, int], problems: list[str]
) -> tuple[list[list[Binding]], list[set[int]]]:
    all_bindings: list[list[Binding]] = []
    handles: list[set[int]] = []
    for n in nodes:
        node_bindings: list[Binding] = []
        node_handles: set[int] = set()
        for name, value in n.inputs.items():
            if isinstance(value, Each):
                if not n.allows_each:
                    problems.append(
                        f"{n.path}: input '{name}' uses Each(...), which only iteration nodes "
                        "(MapNode, ForLoopNode) accept"
                    )
                    continue
                value = value.source
            trouble = _literal_problem(value)
            if trouble:
                problems.append(f"{n.path}: input '{name}' {trouble}")
                continue
            binding = _bind(name, value, n, graph, index, problems)
            if binding is None:
                continue
            node_bindings.append(binding)
            for ref in find_refs(value):
                if isinstance(ref.source, BaseNode) and ref.path[0] == "error":
                    node_handles.add(index[id(ref.source)])
        all_bindings.append(node_bindings)
        handles.append(node_handles)
    return all_bindings, handles


def _literal_problem(value: Any) -> str | None:
    """Values that cannot be an input: ``Each`` inside a literal, ``PARENT`` itself."""
    if value is PARENT:
        return "is PARENT itself; read one key of it, such as PARENT['key']"
    if isinstance(value, Each):
        return "has Each(...) nested inside a literal"
    if isinstance(value, Mapping):
        values: Any = value.values()
    elif isinstance(value, list | tuple):
        values = value
    else:
        return None
    for v in values:
        trouble = _literal_problem(v)
        if trouble:
            return "holds PARENT itself" if v is PARENT else trouble
    return None


def _bind(
    name: str,
    value: Any,
    node: BaseNode,
    graph: GraphNode,
    index: dict[int, int],
    problems: list[str],
) -> Binding | None:
    refs = list(find_refs(value))
    for ref in refs:
        src = ref.source
        if isinstance(src, BaseNode) and id(src) not in index:
            where = f"graph '{src.parent_path}'" if src.parent is not None else "no graph"
            problems.append(
                f"{node.path}: input '{name}' reads {ref!r}, but '{src.name}' belongs to {where}, "
                f"not to '{graph.path}' (pass it in through the graph's inputs)"
            )
            return None
    if isinstance(value, Ref):
        return _ref_binding(name, value, index)
    if not refs:
        return Binding(name, CONST, value)
    return Binding(name, NESTED, _nest(value, index, name), source="literal")


def _ref_binding(name: str, ref: Ref, index: dict[int, int]) -> Binding:
    if ref.source is PARENT:
        return Binding(name, FROM_PARENT, None, ref.path[0], ref.path[1:], repr(ref))
    return Binding(name, FROM_NODE, index[id(ref.source)], ref.path[0], ref.path[1:], repr(ref))


def _nest(value: Any, index: dict[int, int], name: str) -> Any:
    if isinstance(value, Ref):
        return _ref_binding(name, value, index)
    if isinstance(value, Mapping):
        return {k: _nest(v, index, name) for k, v in value.items()}
    if isinstance(value, list):
        return [_nest(v, index, name) for v in value]
    if isinstance(value, tuple):
        return tuple(_nest(v, index, name) for v in value)
    return Binding(name, CONST, value)
