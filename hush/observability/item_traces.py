"""Each map item its own trace (``trace_per_item=True`` on the OpenTelemetry tracers).

A map of many thousand items makes one trace too big for a backend's UI. With the
option, every outermost map item (items of nested maps stay inside theirs) is the root
of a trace of its own, with a deterministic id (:func:`item_trace_id`), a span link
to the run's root span, the run's trace id as ``hush.run_trace_id`` and the run's
session (its ``session_id``, else its ``run_id``) as ``session.id``, so Langfuse and
Phoenix list the run's trace and its items' traces as one session. The run's trace
keeps the run, graph and map spans.
"""

from __future__ import annotations

from hush.observability.ids import trace_id_for
from hush.observability.open_spans import OpenSpan, RunSpans


def outermost_item(span: OpenSpan | None) -> OpenSpan | None:
    """The outermost map item ``span`` is (or is inside of), if any."""
    found = None
    while span is not None:
        if span.start.type == "item":
            found = span
        span = span.parent
    return found


def run_root(span: OpenSpan) -> OpenSpan:
    """The run's root span above ``span``."""
    while span.parent is not None:
        span = span.parent
    return span


def item_trace_id(run: RunSpans, item: OpenSpan) -> int:
    """The trace id of ``item``: the same for the same run id and item path."""
    return int(trace_id_for(f"{run.run_id}\x00{item.start.path}"), 16)


def session_of(run: RunSpans) -> str:
    """The session that groups a run's trace and its items' traces."""
    return str(run.fields.get("session_id") or run.run_id)
