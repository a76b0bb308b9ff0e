"""Tracers that turn a run's events into plain dicts, one per finished span or LLM call.

Record fields: ``type`` (``"span"`` or ``"generation"``), ``run_id``,
``trace_id``, ``id``, ``parent_id``, ``name``, ``kind`` (``"run"`` for the root,
``"generation"`` for LLM calls, else the span's type: graph, map, item, node,
llm), ``start_time`` and ``end_time`` (ISO 8601, UTC), ``duration_ms``,
``input``, ``output``, ``level`` (``"DEFAULT"`` or ``"ERROR"``), ``error``,
``status``, ``metadata``; the root adds ``user_id``, ``session_id`` and
``tags``; generations add ``model``, ``model_parameters``, ``usage``
(``{"input", "output", "total"}``), ``time_to_first_token_ms``, ``cost``
(USD or ``None``) and ``cached``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from hush.core.events import Event
from hush.observability.ids import new_span_id
from hush.observability.serialize import (
    DEFAULT_MAX_CHARS,
    describe_error,
    to_jsonable,
    usage_details,
)
from hush.observability.spans import DEFAULT_MAX_QUEUED_EVENTS, OpenSpan, RunSpans, SpanTracer

logger = logging.getLogger(__name__)

Record = dict[str, Any]
RecordSink = Callable[[Record], None]
"""Receives each record as its span ends, in the tracer's thread."""

_SECONDS: dict[float, str] = {}
"""``YYYY-MM-DDTHH:MM:SS`` of the whole seconds recently formatted."""


def iso_time(timestamp: float) -> str:
    """``datetime.fromtimestamp(timestamp, tz=UTC).isoformat()``, the date and time of each
    whole second formatted once (the same rounding: microseconds half to even)."""
    fraction, whole = math.modf(timestamp)
    micro = round(fraction * 1e6)
    if micro >= 1_000_000:
        whole, micro = whole + 1, micro - 1_000_000
    elif micro < 0:
        whole, micro = whole - 1, micro + 1_000_000
    second = _SECONDS.get(whole)
    if second is None:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        second = _SECONDS[whole] = datetime.fromtimestamp(whole, tz=UTC).strftime(
            "%Y-%m-%dT%H:%M:%S"
        )
    return f"{second}.{micro:06d}+00:00" if micro else f"{second}+00:00"


class RecordingTracer(SpanTracer):
    """Builds one :data:`Record` per finished span and LLM call and hands it to ``sink``.

    Events are queued on the event loop and turned into records in a thread of
    the tracer's own; :meth:`flush` waits until the queue is empty.
    """

    backend = "trace records"

    def __init__(
        self,
        sink: RecordSink,
        *,
        max_field_chars: int = DEFAULT_MAX_CHARS,
        max_queued_events: int = DEFAULT_MAX_QUEUED_EVENTS,
        sample: float = 1.0,
    ) -> None:
        self._sink = sink
        self.max_field_chars = max_field_chars
        super().__init__(log=logger, max_queued_events=max_queued_events, sample=sample)

    def span_ended(self, run: RunSpans, span: OpenSpan, end: Event) -> None:
        start = span.start
        error = None if end.error is None else describe_error(end.error)
        root = start.kind == "run_start"
        record = self._record(run, span.id, span.parent, span.name, start.time, end.time)
        record["type"] = "span"
        record["kind"] = "run" if root else start.type or "node"
        record["input"] = self._jsonable(start.input)
        record["output"] = self._jsonable(end.output)
        record["level"] = "DEFAULT" if error is None else "ERROR"
        record["error"] = error
        record["status"] = end.status
        record["metadata"] = self._meta(end.metadata)
        if root:
            fields = run.fields
            record["user_id"] = fields.get("user_id")
            record["session_id"] = fields.get("session_id")
            record["tags"] = list(fields.get("tags") or ())
            record["metadata"] = {**self._meta(fields.get("metadata")), **record["metadata"]}
            if run.dropped:
                record["metadata"]["dropped_events"] = run.dropped
        self._emit(record)

    def llm_called(self, run: RunSpans, owner: OpenSpan | None, event: Event) -> None:
        llm = event.llm
        assert llm is not None
        name = event.name or (owner.name if owner is not None else "llm")
        record = self._record(run, new_span_id(), owner, name, llm.started, llm.ended)
        ttft = llm.time_to_first_token
        record.update(
            type="generation",
            kind="generation",
            input=self._jsonable(llm.messages),
            output=self._jsonable(llm.output),
            level="ERROR" if llm.error else "DEFAULT",
            error=llm.error,
            status=None,
            metadata=self._meta(event.metadata),
            model=llm.response_model or llm.model,
            model_parameters=self._meta(llm.params) or None,
            usage=usage_details(llm.usage),
            time_to_first_token_ms=None if ttft is None else round(ttft * 1000, 3),
            cost=llm.cost,
            cached=llm.cached,
        )
        self._emit(record)

    def _record(
        self,
        run: RunSpans,
        id: int,
        parent: OpenSpan | None,
        name: str,
        start: float,
        end: float,
    ) -> Record:
        trace_id = run.common.get("trace_id")
        if trace_id is None:
            trace_id = run.common["trace_id"] = f"{run.trace_id:032x}"
        return {
            "run_id": run.run_id,
            "trace_id": trace_id,
            "id": f"{id:016x}",
            "parent_id": None if parent is None else f"{parent.id:016x}",
            "name": name,
            "start_time": iso_time(start),
            "end_time": iso_time(end),
            "duration_ms": round((end - start) * 1000, 3),
        }

    def _jsonable(self, value: Any) -> Any:
        return None if value is None else to_jsonable(value, max_chars=self.max_field_chars)

    def _meta(self, values: Any) -> dict[str, Any]:
        if not values:
            return {}
        return {str(k): self._jsonable(v) for k, v in values.items()}

    def _emit(self, record: Record) -> None:
        try:
            self._sink(record)
        except Exception:
            logger.warning("could not store a trace record", exc_info=True)
