"""Reachability checks of one graph, in linear memory.

Which node is upstream of which is asked for two checks: a node may only read
a sibling that is upstream of it, and two nodes that can run at the same time
must not write the same ``PARENT`` key. No ancestor set is kept per node
(quadratic memory on long chains). Instead:

* a read of a direct predecessor (the usual case) costs nothing;
* other reads are grouped by the node read, and one forward walk from it,
  stopped at the topological position of its last reader, answers them all;
* the writers of one key are sorted topologically; if each one reaches the
  next, they are all ordered. Only when that fails are pairs compared, which
  is also where two writers in different arms of a branch are told apart
  from two writers that really race.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from hush.core.plan import Binding, node_sources

if TYPE_CHECKING:
    from hush.core.nodes.base import BaseNode

Edges = list[list[tuple[int, bool]]]


class Wiring:
    """The edges of one graph and the questions asked of them."""

    def __init__(self, nodes: list[BaseNode], succ: Edges, preds: Edges) -> None:
        self.nodes = nodes
        self.succ = succ
        self.preds = preds
        self.order, self.cyclic = _topological(succ)
        self.position = [0] * len(nodes)
        for pos, i in enumerate(self.order):
            self.position[i] = pos

    @staticmethod
    def walk(seeds: Iterable[int], edges: Edges) -> set[int]:
        """Every node reached from ``seeds`` (included) along ``edges``."""
        seen = set(seeds)
        stack = list(seen)
        while stack:
            for j, _ in edges[stack.pop()]:
                if j not in seen:
                    seen.add(j)
                    stack.append(j)
        return seen

    def descendants(self, seeds: Iterable[int]) -> set[int]:
        """Nodes strictly downstream of any of ``seeds``."""
        first = {j for i in seeds for j, _ in self.succ[i]}
        return self.walk(first, self.succ)

    def reaches(self, src: int, targets: set[int]) -> set[int]:
        """Which of ``targets`` lie downstream of ``src``; the walk stops past the last one."""
        limit = max(self.position[t] for t in targets)
        found: set[int] = set()
        seen = {src}
        stack = [src]
        while stack:
            for j, _ in self.succ[stack.pop()]:
                if j in seen or self.position[j] > limit:
                    continue
                seen.add(j)
                if j in targets:
                    found.add(j)
                stack.append(j)
        return found

    def check_reads(self, bindings: list[list[Binding]], problems: list[str]) -> None:
        """A node reads only itself-free, upstream siblings."""
        far: dict[int, list[tuple[int, Binding, Binding]]] = {}
        for i, bs in enumerate(bindings):
            direct = {p for p, _ in self.preds[i]}
            for b in bs:
                for src in node_sources(b):
                    j = src.value
                    if j == i:
                        problems.append(
                            f"{self.nodes[i].path}: input '{b.name}' reads its own output {src.source}"
                        )
                    elif j not in direct:
                        far.setdefault(j, []).append((i, b, src))
        for j, readers in far.items():
            reached = self.reaches(j, {i for i, _, _ in readers})
            other = self.nodes[j].name
            for i, b, src in readers:
                if i not in reached:
                    n = self.nodes[i]
                    problems.append(
                        f"{n.path}: input '{b.name}' reads {src.source} but '{other}' is not "
                        f"upstream of '{n.name}' (add {other} >> {n.name})"
                    )

    def check_writers(self, routes: list[frozenset[int] | None], problems: list[str]) -> None:
        """Two nodes that can run at the same time never write the same ``PARENT`` key."""
        writers: dict[str, list[int]] = {}
        for i, n in enumerate(self.nodes):
            for key in dict.fromkeys(dst for _, dst in n.output_map if dst != "*"):
                writers.setdefault(key, []).append(i)
        for key, ws in writers.items():
            if len(ws) < 2:
                continue
            ws.sort(key=self.position.__getitem__)
            if all(b in self.reaches(a, {b}) for a, b in itertools.pairwise(ws)):
                continue
            self._check_pairs(key, ws, routes, problems)

    def _check_pairs(
        self, key: str, ws: list[int], routes: list[frozenset[int] | None], problems: list[str]
    ) -> None:
        arms = self._requirements(routes)
        for pos, a in enumerate(ws):
            later = set(ws[pos + 1 :])
            if not later:
                break
            ordered = self.reaches(a, later)
            for b in ws[pos + 1 :]:
                if b in ordered or _exclusive(arms[a], arms[b]):
                    continue
                na, nb = self.nodes[a], self.nodes[b]
                problems.append(
                    f"{nb.path}: writes PARENT['{key}'] like '{na.name}', and the two can run at "
                    f"the same time; order them ({na.name} >> {nb.name}), write different keys, "
                    "or put them in different arms of a branch"
                )

    def _requirements(self, routes: list[frozenset[int] | None]) -> list[dict[int, frozenset[int]]]:
        """Per node, per branch: the targets of that branch one of which must run for it to run.

        A node needs what every hard predecessor needs (a skip flows down hard edges)
        and, if it has soft predecessors, what all of them need (it runs if one did).
        """
        own: dict[int, dict[int, frozenset[int]]] = {}
        for b, ts in enumerate(routes):
            for t in ts or ():
                own.setdefault(t, {})[b] = frozenset({t})
        need: list[dict[int, frozenset[int]]] = [{} for _ in self.nodes]
        for k in self.order:
            merged: dict[int, frozenset[int]] = dict(own.get(k, {}))
            soft: dict[int, frozenset[int]] | None = None
            for p, is_soft in self.preds[k]:
                if is_soft:
                    if soft is None:
                        soft = dict(need[p])
                    else:
                        soft = {b: ts | need[p][b] for b, ts in soft.items() if b in need[p]}
                else:
                    for b, ts in need[p].items():
                        merged[b] = merged[b] & ts if b in merged else ts
            for b, ts in (soft or {}).items():
                merged[b] = merged[b] & ts if b in merged else ts
            need[k] = merged
        return need


def _exclusive(a: dict[int, frozenset[int]], b: dict[int, frozenset[int]]) -> bool:
    """Some branch lets only one of the two run: they need different targets of it."""
    return any(branch in b and ts.isdisjoint(b[branch]) for branch, ts in a.items())


def _topological(succ: Edges) -> tuple[list[int], set[int]]:
    """Kahn's order of the nodes, and the nodes on or behind a cycle."""
    indeg = [0] * len(succ)
    for edges in succ:
        for d, _ in edges:
            indeg[d] += 1
    queue = deque(i for i, d in enumerate(indeg) if d == 0)
    order: list[int] = []
    while queue:
        i = queue.popleft()
        order.append(i)
        for d, _ in succ[i]:
            indeg[d] -= 1
            if indeg[d] == 0:
                queue.append(d)
    cyclic = {i for i, d in enumerate(indeg) if d > 0}
    order.extend(sorted(cyclic))
    return order, cyclic
