"""Scheduler overhead: W3 (fan-out/fan-in 1 -> 500 -> 1), W4 (a 500-node chain) and the
cost of a trivial ``engine.run`` (a 1-node graph).

For W3 and W4, bare asyncio and hush take turns in one process (best of ``--repeat``
per run), and the per-node overhead of hush over bare asyncio is printed as a range
(min-max) over ``--runs`` runs, by wall time and by CPU time of this process (which
other jobs on the machine do not inflate). Target: at most 5 us/node for both. The
bare fan-out starts a task per branch, as a hand-written gather does; hush runs
branches that never wait without one, so its W3 overhead can be below zero.

The third row is the CPU time of one ``await engine.run({"v": 1})`` of a 1-node graph,
over ``--calls`` calls per run (target: at most the 70-75 us it cost before the run
options of issue 20). LangGraph (if installed) is timed once for comparison.

    python benchmarks/bench_scheduler.py [--nodes 500] [--repeat 5] [--runs 3] [--calls 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import sys
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import alternating, best_of, row, spread

from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush


async def inc(v: int) -> dict[str, int]:
    return {"v": v + 1}


def hush_chain(n: int) -> Hush:
    with GraphNode(name="chain") as g:
        prev = CodeNode(name="n0", code_fn=inc, inputs={"v": PARENT["v"]})
        START >> prev
        for i in range(1, n):
            node = CodeNode(name=f"n{i}", code_fn=inc, inputs={"v": prev["v"]})
            prev >> node
            prev = node
        prev["v"] >> PARENT["v"]
        prev >> END
    return Hush(g)


def hush_fan(n: int) -> Hush:
    async def total(**kw: int) -> dict[str, int]:
        return {"v": sum(kw.values())}

    with GraphNode(name="fan") as g:
        src = CodeNode(name="src", code_fn=inc, inputs={"v": PARENT["v"]})
        mids = [CodeNode(name=f"m{i}", code_fn=inc, inputs={"v": src["v"]}) for i in range(n - 2)]
        sink = CodeNode(
            name="sink", code_fn=total, inputs={f"m{i}": m["v"] for i, m in enumerate(mids)}
        )
        sink["v"] >> PARENT["v"]
        START >> src >> mids >> sink >> END
    return Hush(g)


async def bare_chain(n: int) -> int:
    v = 0
    for _ in range(n):
        v = (await inc(v))["v"]
    return v


async def bare_fan(n: int) -> int:
    first = (await inc(0))["v"]
    outs = await asyncio.gather(*(asyncio.ensure_future(inc(first)) for _ in range(n - 2)))
    return sum(o["v"] for o in outs)


def langgraph_builders() -> tuple[Any, Any] | None:
    try:
        from langgraph.graph import END as LG_END
        from langgraph.graph import START as LG_START
        from langgraph.graph import StateGraph
    except ImportError:
        return None

    class ChainState(TypedDict):
        v: int

    class FanState(TypedDict):
        v: int
        parts: Annotated[list[int], operator.add]

    async def lg_inc(state: ChainState) -> dict[str, int]:
        return {"v": state["v"] + 1}

    async def lg_part(state: FanState) -> dict[str, list[int]]:
        return {"parts": [state["v"] + 1]}

    async def lg_sum(state: FanState) -> dict[str, int]:
        return {"v": sum(state["parts"])}

    def chain(n: int) -> Any:
        sg = StateGraph(ChainState)
        for i in range(n):
            sg.add_node(f"n{i}", lg_inc)
        sg.add_edge(LG_START, "n0")
        for i in range(1, n):
            sg.add_edge(f"n{i - 1}", f"n{i}")
        sg.add_edge(f"n{n - 1}", LG_END)
        return sg.compile()

    def fan(n: int) -> Any:
        sg = StateGraph(FanState)
        sg.add_node("src", lg_inc)
        sg.add_node("sink", lg_sum)
        mids = [f"m{i}" for i in range(n - 2)]
        for m in mids:
            sg.add_node(m, lg_part)
            sg.add_edge("src", m)
        sg.add_edge(LG_START, "src")
        sg.add_edge(mids, "sink")
        sg.add_edge("sink", LG_END)
        return sg.compile()

    return chain, fan


def hush_one() -> Hush:
    """The trivial graph: one node passing ``v`` through."""
    with GraphNode(name="one") as g:
        node = CodeNode(name="a", code_fn=inc, inputs={"v": PARENT["v"]})
        node["v"] >> PARENT["v"]
        START >> node >> END
    return Hush(g)


async def overhead(bare: Any, engine: Hush, n: int, runs: int, repeat: int) -> None:
    """Print hush's per-node time and its overhead over bare asyncio, wall and CPU."""
    arms = {"bare": lambda: bare(n), "hush": lambda: engine.run({"v": 0})}
    for clock, label in ((time.perf_counter, "wall"), (time.process_time, "CPU")):
        got = await alternating(arms, runs, repeat, clock)
        per_node = [h / n * 1e6 for h in got["hush"]]
        extra = [(h - b) / n * 1e6 for h, b in zip(got["hush"], got["bare"], strict=True)]
        print(f"{'hush per node, ' + label:<34} {spread(per_node, unit=' us')}")
        print(
            f"{'hush overhead per node, ' + label:<34} {spread(extra, unit=' us')}   (target <= 5)"
        )


async def trivial_run(calls: int, runs: int) -> None:
    """Print the CPU time of one ``engine.run`` of a 1-node graph, over ``calls`` calls."""
    engine = hush_one()
    for _ in range(200):
        await engine.run({"v": 1})
    costs = []
    for _ in range(runs):
        start = time.process_time()
        for _ in range(calls):
            await engine.run({"v": 1})
        costs.append((time.process_time() - start) / calls * 1e6)
    print(f"{'CPU per engine.run':<34} {spread(costs, fmt='{:.1f}', unit=' us')}   (target <= 75)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3, help="figures are ranges over these runs")
    parser.add_argument("--calls", type=int, default=10_000, help="engine.run calls per run")
    args = parser.parse_args()
    n = args.nodes

    chain, fan = hush_chain(n), hush_fan(n)
    assert (await chain.run({"v": 0}))["v"] == n
    lg = langgraph_builders()

    shapes = (
        ("W3: fan-out/fan-in 1 -> {m} -> 1", "fan", bare_fan, fan),
        ("W4: chain of {n}", "chain", bare_chain, chain),
    )
    for title, shape, bare, engine in shapes:
        print("\n" + title.format(m=n - 2, n=n))
        await overhead(bare, engine, n, args.runs, args.repeat)
        if lg is not None:
            base = await best_of(lambda bare=bare: bare(n), args.repeat)
            t_hush = await best_of(lambda engine=engine: engine.run({"v": 0}), args.repeat)
            graph = (lg[0] if shape == "chain" else lg[1])(n)
            config = {"recursion_limit": n + 10}
            t_lg = await best_of(
                lambda graph=graph, config=config: graph.ainvoke({"v": 0, "parts": []}, config),
                args.repeat,
            )
            print(row("langgraph", t_lg, base, n))
            print(f"{'hush vs langgraph':<34} x{t_hush / t_lg:6.2f} (below 1 = hush faster)")
        else:
            print("langgraph not installed: pip install -e '.[bench]' to compare")

    print(f"\nTrivial run: 1-node graph, {args.calls} calls per run")
    await trivial_run(args.calls, args.runs)


if __name__ == "__main__":
    asyncio.run(main())
