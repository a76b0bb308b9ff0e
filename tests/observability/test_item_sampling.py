"""Sampling decided as each map item starts: an item nobody wants builds no event; one that
fails is traced from its errors; subscribers get only the kinds they read."""

from __future__ import annotations

import asyncio
from typing import Any

import graphs

from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush, Progress
from hush.core.events import Event, EventKind
from hush.core.nodes.iteration import MapNode
from hush.core.nodes.iteration.base import Each
from hush.observability import MemoryTracer

BAD = 7


class Choosy:
    """A tracer that wants only the items whose path ends with ``[3]``, and keeps every event."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.asked: list[str] = []

    def subscribe(self, start: Event) -> Any:
        tracer = self

        class Subscription:
            def __call__(self, event: Event) -> None:
                tracer.events.append(event)

            def wants_item(self, path: str) -> bool:
                tracer.asked.append(path)
                return path.endswith("[3]")

        return Subscription()

    async def flush(self, timeout: float | None = None) -> None:
        return None


def two_step_map() -> Hush:
    """A map whose item runs ``first`` then ``second``; ``second`` fails on item ``BAD``."""

    async def first(item: int) -> dict[str, int]:
        return {"value": item * 10}

    async def second(value: int) -> dict[str, int]:
        if value == BAD * 10:
            raise ValueError(f"value {value} is bad")
        return {"result": value + 1}

    with GraphNode(name="steps") as g:
        with MapNode(name="m", inputs={"item": Each(PARENT["items"])}, max_concurrency=4) as m:
            a = CodeNode(name="first", code_fn=first, inputs={"item": PARENT["item"]})
            b = CodeNode(name="second", code_fn=second, inputs={"value": a["value"]})
            b["result"] >> PARENT["result"]
            START >> a >> b >> END
        m["result"] >> PARENT["results"]
        START >> m >> END
    return Hush(g)


async def test_an_item_nobody_wants_builds_no_event_and_is_asked_about_once() -> None:
    tracer = Choosy()
    await two_step_map().run({"items": list(range(6))}, tracer=tracer)

    assert sorted(tracer.asked) == [f"steps/m[{i}]" for i in range(6)]
    inside = {e.path for e in tracer.events if e.path.startswith("steps/m[")}
    assert inside == {"steps/m[3]", "steps/m[3]/first", "steps/m[3]/second"}


async def test_an_unsampled_item_that_fails_is_traced_from_its_errors(
    quiet_map_errors: None,
) -> None:
    tracer = MemoryTracer(sample=0.0)
    await two_step_map().run({"items": list(range(10))}, tracer=tracer, run_id="from-errors")
    tracer.close()

    (item,) = tracer.find(kind="item")
    assert item["name"] == f"m[{BAD}]" and item["level"] == "ERROR"
    assert item["input"] == {"item": BAD} and "value 70 is bad" in item["error"]
    (node,) = [r for r in tracer.records if r["parent_id"] == item["id"]]
    assert node["name"] == "second" and node["status"] == "error"
    assert node["metadata"] == {"from_error": True}
    assert "value 70 is bad" in node["error"]
    assert item["start_time"] <= node["start_time"] <= node["end_time"] <= item["end_time"]
    assert {r["kind"] for r in tracer.records} == {"run", "map", "item", "node"}


async def test_an_unsampled_failed_items_input_is_what_it_started_with(
    quiet_map_errors: None,
) -> None:
    """The body writes into the item's state before failing, overwriting an input: the
    rebuilt span's input is still the item's inputs as it started."""

    async def first(item: int) -> dict[str, int]:
        return {"item": item * 100, "extra": 1}

    async def second(item: int) -> dict[str, int]:
        if item == BAD * 100:
            raise ValueError("bad")
        return {"result": item}

    with GraphNode(name="steps") as g:
        with MapNode(
            name="m", inputs={"item": Each(PARENT["items"]), "k": PARENT["k"]}, max_concurrency=4
        ) as m:
            a = CodeNode(name="first", code_fn=first, inputs={"item": PARENT["item"]})
            a["item"] >> PARENT["item"]
            a["extra"] >> PARENT["extra"]
            b = CodeNode(name="second", code_fn=second, inputs={"item": a["item"]})
            b["result"] >> PARENT["result"]
            START >> a >> b >> END
        m["result"] >> PARENT["results"]
        START >> m >> END
    tracer = MemoryTracer(sample=0.0)
    await Hush(g).run({"items": list(range(10)), "k": "shared"}, tracer=tracer, run_id="given")
    tracer.close()

    (item,) = tracer.find(kind="item")
    assert item["input"] == {"item": BAD, "k": "shared"}
    assert item["start_time"] <= item["end_time"]


async def test_a_failure_deep_in_an_unsampled_item_rebuilds_the_levels_down_to_it(
    quiet_map_errors: None,
) -> None:
    table = [list(range(row * 10, row * 10 + 10)) for row in range(10)]
    tracer = MemoryTracer(sample=0.0)
    await graphs.nested_map().run({"rows": table}, tracer=tracer, run_id="deep")
    tracer.close()

    by_id = {r["id"]: r for r in tracer.records}
    (node,) = tracer.find("work")
    chain = []
    record: dict[str, Any] | None = node
    while record is not None:
        chain.append((record["name"], record["kind"]))
        record = by_id.get(record["parent_id"])
    assert chain == [
        ("work", "node"),
        ("cells[7]", "item"),
        ("cells", "map"),
        ("rows[7]", "item"),
        ("rows", "map"),
        ("nested", "run"),
    ]


async def test_a_tracer_is_handed_only_the_events_it_reads() -> None:
    tracer = MemoryTracer()
    await two_step_map().run({"items": list(range(5))}, tracer=tracer)
    tracer.close()

    # run start/end, map start/end, and per item: the item's and two nodes' start and end
    assert tracer.writer.handled == 4 + 5 * 6, "no progress nor token event reaches the tracer"


async def test_progress_inside_unsampled_items_still_reaches_the_progress_display() -> None:
    updates: list[Any] = []
    tracer = MemoryTracer(sample=0.0)
    table = [list(range(row * 10, row * 10 + 10)) for row in range(3)]
    await graphs.nested_map(bad=-1).run(
        {"rows": table}, tracer=tracer, progress=Progress(on_update=updates.append)
    )
    tracer.close()

    final = {p.path: p for p in updates[-1]}
    assert final["nested/rows/cells"].done == 30 and final["nested/rows/cells"].instances == 3
    assert not tracer.find(kind="item"), "no item was drawn, none failed"


def test_an_emitter_routes_each_kind_to_its_readers() -> None:
    from hush.core.events import Emitter

    seen: dict[str, list[EventKind]] = {"all": [], "progress": []}

    def everything(event: Event) -> None:
        seen["all"].append(event.kind)

    class ProgressOnly:
        kinds = frozenset({"progress"})

        def __call__(self, event: Event) -> None:
            seen["progress"].append(event.kind)

    emit = Emitter([everything, ProgressOnly()])
    kinds: tuple[EventKind, ...] = ("node_start", "progress", "token")
    for kind in kinds:
        emit(Event(kind, "g/n", "run"))
    assert seen == {"all": ["node_start", "progress", "token"], "progress": ["progress"]}
    assert emit.item("g/m[0]") is emit, "a subscriber without wants_item wants every item"


def test_a_subscription_draws_the_items_sampled_draws() -> None:
    from hush.observability.open_spans import Subscription, sampled

    for share in (0.0, 0.1, 0.5, 0.97):
        for run_id in ("run", "0f3c-é"):
            subscription = Subscription(lambda event: None, run_id, share)
            for i in range(500):
                path = f"g/m[{i}]/inner[{i % 7}]"
                assert subscription.wants_item(path) == sampled(run_id, path, share)


def test_a_drawn_item_goes_on_as_it_comes_and_only_undrawn_ones_wait_for_their_end() -> None:
    """In the tracer's thread, an item drawn already (outside any other item) is kept whatever
    its end, so its spans start as their events arrive; an item not drawn waits for its end
    (it is kept only if it failed)."""
    from hush.observability.open_spans import OpenSpan, RunSpans, sampled
    from hush.observability.spans import SpanTracer

    share = 0.5
    drawn = next(f"g/m[{i}]" for i in range(100) if sampled("r", f"g/m[{i}]", share))
    other = next(f"g/m[{i}]" for i in range(100) if not sampled("r", f"g/m[{i}]", share))
    seen: list[str] = []

    class Recording(SpanTracer):
        def span_started(self, run: RunSpans, span: OpenSpan) -> None:
            seen.append(f"start {span.start.path}")

        def span_ended(self, run: RunSpans, span: OpenSpan, end: Event) -> None:
            seen.append(f"end {end.path}")

    tracer = Recording(sample=share)
    starts = [Event("run_start", "g", "r", type="run", name="g")]
    for path, parent, kind in (("g/m", "g", "map"), (drawn, "g/m", "item"), (other, "g/m", "item")):
        starts.append(Event("node_start", path, "r", parent=parent, type=kind))
    for item in (drawn, other):
        starts.append(Event("node_start", f"{item}/n", "r", parent=item, type="node"))
    tracer._handle_batch(starts)
    assert seen == ["start g", "start g/m", f"start {drawn}", f"start {drawn}/n"]

    ends = [Event("node_end", p, "r", status="ok") for p in (f"{other}/n", other)]
    ends += [Event("node_end", p, "r", status="ok") for p in (f"{drawn}/n", drawn, "g/m")]
    tracer._handle_batch([*ends, Event("run_end", "g", "r", status="ok")])
    assert seen[4:] == [f"end {drawn}/n", f"end {drawn}", "end g/m", "end g"]
    tracer.close()


async def test_quiet_items_cut_short_by_the_run_timeout_are_traced_as_cancelled() -> None:
    """Items no tracer drew that are still running when the graph's timeout cancels them are
    traced from their end (cancelled, with their inputs); those that finished are not."""
    release = asyncio.Event()

    async def work(item: int) -> dict[str, int]:
        if item >= 3:
            await release.wait()  # never set: these run until the timeout
        return {"result": item}

    with GraphNode(name="g", timeout=0.2) as g:
        with MapNode(name="m", inputs={"item": Each(PARENT["items"])}, max_concurrency=8) as m:
            n = CodeNode(name="work", code_fn=work, inputs={"item": PARENT["item"]})
            n["result"] >> PARENT["result"]
            START >> n >> END
        m["result"] >> PARENT["results"]
        START >> m >> END
    tracer = MemoryTracer(sample=0.0)
    await Hush(g).run({"items": list(range(6))}, tracer=tracer)
    tracer.close()
    items = tracer.find(kind="item")
    assert sorted(item["input"]["item"] for item in items) == [3, 4, 5]
    assert {item["status"] for item in items} == {"cancelled"}
