"""Tracers that turn a run's events into plain dicts, one per finished span or LLM call.

Record fields: ``type`` (``"span"`` or ``"generation"``), ``run_id``,
``trace_id``, ``id``, ``parent_id``, ``name``, ``kind`` (``"run"`` for the root,
``"generation"`` for LLM calls, else the span's type: graph, map, item, node,
llm), ``start_time`` and ``end_time`` (ISO 8601, UTC), ``duration_ms``,
``input``, ``output``, ``level`` (``"DEFAULT"`` or ``"ERROR"``), ``error``,
``status``, ``metadata``; the root adds ``user_id``, ``session_id`` and
``tags``; generations add ``model``, ``model_parameters``, ``usage``
(``{"input", "output", "total"}``) and ``time_to_first_token_ms``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hush.core.events import Event, LLMCall, Subscriber
from hush.observability.handles import RunSpan, start_run
from hush.observability.ids import new_span_id, trace_id_for
from hush.observability.serialize import (
    DEFAULT_MAX_CHARS,
    describe_error,
    to_jsonable,
    usage_details,
)
from hush.observability.worker import EventWorker

logger = logging.getLogger(__name__)

Record = dict[str, Any]
RecordSink = Callable[[Record], None]
"""Receives each record as its span ends, in the tracer's thread."""


@dataclass(slots=True)
class _Open:
    id: str
    parent_id: str | None
    name: str
    kind: str
    start: float
    input: Any


@dataclass(slots=True)
class _Run:
    trace_id: str
    root: dict[str, Any]
    spans: dict[str, _Open] = field(default_factory=dict)


class RecordingTracer:
    """Builds one :data:`Record` per finished span and LLM call and hands it to ``sink``.

    Events are queued on the event loop and turned into records in a thread of
    the tracer's own; :meth:`flush` waits until the queue is empty.
    """

    def __init__(self, sink: RecordSink, *, max_field_chars: int = DEFAULT_MAX_CHARS) -> None:
        self._sink = sink
        self.max_field_chars = max_field_chars
        self._runs: dict[str, _Run] = {}
        self._worker = EventWorker(
            self._handle, name=f"hush-{type(self).__name__}", idle=self._idle
        )
        self.flush_timeout = 5.0

    def subscribe(self, start: Event) -> Subscriber:
        """Trace the run that ``start`` opens: its events are queued for the tracer's thread."""
        return self._worker.put

    def start_run(self, name: str, *, run_id: str, **fields: Any) -> RunSpan:
        """Open the root span of a run traced by hand (see :func:`~hush.observability.handles.start_run`)."""
        return start_run(self, name, run_id=run_id, **fields)

    async def flush(self, timeout: float | None = None) -> None:
        """Wait at most ``timeout`` seconds until every record so far reached the sink."""
        bound = self.flush_timeout if timeout is None else timeout
        if not await self._worker.drained(bound):
            logger.warning("trace records not written within %.1f s", bound)

    def _idle(self) -> None:
        """Called in the tracer's thread whenever it has nothing queued."""

    def _jsonable(self, value: Any) -> Any:
        return None if value is None else to_jsonable(value, max_chars=self.max_field_chars)

    def _handle(self, event: Event) -> None:
        kind = event.kind
        if kind == "run_start":
            meta = dict(event.metadata or {})
            self._runs[event.run_id] = run = _Run(trace_id_for(event.run_id), meta)
            run.spans[event.path] = _Open(
                new_span_id(),
                None,
                event.name or event.path,
                "run",
                event.time,
                self._jsonable(event.input),
            )
            return
        found = self._runs.get(event.run_id)
        if found is None:
            return
        run = found
        if kind == "node_start":
            parent = run.spans.get(event.parent or "")
            run.spans[event.path] = _Open(
                new_span_id(),
                parent.id if parent is not None else None,
                event.name or event.path,
                event.type or "node",
                event.time,
                self._jsonable(event.input),
            )
        elif kind == "llm" and event.llm is not None:
            owner = run.spans.get(event.path)
            name = event.name or (owner.name if owner is not None else "llm")
            self._emit(self._generation(run, event, owner, name, event.llm))
        elif kind in ("node_end", "run_end"):
            opened = run.spans.pop(event.path, None)
            if opened is not None:
                self._emit(self._span(run, event, opened))
            if kind == "run_end":
                self._runs.pop(event.run_id, None)

    def _base(self, run: _Run, event: Event, opened: _Open, start: float, end: float) -> Record:
        return {
            "run_id": event.run_id,
            "trace_id": run.trace_id,
            "id": opened.id,
            "parent_id": opened.parent_id,
            "name": opened.name,
            "kind": opened.kind,
            "start_time": _iso(start),
            "end_time": _iso(end),
            "duration_ms": round((end - start) * 1000, 3),
        }

    def _span(self, run: _Run, event: Event, opened: _Open) -> Record:
        record = self._base(run, event, opened, opened.start, event.time)
        error = describe_error(event.error) if event.error is not None else None
        metadata = {str(k): self._jsonable(v) for k, v in (event.metadata or {}).items()}
        record.update(
            type="span",
            input=opened.input,
            output=self._jsonable(event.output),
            level="ERROR" if error is not None else "DEFAULT",
            error=error,
            status=event.status,
            metadata=metadata,
        )
        if opened.kind == "run":
            record.update(
                user_id=run.root.get("user_id"),
                session_id=run.root.get("session_id"),
                tags=list(run.root.get("tags") or ()),
                metadata={
                    **{
                        str(k): self._jsonable(v)
                        for k, v in (run.root.get("metadata") or {}).items()
                    },
                    **metadata,
                },
            )
        return record

    def _generation(
        self, run: _Run, event: Event, owner: _Open | None, name: str, llm: LLMCall
    ) -> Record:
        opened = _Open(
            new_span_id(), owner.id if owner else None, name, "generation", llm.started, None
        )
        record = self._base(run, event, opened, llm.started, llm.ended)
        ttft = llm.time_to_first_token
        record.update(
            type="generation",
            input=self._jsonable(llm.messages),
            output=self._jsonable(llm.output),
            level="ERROR" if llm.error else "DEFAULT",
            error=llm.error,
            status=None,
            metadata={str(k): self._jsonable(v) for k, v in (event.metadata or {}).items()},
            model=llm.response_model or llm.model,
            model_parameters={str(k): self._jsonable(v) for k, v in llm.params.items()} or None,
            usage=usage_details(llm.usage),
            time_to_first_token_ms=None if ttft is None else round(ttft * 1000, 3),
        )
        return record

    def _emit(self, record: Record) -> None:
        try:
            self._sink(record)
        except Exception:
            logger.warning("could not store a trace record", exc_info=True)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat()
