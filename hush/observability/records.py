"""A tracer that turns every finished span and generation into one plain dict.

Record fields: ``type`` (``"span"`` or ``"generation"``), ``run_id``,
``trace_id``, ``id``, ``parent_id``, ``name``, ``kind`` (``"run"`` for the root,
``"generation"`` for LLM calls, else the engine's kind), ``start_time`` and
``end_time`` (ISO 8601, UTC), ``duration_ms``, ``input``, ``output``, ``level``
(``"DEFAULT"`` or ``"ERROR"``), ``error``, ``status``, ``metadata``; the root
adds ``user_id``, ``session_id`` and ``tags``; generations add ``model``,
``model_parameters`` and ``usage`` (``{"input", "output", "total"}``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from hush.observability.ids import new_span_id, trace_id_for
from hush.observability.serialize import (
    DEFAULT_MAX_CHARS,
    error_message,
    to_jsonable,
    usage_details,
)
from hush.observability.tracer import SpanKind

logger = logging.getLogger(__name__)

Record = dict[str, Any]
RecordSink = Callable[[Record], None]
"""Receives each record as its span ends; called from any task or thread."""


class RecordingTracer:
    """Builds one :data:`Record` per span end and hands it to ``sink``."""

    def __init__(self, sink: RecordSink, *, max_field_chars: int = DEFAULT_MAX_CHARS) -> None:
        self._run_sink = _GuardedSink(sink)
        self.max_field_chars = max_field_chars

    def start_run(
        self,
        name: str,
        *,
        run_id: str,
        input: Any = None,
        user_id: str | None = None,
        session_id: str | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> RecordSpan:
        """Start the trace of one run and return its root span."""
        run = _RunInfo(self._run_sink, self.max_field_chars, run_id)
        root_fields = {
            "user_id": user_id,
            "session_id": session_id,
            "tags": list(tags or ()),
        }
        return RecordSpan(run, None, name, "run", input, root_fields, run.mapping(metadata))

    async def flush(self, timeout: float) -> None:
        """Nothing to export; subclasses that buffer override this."""


class _RunInfo:
    __slots__ = ("max_chars", "run_id", "sink", "trace_id")

    def __init__(self, sink: _GuardedSink, max_chars: int, run_id: str) -> None:
        self.sink = sink
        self.max_chars = max_chars
        self.run_id = run_id
        self.trace_id = trace_id_for(run_id)

    def jsonable(self, value: Any) -> Any:
        return None if value is None else to_jsonable(value, max_chars=self.max_chars)

    def mapping(self, value: Mapping[str, Any] | None) -> dict[str, Any]:
        return {str(k): self.jsonable(v) for k, v in (value or {}).items()}


class _Timed:
    """Identity and timing shared by spans and generations."""

    __slots__ = ("_ended", "_start_perf", "_start_wall", "id", "kind", "name", "parent_id", "run")

    def __init__(self, run: _RunInfo, parent_id: str | None, name: str, kind: str) -> None:
        self.run = run
        self.id = new_span_id()
        self.parent_id = parent_id
        self.name = name
        self.kind = kind
        self._start_wall = time.time()
        self._start_perf = time.perf_counter()
        self._ended = False

    def _claim_end(self) -> bool:
        if self._ended:
            return False
        self._ended = True
        return True

    def _record(self, type_: str, error: BaseException | None) -> Record:
        duration = time.perf_counter() - self._start_perf
        return {
            "type": type_,
            "run_id": self.run.run_id,
            "trace_id": self.run.trace_id,
            "id": self.id,
            "parent_id": self.parent_id,
            "name": self.name,
            "kind": self.kind,
            "start_time": _iso(self._start_wall),
            "end_time": _iso(self._start_wall + duration),
            "duration_ms": round(duration * 1000, 3),
            "level": "ERROR" if error is not None else "DEFAULT",
            "error": error_message(error) if error is not None else None,
        }


class RecordSpan(_Timed):
    """A span whose record is written when it ends."""

    __slots__ = ("_extra", "_input", "_metadata")

    def __init__(
        self,
        run: _RunInfo,
        parent_id: str | None,
        name: str,
        kind: str,
        input: Any,
        extra: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(run, parent_id, name, kind)
        self._input = run.jsonable(input)
        self._extra = dict(extra or {})
        self._metadata = dict(metadata or {})

    def child(self, name: str, *, kind: SpanKind, input: Any = None) -> RecordSpan:
        """Start a child span."""
        return RecordSpan(self.run, self.id, name, kind, input)

    def generation(
        self,
        name: str,
        *,
        model: str,
        input: Any,
        model_parameters: Mapping[str, Any] | None = None,
    ) -> RecordGeneration:
        """Start an LLM generation under this span."""
        return RecordGeneration(self.run, self.id, name, model, input, model_parameters)

    def end(
        self,
        *,
        output: Any = None,
        error: BaseException | None = None,
        status: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Write this span's record."""
        if not self._claim_end():
            return
        try:
            record = self._record("span", error)
            record.update(
                input=self._input,
                output=self.run.jsonable(output),
                status=status,
                metadata={**self._metadata, **self.run.mapping(metadata)},
                **self._extra,
            )
        except Exception:
            logger.warning("could not build the record of span %r", self.name, exc_info=True)
            return
        self.run.sink(record)


class RecordGeneration(_Timed):
    """An LLM call whose record is written when it ends."""

    __slots__ = ("_input", "_model", "_model_parameters")

    def __init__(
        self,
        run: _RunInfo,
        parent_id: str,
        name: str,
        model: str,
        input: Any,
        model_parameters: Mapping[str, Any] | None,
    ) -> None:
        super().__init__(run, parent_id, name, "generation")
        self._model = model
        self._input = run.jsonable(input)
        self._model_parameters = run.mapping(model_parameters) or None

    def end(
        self,
        *,
        output: Any = None,
        usage: Mapping[str, int] | None = None,
        model: str | None = None,
        error: BaseException | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Write this generation's record."""
        if not self._claim_end():
            return
        try:
            record = self._record("generation", error)
            record.update(
                input=self._input,
                output=self.run.jsonable(output),
                status=None,
                metadata=self.run.mapping(metadata),
                model=model or self._model,
                model_parameters=self._model_parameters,
                usage=usage_details(usage),
            )
        except Exception:
            logger.warning("could not build the record of generation %r", self.name, exc_info=True)
            return
        self.run.sink(record)


class _GuardedSink:
    """Calls the sink; the first failure is a warning, later ones are debug messages."""

    def __init__(self, sink: RecordSink) -> None:
        self._sink = sink
        self._lock = threading.Lock()
        self._failures = 0

    def __call__(self, record: Record) -> None:
        try:
            self._sink(record)
        except Exception:
            with self._lock:
                self._failures += 1
                first = self._failures == 1
            logger.log(
                logging.WARNING if first else logging.DEBUG,
                "could not store a trace record",
                exc_info=first,
            )


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat()
