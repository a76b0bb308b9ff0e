"""The chat-completions API as seen by the real ``openai`` client."""

import json
from enum import StrEnum
from typing import Literal

import openai
import pydantic
import pytest

from hush.testing import MockLLMServer

USER = [{"role": "user", "content": "Summarise the quarterly report"}]


async def test_plain_completion(client: openai.AsyncOpenAI) -> None:
    messages = [{"role": "system", "content": "You are terse."}, *USER]
    reply = await client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    choice = reply.choices[0]
    assert choice.message.content == "[gpt-4o-mini] reply to: Summarise the quarterly report"
    assert choice.finish_reason == "stop"
    assert reply.model == "gpt-4o-mini"
    chars = len("You are terse.") + len("Summarise the quarterly report")
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == chars // 4 + 3 * 2
    assert reply.usage.completion_tokens == (len(choice.message.content) + 3) // 4
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


async def test_replies_are_deterministic_and_truncated(client: openai.AsyncOpenAI) -> None:
    long = [{"role": "user", "content": "word " * 100}]
    first = await client.chat.completions.create(model="any-model", messages=long)
    second = await client.chat.completions.create(model="any-model", messages=long)
    content = first.choices[0].message.content
    assert content == second.choices[0].message.content
    assert content is not None and content.endswith("...")
    assert len(content) < 120


async def test_n_choices(client: openai.AsyncOpenAI) -> None:
    reply = await client.chat.completions.create(model="m", messages=USER, n=3)
    assert [c.index for c in reply.choices] == [0, 1, 2]


async def test_models_list_and_retrieve(server: MockLLMServer, client: openai.AsyncOpenAI) -> None:
    server.configure(models=["alpha", "beta"])
    page = await client.models.list()
    assert [m.id for m in page.data] == ["alpha", "beta"]
    assert (await client.models.retrieve("beta")).id == "beta"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("gamma")


async def test_streaming_with_usage(client: openai.AsyncOpenAI) -> None:
    plain = await client.chat.completions.create(model="m", messages=USER)
    stream = await client.chat.completions.create(
        model="m",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert len([c for c in chunks if c.choices]) > 3
    finals = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finals == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage == plain.usage


async def test_streaming_without_usage(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    chunks = [chunk async for chunk in stream]
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_max_tokens_truncates(client: openai.AsyncOpenAI) -> None:
    reply = await client.chat.completions.create(model="m", messages=USER, max_tokens=2)
    assert reply.choices[0].finish_reason == "length"
    assert reply.choices[0].message.content == "[m] repl"
    assert reply.usage is not None and reply.usage.completion_tokens == 2


class Mood(StrEnum):
    HAPPY = "happy"
    SAD = "sad"


class Address(pydantic.BaseModel):
    street: str
    number: int


class Person(pydantic.BaseModel):
    name: str
    age: int
    height: float
    active: bool
    mood: Mood
    kind: Literal["customer", "staff"]
    nickname: str | None
    addresses: list[Address]
    home: Address


async def test_parse_with_pydantic_model(client: openai.AsyncOpenAI) -> None:
    reply = await client.chat.completions.parse(model="m", messages=USER, response_format=Person)
    person = reply.choices[0].message.parsed
    assert isinstance(person, Person)
    assert person.mood is Mood.HAPPY and person.kind == "customer"
    assert person.nickname == "nickname"
    assert len(person.addresses) == 1 and person.home.street == "street"


async def test_beta_parse(client: openai.AsyncOpenAI) -> None:
    reply = await client.beta.chat.completions.parse(
        model="m", messages=USER, response_format=Address
    )
    assert reply.choices[0].message.parsed == Address(street="street", number=0)


async def test_json_object(client: openai.AsyncOpenAI) -> None:
    reply = await client.chat.completions.create(
        model="m",
        messages=USER,
        response_format={"type": "json_object"},
    )
    data = json.loads(reply.choices[0].message.content or "")
    assert isinstance(data, dict) and data["reply"] == "Summarise the quarterly report"


TOOLS = [
    {"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}},
    {
        "type": "function",
        "function": {
            "name": "weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city"],
            },
        },
    },
]


async def test_tool_call_marker(client: openai.AsyncOpenAI) -> None:
    messages = [{"role": "user", "content": "What time is it? [[tool:now]]"}]
    reply = await client.chat.completions.create(model="m", messages=messages, tools=TOOLS)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.function.name == "now" and call.function.arguments == "{}"
    plain = await client.chat.completions.create(model="m", messages=USER, tools=TOOLS)
    assert plain.choices[0].message.tool_calls is None


async def test_tool_call_arguments_follow_schema(client: openai.AsyncOpenAI) -> None:
    messages = [{"role": "user", "content": "[[tool:weather]]"}]
    reply = await client.chat.completions.create(model="m", messages=messages, tools=TOOLS)
    calls = reply.choices[0].message.tool_calls
    assert calls is not None
    assert json.loads(calls[0].function.arguments) == {"city": "city"}


async def test_tool_call_streamed(client: openai.AsyncOpenAI) -> None:
    messages = [{"role": "user", "content": "[[tool:now]]"}]
    stream = await client.chat.completions.create(
        model="m",
        messages=messages,
        tools=TOOLS,
        stream=True,
    )
    chunks = [chunk async for chunk in stream]
    deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].function is not None and deltas[0].function.name == "now"
    assert "".join((d.function.arguments or "") for d in deltas if d.function) == "{}"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_bad_request_body(server: MockLLMServer, client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="messages"):
        await client.chat.completions.create(model="m", messages=[])
    assert server.status_counts == {400: 1}


async def test_api_key_checked_when_configured(server: MockLLMServer) -> None:
    server.configure(api_key="secret")
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="wrong", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError):
            await bad.chat.completions.create(model="m", messages=USER)
    async with openai.AsyncOpenAI(
        base_url=server.base_url, api_key="secret", max_retries=0
    ) as good:
        await good.chat.completions.create(model="m", messages=USER)


async def test_tool_choice(client: openai.AsyncOpenAI) -> None:
    named = {"type": "function", "function": {"name": "weather"}}
    reply = await client.chat.completions.create(
        model="m", messages=USER, tools=TOOLS, tool_choice=named
    )
    calls = reply.choices[0].message.tool_calls
    assert calls is not None and calls[0].function.name == "weather"
    reply = await client.chat.completions.create(
        model="m", messages=USER, tools=TOOLS, tool_choice="required"
    )
    calls = reply.choices[0].message.tool_calls
    assert calls is not None and calls[0].function.name == "now"
    marked = [{"role": "user", "content": "[[tool:now]]"}]
    reply = await client.chat.completions.create(
        model="m", messages=marked, tools=TOOLS, tool_choice="none"
    )
    assert reply.choices[0].message.tool_calls is None
