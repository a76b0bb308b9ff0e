"""Progress counters reach callbacks while a map runs, aggregated across nested instances."""

from __future__ import annotations

import anyio

from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
from hush.core.nodes.iteration import MapNode
from hush.core.nodes.iteration.base import Each
from hush.core.progress import MapProgress


async def test_on_progress_sees_counters_during_and_after_the_run() -> None:
    gate = anyio.Event()
    snapshots: list[list[MapProgress]] = []

    def on_progress(snap: list[MapProgress]) -> None:
        snapshots.append(snap)
        if snap and snap[0].done >= 5:
            gate.set()

    async def work(item: int) -> dict[str, int]:
        if item >= 5:
            with anyio.fail_after(10):
                await gate.wait()
        if item == 7:
            raise ValueError("seven")
        return {"r": item}

    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"item": Each(PARENT["items"])}, max_concurrency=5) as m:
            n = CodeNode(name="n", code_fn=work, inputs={"item": PARENT["item"]})
            n["r"] >> PARENT["r"]
            START >> n >> END
        START >> m >> END
    await Hush(g).run({"items": list(range(20))}, on_progress=on_progress, progress=False)
    mid = next(s[0] for s in snapshots if s and s[0].done >= 5)
    assert mid.total == 20 and mid.done < 20
    final = snapshots[-1][0]
    assert (final.path, final.total, final.done, final.failed, final.running) == (
        "g/m",
        20,
        20,
        1,
        0,
    )


async def test_nested_instances_are_summed_under_one_path() -> None:
    seen: list[list[MapProgress]] = []
    with GraphNode(name="g") as g:
        with MapNode(
            name="outer", inputs={"row": Each(PARENT["rows"])}, max_concurrency=2
        ) as outer:
            with MapNode(name="inner", inputs={"x": Each(PARENT["row"])}) as inner:
                n = CodeNode(
                    name="n", code_fn=lambda x: {"y": x}, inputs={"x": PARENT["x"]}, thread=False
                )
                START >> n >> END
            START >> inner >> END
        START >> outer >> END
    await Hush(g).run({"rows": [[1, 2, 3]] * 4}, on_progress=seen.append, progress=False)
    final = {p.path: p for p in seen[-1]}
    assert final["g/outer"].done == 4 and final["g/outer"].depth == 0
    inner_p = final["g/outer/inner"]
    assert (inner_p.total, inner_p.done, inner_p.instances, inner_p.depth) == (12, 12, 4, 1)
