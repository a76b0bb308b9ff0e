"""Spans opened by hand (``tracer.start_run(...)``), emitting the events the engine emits."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from hush.core.errors import NodeError
from hush.core.events import Event, LLMCall, SpanType, Subscriber
from hush.observability.tracer import SpanKind, Tracer

_ids = itertools.count()


def start_run(
    tracer: Tracer,
    name: str,
    *,
    run_id: str,
    input: Any = None,
    user_id: str | None = None,
    session_id: str | None = None,
    tags: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> RunSpan:
    """Open the root span of a run traced by hand."""
    start = Event(
        "run_start",
        name,
        run_id,
        type="run",
        name=name,
        input=input,
        node=name,
        metadata={
            "user_id": user_id,
            "session_id": session_id,
            "tags": list(tags or ()),
            "metadata": dict(metadata or {}),
        },
    )
    sink = tracer.subscribe(start)
    sink(start)
    return RunSpan(sink, run_id, name, None, name, "run")


class RunSpan:
    """A span opened by hand; ``end`` emits its ``node_end`` (``run_end`` for the root)."""

    __slots__ = ("_ended", "_lock", "name", "parent", "path", "run_id", "sink", "type")

    def __init__(
        self,
        sink: Subscriber,
        run_id: str,
        path: str,
        parent: str | None,
        name: str,
        type: SpanType,
    ) -> None:
        self.sink = sink
        self.run_id = run_id
        self.path = path
        self.parent = parent
        self.name = name
        self.type = type
        self._ended = False
        self._lock = threading.Lock()

    def child(self, name: str, *, kind: SpanKind, input: Any = None) -> RunSpan:
        """Open a child span."""
        path = f"{self.path}/{name}#{next(_ids)}"
        self.sink(
            Event(
                "node_start",
                path,
                self.run_id,
                parent=self.path,
                type=kind,
                name=name,
                input=input,
                node=path,
            )
        )
        return RunSpan(self.sink, self.run_id, path, self.path, name, kind)

    def generation(
        self,
        name: str,
        *,
        model: str,
        input: Any,
        model_parameters: Mapping[str, Any] | None = None,
    ) -> RunGeneration:
        """Open an LLM generation under this span."""
        return RunGeneration(self, name, model, input, model_parameters)

    def end(
        self,
        *,
        output: Any = None,
        error: BaseException | None = None,
        status: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Close the span (once)."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
        failure = NodeError.from_exception(error, self.path) if error is not None else None
        self.sink(
            Event(
                "run_end" if self.parent is None else "node_end",
                self.path,
                self.run_id,
                parent=self.parent,
                type=self.type,
                name=self.name,
                output=output,
                status=status,
                error=failure,
                node=self.path,
                metadata=metadata,
            )
        )


class RunGeneration:
    """An LLM call opened by hand; ``end`` emits its ``llm`` event."""

    __slots__ = ("_ended", "_lock", "input", "model", "name", "params", "span", "started")

    def __init__(
        self,
        span: RunSpan,
        name: str,
        model: str,
        input: Any,
        params: Mapping[str, Any] | None,
    ) -> None:
        self.span = span
        self.name = name
        self.model = model
        self.input = input
        self.params = dict(params or {})
        self.started = time.time()
        self._ended = False
        self._lock = threading.Lock()

    def end(
        self,
        *,
        output: Any = None,
        usage: Mapping[str, int] | None = None,
        model: str | None = None,
        error: BaseException | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Close the generation (once)."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
        failure = NodeError.from_exception(error, self.span.path) if error is not None else None
        call = LLMCall(
            model=self.model,
            messages=self.input,
            params=self.params,
            started=self.started,
            ended=time.time(),
            response_model=model,
            output=output,
            usage=usage,
            error=f"{failure.type}: {failure.message}" if failure is not None else None,
        )
        span = self.span
        self.span.sink(
            Event(
                "llm",
                span.path,
                span.run_id,
                name=self.name,
                llm=call,
                node=span.path,
                metadata=metadata,
            )
        )
