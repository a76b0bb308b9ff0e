"""Feed a tracer the events the engine emits, span by span, without a graph."""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hush.core.errors import NodeError
from hush.core.events import Event, LLMCall, Subscriber
from hush.observability import Tracer

_ids = itertools.count()


def start_run(tracer: Tracer, name: str, *, run_id: str, input: Any = None, **fields: Any) -> Hand:
    """Emit a ``run_start`` (``fields``: user_id, session_id, tags, metadata) and return its span."""
    start = Event(
        "run_start", name, run_id, type="run", name=name, input=input, node=name, metadata=fields
    )
    sink = tracer.subscribe(start)
    sink(start)
    return Hand(sink, run_id, name, None, name, "run")


@dataclass
class Hand:
    sink: Subscriber
    run_id: str
    path: str
    parent: str | None
    name: str
    type: Any

    def child(self, name: str, *, kind: str, input: Any = None) -> Hand:
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
        return Hand(self.sink, self.run_id, path, self.path, name, kind)

    def end(self, *, output: Any = None, error: BaseException | None = None, **extra: Any) -> None:
        failure = NodeError.from_exception(error, self.path) if error is not None else None
        kind = "run_end" if self.parent is None else "node_end"
        self.sink(
            Event(
                kind,
                self.path,
                self.run_id,
                parent=self.parent,
                type=self.type,
                name=self.name,
                output=output,
                error=failure,
                node=self.path,
                **extra,
            )
        )

    def generation(
        self,
        name: str,
        *,
        model: str,
        input: Any,
        model_parameters: Mapping[str, Any] | None = None,
    ) -> Generation:
        return Generation(self, name, model, input, dict(model_parameters or {}), time.time())


@dataclass
class Generation:
    span: Hand
    name: str
    model: str
    input: Any
    params: dict[str, Any]
    started: float

    def end(
        self,
        *,
        output: Any = None,
        usage: Mapping[str, int] | None = None,
        model: str | None = None,
        error: BaseException | None = None,
    ) -> None:
        call = LLMCall(
            model=self.model,
            messages=self.input,
            params=self.params,
            started=self.started,
            ended=time.time(),
            response_model=model,
            output=output,
            usage=usage,
            error=None if error is None else _described(error, self.span.path),
        )
        span = self.span
        span.sink(Event("llm", span.path, span.run_id, name=self.name, llm=call, node=span.path))


def _described(error: BaseException, path: str) -> str:
    failure = NodeError.from_exception(error, path)
    return f"{failure.type}: {failure.message}"
