"""How the engine builds its events: the cheap positional builders make the same events as
the keyword form, an event keeps what was true when it was built (a tracer reads it later,
in its own thread), and nothing is built for a kind nobody reads."""

from __future__ import annotations

from typing import Any

import pytest

from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
from hush.core.call import NodeCall
from hush.core.errors import NodeError
from hush.core.events import Emitter, Event, EventKind, node_end, node_start, progress
from hush.core.nodes.iteration import MapNode, WhileLoopNode
from hush.core.nodes.iteration.base import Each
from hush.core.state import IterationCounters

FIELDS = Event.__dataclass_fields__


def same(built: Event, expected: Event) -> None:
    """Every field equal, but the time (each event reads the clock)."""
    for name in FIELDS:
        if name != "time":
            assert getattr(built, name) == getattr(expected, name), name


def test_the_positional_builders_make_the_keyword_events() -> None:
    error = NodeError.from_exception(ValueError("bad"), "g/n")
    same(
        node_start("g/m[1]", "r", "g/m", "item", "m[1]", {"x": 1}, "g/m[]"),
        Event(
            "node_start",
            "g/m[1]",
            "r",
            parent="g/m",
            type="item",
            name="m[1]",
            input={"x": 1},
            node="g/m[]",
        ),
    )
    same(
        node_end("g/n", "r", "g", "node", "n", {"y": 2}, None, 0.5, "g/n", attempts=2),
        Event(
            "node_end",
            "g/n",
            "r",
            parent="g",
            type="node",
            name="n",
            output={"y": 2},
            status="ok",
            duration=0.5,
            attempts=2,
            node="g/n",
        ),
    )
    same(
        node_end("g/n", "r", "g", "llm", "n", None, error, 0.5, "g/n"),
        Event(
            "node_end",
            "g/n",
            "r",
            parent="g",
            type="llm",
            name="n",
            status="error",
            error=error,
            duration=0.5,
            node="g/n",
        ),
    )
    assert node_end("g/n", "r", "g", "node", "n", None, None, 0.1, "g/n", True).status == (
        "cancelled"
    )
    counters = IterationCounters(total=3)
    same(
        progress("g/m", "r", "map", "m", counters, "g/m"),
        Event("progress", "g/m", "r", type="map", name="m", counters=counters, node="g/m"),
    )
    assert node_start("g/n", "r", "g", "node", "n", {}, "g/n", time=12.5).time == 12.5


class Keeper:
    """A tracer that keeps every event and reads them after the run, as a slow thread would."""

    def __init__(self, kinds: frozenset[EventKind] | None = None) -> None:
        self.events: list[Event] = []
        self.kinds = kinds

    def subscribe(self, start: Event) -> Any:
        keeper = self

        class Subscription:
            kinds = keeper.kinds or frozenset(
                ("run_start", "node_start", "token", "llm", "progress", "node_end", "run_end")
            )

            def __call__(self, event: Event) -> None:
                keeper.events.append(event)

            def wants_item(self, path: str) -> bool:
                return not path.endswith("[1]")

        return Subscription()

    async def flush(self, timeout: float | None = None) -> None:
        return None


def writes_back(fail_on: int | None = None) -> Hush:
    """A map whose item writes ``result`` into its own state (``PARENT``), then may fail."""

    async def first(item: int) -> dict[str, int]:
        return {"result": item * 10}

    async def second(result: int) -> dict[str, int]:
        if result == (fail_on or 0) * 10 and fail_on is not None:
            raise ValueError("bad")
        return {"checked": result}

    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"item": Each(PARENT["items"])}, max_concurrency=2) as m:
            a = CodeNode(name="first", code_fn=first, inputs={"item": PARENT["item"]})
            b = CodeNode(name="second", code_fn=second, inputs={"result": a["result"]})
            a["result"] >> PARENT["result"]
            b["checked"] >> PARENT["checked"]
            START >> a >> b >> END
        m["checked"] >> PARENT["checked"]
        START >> m >> END
    return Hush(g)


async def test_an_item_event_keeps_the_inputs_it_started_with() -> None:
    keeper = Keeper()
    await writes_back().run({"items": [1, 2, 3]}, tracer=keeper)

    starts = [e for e in keeper.events if e.kind == "node_start" and e.type == "item"]
    assert sorted(e.path for e in starts) == ["g/m[0]", "g/m[2]"]
    for event in starts:
        assert event.input == {"item": [1, 2, 3][int(event.path[-2])]}, (
            "the body's writes to its state must not show in the item's input"
        )


async def test_an_untraced_item_that_fails_is_traced_with_the_inputs_it_started_with() -> None:
    keeper = Keeper()
    await writes_back(fail_on=2).run({"items": [1, 2, 3]}, tracer=keeper)

    (start,) = [e for e in keeper.events if e.kind == "node_start" and e.path == "g/m[1]"]
    assert start.input == {"item": 2}


def looping() -> Hush:
    async def step(n: int) -> dict[str, int]:
        return {"n": n + 1}

    with GraphNode(name="g") as g:
        with WhileLoopNode(
            name="loop", inputs={"n": PARENT["n"]}, condition="n < 5", max_iterations=10
        ) as loop:
            s = CodeNode(name="step", code_fn=step, inputs={"n": PARENT["n"]})
            s["n"] >> PARENT["n"]
            START >> s >> END
        loop["n"] >> PARENT["n"]
        START >> loop >> END
    return Hush(g)


@pytest.mark.parametrize("engine", [writes_back, looping])
async def test_no_progress_event_is_built_when_nobody_reads_progress(
    engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    report = NodeCall.progress

    def counted(self: NodeCall, counters: IterationCounters) -> None:
        built.append(self.path)
        report(self, counters)

    monkeypatch.setattr(NodeCall, "progress", counted)
    inputs = {"items": list(range(20)), "n": 0}
    keeper = Keeper(frozenset(("run_start", "node_start", "node_end", "run_end")))
    await engine().run(inputs, tracer=keeper)
    assert len(built) == 1, "only the iteration node's first counters, not one per item"

    built.clear()
    everything = Keeper()
    await engine().run(inputs, tracer=everything)
    assert len(built) > 2, "a subscriber of progress still gets it"
    assert any(e.kind == "progress" for e in everything.events)


def test_an_emitter_says_which_kinds_it_reads() -> None:
    class NodesOnly:
        kinds = frozenset({"node_start", "node_end"})

        def __call__(self, event: Event) -> None:
            return None

    emit = Emitter([NodesOnly()])
    assert emit.reads("node_start") and not emit.reads("progress")
    assert Emitter([lambda event: None]).reads("progress")
