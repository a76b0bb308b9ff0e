"""trace_per_item: each outermost map item is a trace of its own, linked to the run's trace and
in the run's session, decoded from what the loopback receiver got."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator

import graphs
import pytest
from otlp_receiver import OtlpReceiver, ReceivedSpan

from hush import Labels
from hush.core import Hush
from hush.observability import LangfuseTracer, OTLPTracer
from hush.observability.ids import trace_id_for

ROWS = 4
CELLS = 3
BAD = 7


def nested_map() -> Hush:
    return graphs.nested_map(name="table", bad=BAD, cap=2)


TABLE = [list(range(row * CELLS, row * CELLS + CELLS)) for row in range(ROWS)]
SPANS = 2 + ROWS * (1 + 1 + CELLS * 2)  # root, rows; per row: item, cells, cell items + nodes


@pytest.fixture
def quiet_map_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.CRITICAL, logger="hush.core")
    yield


def traces(spans: list[ReceivedSpan]) -> dict[str, list[ReceivedSpan]]:
    found: dict[str, list[ReceivedSpan]] = defaultdict(list)
    for span in spans:
        found[span.trace_id].append(span)
    return found


def check_item_traces(spans: list[ReceivedSpan], run_id: str) -> list[ReceivedSpan]:
    """The run's trace holds the root and the outer map; each row is a whole trace of its own
    whose root links to the run's root. Returns the item roots."""
    by_trace = traces(spans)
    run_trace = trace_id_for(run_id)
    assert sorted(s.name for s in by_trace.pop(run_trace)) == ["rows", "table"]
    (root,) = [s for s in spans if s.name == "table"]
    assert len(by_trace) == ROWS
    item_roots = []
    for members in by_trace.values():
        (head,) = [s for s in members if s.parent_id is None]
        assert head.name.startswith("rows["), head.name
        assert head.links == [(run_trace, root.span_id, {"hush.link": "run"})]
        ids = {s.span_id for s in members}
        assert all(s.parent_id in ids for s in members if s.parent_id), "no orphan in an item"
        assert len(members) == 1 + 1 + CELLS * 2, "nested items stay in their row's trace"
        item_roots.append(head)
    return item_roots


async def test_each_item_is_a_trace_of_its_own_linked_to_the_run(
    receiver: OtlpReceiver, quiet_map_errors: None
) -> None:
    seen: list[set[str]] = []
    for _ in range(2):
        receiver.spans.clear()
        tracer = OTLPTracer(receiver.url, trace_per_item=True)
        await nested_map().run({"rows": TABLE}, tracer=tracer, run_id="per-item")
        tracer.close()
        spans = receiver.wait_for_spans(SPANS)
        assert len(spans) == SPANS
        for head in check_item_traces(spans, "per-item"):
            assert head.attributes["hush.run_trace_id"] == trace_id_for("per-item")
            assert head.attributes["session.id"] == "per-item"
        (root,) = [s for s in spans if s.name == "table"]
        assert root.attributes["session.id"] == "per-item"
        seen.append(set(traces(spans)))
    assert seen[0] == seen[1], "the same run id gives the same trace ids"


async def test_sampled_items_keep_their_own_traces_whole(
    receiver: OtlpReceiver, quiet_map_errors: None
) -> None:
    tracer = OTLPTracer(receiver.url, trace_per_item=True, sample=0.0)
    await nested_map().run({"rows": TABLE}, tracer=tracer, run_id="per-item-sampled")
    tracer.close()
    spans = receiver.wait_for_spans(2 + 1 + 1 + 2)
    by_trace = traces(spans)
    assert len(by_trace) == 2, "the run's trace and the failed row's"
    (row,) = [s for s in spans if s.name.startswith("rows[")]
    assert row.name == f"rows[{BAD // CELLS}]" and row.parent_id is None
    members = by_trace[row.trace_id]
    ids = {s.span_id for s in members}
    assert all(s.parent_id in ids for s in members if s.parent_id)


async def test_langfuse_puts_the_items_traces_in_the_runs_session(
    receiver: OtlpReceiver, make_tracer: Callable[..., LangfuseTracer], quiet_map_errors: None
) -> None:
    tracer = make_tracer(receiver.url, trace_per_item=True)
    await nested_map().run(
        {"rows": TABLE},
        tracer=tracer,
        run_id="lf-per-item",
        labels=Labels(session_id="nightly-7", user_id="ana"),
    )
    tracer.close()
    spans = receiver.wait_for_spans(SPANS)
    heads = check_item_traces(spans, "lf-per-item")
    for span in spans:
        assert span.attributes["session.id"] == "nightly-7", span.name
        assert span.attributes["user.id"] == "ana", span.name
    for head in heads:
        members = traces(spans)[head.trace_id]
        assert {s.attributes["langfuse.trace.name"] for s in members} == {f"table {head.name}"}
        run_trace = json.loads(head.attributes["langfuse.trace.metadata.run_trace_id"])
        assert run_trace == trace_id_for("lf-per-item")
    app_roots = sorted(s.name for s in spans if s.attributes.get("langfuse.internal.is_app_root"))
    assert app_roots == sorted(["table", *(h.name for h in heads)])
