"""What one LLM call becomes in Langfuse: its name, usage and cost attributes."""

from __future__ import annotations

import json
from collections.abc import Callable

from hush.core.events import Event, LLMCall
from hush.observability import LangfuseTracer
from hush.observability.spans import RunSpans

COST = "langfuse.observation.cost_details"


def _attributes(tracer: LangfuseTracer, llm: LLMCall) -> dict[str, object]:
    start = Event(kind="run_start", path="g", run_id="r")  # type: ignore[arg-type]
    event = Event(kind="llm", path="g/answer", run_id="r", name="answer", llm=llm)  # type: ignore[arg-type]
    run = RunSpans(start=start, trace_id=1, fields={})
    assert tracer.generation_name(event, llm) == "chat gpt-4o-mini"
    return tracer.generation_attributes(run, event, llm)


def _call(**fields: object) -> LLMCall:
    return LLMCall(model="gpt-4o-mini", messages=[], params={}, started=1.0, ended=2.0, **fields)  # type: ignore[arg-type]


def test_an_unknown_cost_or_a_missing_usage_is_no_zero_cost(
    make_tracer: Callable[..., LangfuseTracer],
) -> None:
    tracer = make_tracer("http://127.0.0.1:9")
    assert COST not in _attributes(tracer, _call(cost=None))
    assert COST not in _attributes(tracer, _call(cost=0.0, usage=None))
    priced = _attributes(tracer, _call(cost=0.25, usage={"prompt_tokens": 3}))
    assert json.loads(str(priced[COST])) == {"total": 0.25}


def test_an_estimated_usage_is_marked(make_tracer: Callable[..., LangfuseTracer]) -> None:
    tracer = make_tracer("http://127.0.0.1:9")
    usage = {"prompt_tokens": 3, "completion_tokens": 4, "estimated": True}
    attributes = _attributes(tracer, _call(usage=usage))
    assert attributes["langfuse.observation.metadata.usage_estimated"] == "true"
    assert attributes["hush.usage_estimated"] is True
