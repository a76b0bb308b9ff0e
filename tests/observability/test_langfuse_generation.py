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


def test_cached_tokens_use_the_usage_key_the_langfuse_sdk_uses_for_openai() -> None:
    # The installed SDK's own conversion of an OpenAI usage (its LangChain handler): cached
    # prompt tokens become ``input_cached_tokens`` and leave ``input``. Reasoning tokens keep
    # the same pattern, ``output_reasoning_tokens``, a usage type of Langfuse's default OpenAI
    # prices (worker/src/constants/default-model-prices.json: o1, o3, gpt-5). The extra "x"
    # keeps the SDK from passing an exact OpenAI usage through for its server to convert.
    from langfuse.langchain.CallbackHandler import _parse_usage_model

    from hush.observability.langfuse import langfuse_usage

    openai_usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 300,
        "total_tokens": 1300,
        "prompt_tokens_details": {"cached_tokens": 800},
        "x": 0,
    }
    sdk = _parse_usage_model(openai_usage)
    ours = langfuse_usage(
        {
            "prompt_tokens": 1000,
            "completion_tokens": 300,
            "total_tokens": 1300,
            "cached_tokens": 800,
        }
    )
    assert ours is not None
    for key in ("input", "output", "total", "input_cached_tokens"):
        assert ours[key] == sdk[key], key
    with_reasoning = langfuse_usage({"completion_tokens": 300, "reasoning_tokens": 200})
    assert with_reasoning == {"output": 100, "output_reasoning_tokens": 200, "total": 300}
