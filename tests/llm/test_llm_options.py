"""LLMNode options that make no sense are refused when the graph is written, naming the node;
the ones that do make sense reach the server (real HTTP to the local server)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from openai.types.chat.completion_create_params import CompletionCreateParamsBase
from pydantic import BaseModel, ValidationError

from hush.core import END, PARENT, START, GraphBuildError, GraphNode, Hush
from hush.core.errors import GraphDefinitionError
from hush.core.policies import RetryPolicy
from hush.providers import LLMNode
from hush.providers.errors import ResourceError
from hush.providers.params import GENERATION_PARAMS
from hush.providers.resources import ResourceRegistry
from hush.testing import MockLLMServer

MESSAGES = [{"role": "user", "content": "hi"}]


def make(**options: Any) -> LLMNode:
    """An LLMNode named 'ask' in a throwaway graph, built with ``options``."""
    inputs = {"messages": MESSAGES, **options.pop("inputs", {})}
    with GraphNode(name="g"):
        return LLMNode(name="ask", resource_key="nowhere", inputs=inputs, **options)


def one_call(resource: str, **options: Any) -> GraphNode:
    with GraphNode(name="g") as graph:
        llm = LLMNode(
            name="llm",
            resource_key=resource,
            inputs={"messages": MESSAGES},
            outputs={"*": PARENT},
            **options,
        )
        START >> llm >> END
    return graph


@pytest.mark.parametrize(
    ("options", "named", "suggested"),
    [
        ({"temprature": 0.2}, "'temprature'", "Did you mean 'temperature'?"),
        ({"max_token": 10}, "'max_token'", "Did you mean 'max_tokens'?"),
        ({"inputs": {"top_pp": 0.5}}, "input 'top_pp'", "Did you mean 'top_p'?"),
    ],
)
def test_an_unknown_keyword_or_input_is_a_build_error_with_the_close_name(
    options: dict[str, Any], named: str, suggested: str
) -> None:
    with pytest.raises(GraphDefinitionError) as caught:
        make(**options)
    message = str(caught.value)
    assert "LLMNode 'ask'" in message and named in message and suggested in message
    assert "extra_body" in message


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"ratios": [3, 1]}, "load balancing"),
        ({"batch_mode": True}, "Batch API"),
        ({"model": "gpt-4o"}, "the model comes from the resource"),
        ({"stream_options": {"include_usage": True}}, "usage in the stream"),
        ({"inputs": {"stream": True}}, "stream is a keyword"),
        ({"inputs": {"timeout": 3}}, "timeout is a keyword"),
        ({"extra_body": ["top_k", 3]}, "extra_body must be a dict"),
    ],
)
def test_upstream_only_and_hush_owned_keywords_get_a_clear_message(
    options: dict[str, Any], says: str
) -> None:
    with pytest.raises(GraphDefinitionError, match="LLMNode 'ask'") as caught:
        make(**options)
    assert says in str(caught.value)


def test_the_known_parameters_are_the_installed_sdks() -> None:
    sdk = set(CompletionCreateParamsBase.__annotations__)
    hush_sets = {"model", "messages", "stream", "stream_options"}
    expected = (sdk - hush_sets) | {"extra_body", "extra_headers", "extra_query"}
    assert expected == GENERATION_PARAMS
    for name in sorted(GENERATION_PARAMS - {"response_format", "tools"}):
        make(**{name: None})


async def test_extra_body_still_sends_provider_fields_and_known_ones_pass(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    name = register("options", server.base_url)
    result = await Hush(
        one_call(name, temperature=0.3, seed=7, extra_body={"top_k": 5, "min_p": 0.1})
    ).run()
    assert result.get("error") is None and result["content"]
    body = server.requests[0].body
    assert body["temperature"] == 0.3 and body["seed"] == 7
    assert body["top_k"] == 5 and body["min_p"] == 0.1


async def test_fallback_given_as_one_string_is_one_resource(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    down = MockLLMServer()
    await down.start()
    dead_url = down.base_url
    await down.stop()
    register("down-one", dead_url, max_retries=0, timeout=1)
    backup = register("backup-one", server.base_url, model="backup-model")

    node = make(fallback="llm:backup-one")
    assert node.fallback == ["llm:backup-one"]
    result = await Hush(one_call("down-one", fallback=f"llm:{backup}")).run()

    assert result.get("error") is None and result["content"]
    assert result["content"] == "[backup-model] reply to: hi"


def test_an_unknown_fallback_string_is_named_whole() -> None:
    with GraphNode(name="g") as graph:
        llm = LLMNode(
            name="ask", resource_key="nowhere", inputs={"messages": MESSAGES}, fallback="llm:nope"
        )
        START >> llm >> END
    with pytest.raises(GraphBuildError) as caught:
        graph.build()
    assert "'llm:nope'" in str(caught.value)
    assert "'llm:n'" not in str(caught.value)


class Verdict(BaseModel):
    label: str


@pytest.mark.parametrize(
    ("fmt", "says"),
    [
        (5, "response_format must be a pydantic model class or a dict"),
        ("json", "response_format must be a pydantic model class or a dict"),
        (Verdict(label="x"), "pass the class itself"),
        ({"schema": {}}, "needs a 'type'"),
    ],
)
def test_a_response_format_that_is_not_a_model_or_a_format_dict_is_a_build_error(
    fmt: Any, says: str
) -> None:
    with pytest.raises(GraphDefinitionError, match="LLMNode 'ask'") as caught:
        make(response_format=fmt)
    assert says in str(caught.value)


@pytest.mark.parametrize("tools", ["search", {"type": "function"}, ["search"]])
def test_tools_must_be_a_list_of_dicts(tools: Any) -> None:
    with pytest.raises(GraphDefinitionError, match="LLMNode 'ask': tool"):
        make(tools=tools)


@pytest.mark.parametrize("field", ["jitter", "initial", "max_delay", "multiplier"])
@pytest.mark.parametrize("value", [math.inf, math.nan, -1.0])
def test_retry_policy_refuses_infinite_nan_and_negative_numbers(field: str, value: float) -> None:
    with pytest.raises(ValidationError) as caught:
        RetryPolicy(**{field: value})
    assert field in str(caught.value)
    with pytest.raises(GraphDefinitionError, match=f"LLMNode 'ask': bad retry: {field}"):
        make(retry={field: value})


def test_a_long_retry_policy_never_overflows_its_backoff() -> None:
    policy = RetryPolicy(attempts=5000, max_delay=7.0, jitter=0.0)
    assert policy.delay(4000) == 7.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_retry_wait", ".inf"),
        ("timeout", ".inf"),
        ("backoff_max", ".nan"),
        ("backoff_base", "-0.5"),
        ("rpm", ".inf"),
        ("tpm", "-100"),
        ("max_concurrency", ".inf"),
        ("input_cost_per_mtok", ".inf"),
    ],
)
def test_a_resource_refuses_non_finite_and_negative_numbers_naming_itself_and_the_field(
    tmp_path: Path, field: str, value: str
) -> None:
    path = tmp_path / "resources.yaml"
    path.write_text(
        f"llm:odd:\n  model: m\n  {field}: {value}\n"
        + ("  output_cost_per_mtok: 1\n" if "cost" in field else "")
    )
    with pytest.raises(ResourceError) as caught:
        ResourceRegistry(path).get_llm("odd")
    message = str(caught.value)
    assert str(path) in message and "llm:odd" in message and f"field '{field}'" in message
