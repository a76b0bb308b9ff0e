"""Cost on every call and run, token and spend budgets, and the response cache, over real HTTP
to the local server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from hush.core import END, PARENT, START, CodeNode, Each, GraphNode, Hush
from hush.core.errors import RunOptionError
from hush.core.nodes.iteration import MapNode
from hush.providers import LLMNode, ResponseCache
from hush.providers.pricing import price_of
from hush.providers.resources import LLMResource
from hush.testing import MockLLMServer

IN_PRICE, OUT_PRICE = 2.5, 10.0
CAP = 5


def batch(resource: str, *, cap: int = CAP, **llm: Any) -> GraphNode:
    with GraphNode(name="spend") as graph:
        with MapNode(name="items", inputs={"q": Each(PARENT["qs"])}, max_concurrency=cap) as items:
            node = LLMNode(
                name="llm",
                resource_key=resource,
                inputs={"messages": [{"role": "user", "content": PARENT["q"]}]},
                **llm,
            )
            for key in ("content", "usage", "cost", "cached", "error"):
                node[key] >> PARENT[key]
            START >> node >> END
        for key in ("content", "usage", "cost", "cached", "error"):
            items[key] >> PARENT[key + "s"]
        START >> items >> END
    return graph


def questions(n: int) -> list[str]:
    return [f"question number {i}: what is {i} plus {i}?" for i in range(n)]


def call_cost(usage: dict[str, int]) -> float:
    return (usage["prompt_tokens"] * IN_PRICE + usage["completion_tokens"] * OUT_PRICE) / 1e6


async def test_cost_per_call_and_per_run_is_usage_times_price(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    name = register(
        "priced", server.base_url, input_cost_per_mtok=IN_PRICE, output_cost_per_mtok=OUT_PRICE
    )
    result = await Hush(batch(name)).run({"qs": questions(8)})
    state = result["$state"]
    assert result["errors"] == [None] * 8
    for usage, cost in zip(result["usages"], result["costs"], strict=True):
        assert cost == pytest.approx(call_cost(usage))
    total = sum(call_cost(u) for u in result["usages"])
    assert total > 0
    assert state.cost == pytest.approx(total)
    ledger = state.llm[f"llm:{name}"]
    assert ledger["cost"] == pytest.approx(total)
    assert ledger["calls"] == 8 and ledger["cached"] == 0
    assert state.tokens == sum(u["total_tokens"] for u in result["usages"])
    assert state.to_dict()["cost"] == pytest.approx(total)


async def test_a_resource_without_price_costs_none_and_the_run_zero(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    name = register("unpriced", server.base_url, model="gpt-4o-mini")
    result = await Hush(batch(name)).run({"qs": questions(3)})
    assert result["costs"] == [None] * 3
    assert result["$state"].cost == 0.0
    assert result["$state"].llm[f"llm:{name}"]["cost"] is None


def test_known_models_at_known_endpoints_get_the_price_tables_price() -> None:
    from genai_prices import Usage, calc_price

    openai = LLMResource(base_url="https://api.openai.com/v1", model="gpt-4o-mini")
    price = price_of(openai)
    assert price is not None and price.source == "genai-prices"
    expected = calc_price(
        Usage(input_tokens=1_000_000, output_tokens=1_000_000),
        "gpt-4o-mini",
        provider_api_url="https://api.openai.com/v1",
    )
    assert price.cost(1_000_000, 1_000_000) == pytest.approx(float(expected.total_price))
    local = LLMResource(base_url="http://127.0.0.1:8000/v1", model="gpt-4o-mini")
    assert price_of(local) is None, "a local server's model is not guessed from its name"
    unknown = LLMResource(base_url="https://api.openai.com/v1", model="my-finetune-xyz")
    assert price_of(unknown) is None
    mine = LLMResource(model="gpt-4o-mini", input_cost_per_mtok=1, output_cost_per_mtok=2)
    assert price_of(mine) is not None and price_of(mine).source == "resource"  # type: ignore[union-attr]


def test_prices_come_in_pairs() -> None:
    with pytest.raises(ValueError, match="both input_cost_per_mtok and output_cost_per_mtok"):
        LLMResource(model="m", input_cost_per_mtok=1.0)
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        LLMResource(model="m", input_cost_per_mtok=-1.0, output_cost_per_mtok=1.0)


async def test_a_token_budget_stops_sending_and_a_larger_one_resumes(
    server: MockLLMServer, register: Callable[..., str], tmp_path: Path
) -> None:
    name = register("budgeted", server.base_url)
    engine = Hush(batch(name))
    qs = questions(60)
    probe = await Hush(batch(name)).run({"qs": qs[:3]})
    per_call = max(u["total_tokens"] for u in probe["usages"])
    server.reset()

    db = tmp_path / "run.db"
    budget = 20 * per_call
    first = await engine.run({"qs": qs}, checkpoint=db, run_id="budget", max_total_tokens=budget)
    sent = server.total_requests
    answered = [i for i, e in enumerate(first["errors"]) if e is None]
    refused = [e for e in first["errors"] if e is not None]
    assert sent <= 20 + CAP, f"{sent} requests for a budget of about 20 calls"
    assert len(answered) >= 15, f"only {len(answered)} calls fit a budget of about 20"
    assert len(answered) == sent
    assert refused and all(e.type == "BudgetExceededError" for e in refused)
    assert f"token budget of {budget:,} reached" in refused[0].message
    assert first["$state"].tokens <= budget
    assert first["$state"].status == "error"

    server.reset()
    second = await engine.run(
        {"qs": qs}, checkpoint=db, run_id="budget", max_total_tokens=200 * per_call
    )
    assert second["errors"] == [None] * 60
    assert server.total_requests == 60 - len(answered), "finished calls were asked again"
    assert [second["contents"][i] for i in answered] == [first["contents"][i] for i in answered]


async def test_requests_in_flight_finish_and_are_counted_at_their_real_usage(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    server.configure(latency=0.05)
    name = register(
        "inflight", server.base_url, input_cost_per_mtok=IN_PRICE, output_cost_per_mtok=OUT_PRICE
    )
    probe = await Hush(batch(name)).run({"qs": questions(2)})
    one = max(probe["costs"])
    reply = max(u["completion_tokens"] for u in probe["usages"])
    server.reset()
    # max_tokens reserves about three replies per request: requests beyond what the
    # reservations leave wait for the ones in flight to settle at their real (smaller)
    # usage, so about 8-10 calls fit a budget of 10.5 calls, not 3.
    engine = Hush(batch(name, cap=10, max_tokens=3 * reply))
    result = await engine.run({"qs": questions(30)}, max_cost=10.5 * one)
    answered = sum(e is None for e in result["errors"])
    assert 7 <= answered <= 10, answered
    assert server.total_requests == answered
    assert result["$state"].cost <= 10.5 * one
    assert server.peak_in_flight >= 2
    refused = [e for e in result["errors"] if e is not None]
    assert all(e.type == "BudgetExceededError" for e in refused)


async def test_a_cost_budget_error_names_the_budget_and_what_was_needed(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    name = register(
        "tiny", server.base_url, input_cost_per_mtok=IN_PRICE, output_cost_per_mtok=OUT_PRICE
    )
    result = await Hush(batch(name)).run({"qs": questions(3)}, max_cost=0.0)
    assert server.total_requests == 0
    messages = {e.message for e in result["errors"]}
    assert len(messages) == 1
    (message,) = messages
    assert message.startswith("budget of 0.00 USD reached: 0.00 spent, ")
    assert " needed (256 reply tokens assumed before the first reply;" in message

    bounded = await Hush(batch(name, max_tokens=50)).run({"qs": questions(1)}, max_cost=1e-5)
    (error,) = bounded["errors"]
    assert error.message.startswith("budget of 0.00001 USD reached: 0.00 spent, 0.000")
    assert error.message.endswith(" needed")


async def test_max_cost_with_an_unpriced_resource_is_refused_before_anything_runs(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    name = register("noprice", server.base_url)
    with pytest.raises(RunOptionError, match=f"resource '{name}' has none"):
        await Hush(batch(name)).run({"qs": questions(2)}, max_cost=1.0)
    assert server.total_requests == 0


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("max_cost", -1, "max_cost must be a number of USD >= 0"),
        ("max_cost", "1", "max_cost must be a number"),
        ("max_cost", float("nan"), "max_cost must be a number"),
        ("max_total_tokens", 1.5, "max_total_tokens must be an int >= 0"),
        ("max_total_tokens", True, "max_total_tokens must be an int >= 0"),
        ("cache", 3, "cache must be a file path, True or a ResponseCache"),
    ],
)
async def test_bad_budget_and_cache_options_are_named(
    option: str, value: Any, message: str
) -> None:
    with GraphNode(name="g") as graph:
        node = CodeNode(name="n", code_fn=lambda: {"v": 1}, outputs={"v": PARENT})
        START >> node >> END
    with pytest.raises(RunOptionError, match=message):
        await Hush(graph).run({}, **{option: value})


async def test_a_second_run_with_the_same_cache_sends_nothing_and_costs_nothing(
    server: MockLLMServer, register: Callable[..., str], tmp_path: Path
) -> None:
    name = register(
        "cached", server.base_url, input_cost_per_mtok=IN_PRICE, output_cost_per_mtok=OUT_PRICE
    )
    cache = tmp_path / "cache.sqlite"
    engine = Hush(batch(name))
    first = await engine.run({"qs": questions(10)}, cache=cache)
    assert server.total_requests == 10
    assert first["cacheds"] == [False] * 10
    assert first["$state"].cost > 0

    server.reset()
    second = await engine.run({"qs": questions(10)}, cache=cache)
    assert server.total_requests == 0
    assert second["contents"] == first["contents"]
    assert second["usages"] == first["usages"]
    assert second["cacheds"] == [True] * 10
    assert second["costs"] == [0.0] * 10
    state = second["$state"]
    assert state.cost == 0.0 and state.tokens == 0
    assert state.llm[f"llm:{name}"]["cached"] == 10 and state.llm[f"llm:{name}"]["calls"] == 0

    server.reset()
    third = await engine.run({"qs": [*questions(10), "a new question"]}, cache=cache)
    assert server.total_requests == 1
    assert third["cacheds"] == [True] * 10 + [False]


async def test_generation_parameters_are_part_of_the_key_and_nodes_can_opt_out(
    server: MockLLMServer, register: Callable[..., str], tmp_path: Path
) -> None:
    name = register("keys", server.base_url)
    cache = ResponseCache(tmp_path / "cache.sqlite")
    await Hush(batch(name, temperature=0.0)).run({"qs": questions(3)}, cache=cache)
    assert server.total_requests == 3
    await Hush(batch(name, temperature=0.7)).run({"qs": questions(3)}, cache=cache)
    assert server.total_requests == 6, "another temperature is another request"
    await Hush(batch(name, temperature=0.0, cache=False)).run({"qs": questions(3)}, cache=cache)
    assert server.total_requests == 9, "cache=False on the node sends every call"
    assert len(cache) == 6


async def test_errors_are_never_cached(
    server: MockLLMServer, register: Callable[..., str], tmp_path: Path
) -> None:
    name = register("errors", server.base_url, max_retries=0)
    cache = tmp_path / "cache.sqlite"
    server.configure(error_rate_500=1.0)
    failed = await Hush(batch(name)).run({"qs": questions(2)}, cache=cache)
    assert all(e is not None for e in failed["errors"])
    assert len(ResponseCache(cache)) == 0
    server.configure(error_rate_500=0.0)
    ok = await Hush(batch(name)).run({"qs": questions(2)}, cache=cache)
    assert ok["errors"] == [None, None] and ok["cacheds"] == [False, False]


class Answer(BaseModel):
    answer: str


async def test_structured_and_streamed_answers_come_back_from_the_cache(
    server: MockLLMServer, register: Callable[..., str], tmp_path: Path
) -> None:
    name = register("shapes", server.base_url)
    cache = tmp_path / "cache.sqlite"
    structured = Hush(batch(name, response_format=Answer))
    first = await structured.run({"qs": questions(2)}, cache=cache)
    server.reset()
    again = await structured.run({"qs": questions(2)}, cache=cache)
    assert server.total_requests == 0
    assert again["contents"] == first["contents"]

    streamed = Hush(batch(name, stream=True))
    await streamed.run({"qs": questions(2)}, cache=cache)
    server.reset()
    tokens: dict[str, str] = {}
    async for event in streamed.stream({"qs": questions(2)}, cache=cache):
        if event.kind == "token":
            tokens[event.path] = tokens.get(event.path, "") + (event.text or "")
        if event.kind == "run_end":
            result = event.result
    assert server.total_requests == 0
    assert result is not None and all(result["cacheds"])
    assert sorted(tokens.values()) == sorted(result["contents"])


def test_the_cache_is_shared_by_concurrent_processes(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    script = textwrap.dedent(
        """
        import sys
        from hush.providers.cache import ResponseCache
        cache = ResponseCache(sys.argv[1])
        for i in range(200):
            cache.put(f"{sys.argv[2]}-{i}", "m", {"content": str(i)})
            assert cache.get(f"{sys.argv[2]}-{i}") == {"content": str(i)}
        """
    )
    workers = [subprocess.Popen([sys.executable, "-c", script, str(path), tag]) for tag in "abcd"]
    assert [w.wait(timeout=120) for w in workers] == [0, 0, 0, 0]
    cache = ResponseCache(path)
    assert len(cache) == 800
    assert cache.clear(model="other") == 0
    assert cache.clear() == 800 and len(cache) == 0


def test_keys_ignore_parameter_order_but_not_values() -> None:
    from hush.providers.cache import request_key

    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    assert request_key(base) == request_key(dict(reversed(list(base.items()))))
    assert request_key(base) != request_key({**base, "temperature": 0.5})
    assert request_key(base) != request_key({**base, "model": "n"})
    assert request_key({**base, "response_format": Answer}) != request_key(base)
    json.dumps(base)


async def test_llm_spans_carry_the_cost_and_the_cache_hit(
    server: MockLLMServer, register: Callable[..., str], tmp_path: Path
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from hush.observability import MemoryTracer, OTLPTracer

    name = register(
        "traced", server.base_url, input_cost_per_mtok=IN_PRICE, output_cost_per_mtok=OUT_PRICE
    )
    engine = Hush(batch(name))
    memory = MemoryTracer()
    first = await engine.run({"qs": questions(2)}, tracer=memory, cache=tmp_path / "c.sqlite")
    generations = memory.find(kind="generation")
    assert sorted(g["cost"] for g in generations) == sorted(first["costs"])
    assert [g["cached"] for g in generations] == [False, False]

    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    await engine.run(
        {"qs": questions(2)},
        tracer=OTLPTracer(tracer_provider=provider),
        cache=tmp_path / "c.sqlite",
    )
    chats = [s for s in exported.get_finished_spans() if s.name.startswith("chat ")]
    assert len(chats) == 2
    assert all(s.attributes["hush.cost_usd"] == 0.0 for s in chats)
    assert all(s.attributes["hush.cached"] is True for s in chats)


def test_answers_committed_before_a_crash_survive_it(tmp_path: Path) -> None:
    path = tmp_path / "crash.sqlite"
    script = textwrap.dedent(
        """
        import os, sys
        from hush.providers.cache import ResponseCache
        cache = ResponseCache(sys.argv[1])
        for i in range(50):
            cache.put(f"k{i}", "m", {"content": str(i)})
        assert cache.flush(10)
        os._exit(9)  # no atexit, no close: as a kill would
        """
    )
    done = subprocess.run([sys.executable, "-c", script, str(path)], timeout=60)
    assert done.returncode == 9
    cache = ResponseCache(path)
    assert len(cache) == 50
    assert cache.get("k49") == {"content": "49"}


async def test_a_run_inside_a_node_is_held_to_the_enclosing_budget(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    name = register("nested", server.base_url)
    inner = Hush(batch(name, max_tokens=20))

    async def ask_inside(qs: list[str]) -> dict[str, Any]:
        result = await inner.run({"qs": qs})
        return {"errors": result["errors"], "tokens": result["$state"].tokens}

    with GraphNode(name="outer") as graph:
        node = CodeNode(name="inner", code_fn=ask_inside, inputs={"qs": PARENT["qs"]})
        node["errors"] >> PARENT["errors"]
        node["tokens"] >> PARENT["inner_tokens"]
        START >> node >> END
    result = await Hush(graph).run({"qs": questions(20)}, max_total_tokens=150)
    sent = server.total_requests
    assert 1 <= sent < 20
    assert sum(e is not None for e in result["errors"]) == 20 - sent
    assert result["$state"].tokens == result["inner_tokens"] <= 150


class Short(BaseModel):
    answer: str
    details: str


async def test_replies_that_come_but_cannot_be_used_are_still_counted(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    name = register(
        "cutoff", server.base_url, max_retries=0, input_cost_per_mtok=1, output_cost_per_mtok=1
    )
    graph = batch(name, response_format=Short, max_tokens=3)
    result = await Hush(graph).run({"qs": questions(4)})
    assert all(e is not None for e in result["errors"])
    state = result["$state"]
    assert server.total_requests == 4
    assert state.tokens > 0 and state.cost > 0
    assert state.llm[f"llm:{name}"]["calls"] == 4


async def test_a_resumed_run_starts_from_what_it_spent(
    server: MockLLMServer, register: Callable[..., str], tmp_path: Path
) -> None:
    name = register("resumed", server.base_url)
    engine = Hush(batch(name, max_tokens=30))
    db = tmp_path / "run.db"
    first = await engine.run({"qs": questions(30)}, checkpoint=db, run_id="r", max_total_tokens=600)
    answered = sum(e is None for e in first["errors"])
    assert 0 < answered < 30
    server.reset()
    again = await engine.run({"qs": questions(30)}, checkpoint=db, run_id="r", max_total_tokens=600)
    assert server.total_requests <= 1, "the same budget is not a new allowance"
    assert again["$state"].tokens >= first["$state"].tokens


async def test_a_budget_refusal_stays_one_after_a_fallback(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    from hush.providers import BudgetExceededError, complete
    from hush.providers.spend import RunSpend

    broken = register("broken", server.base_url, max_retries=0)
    priced = register(
        "priced-fallback", server.base_url, input_cost_per_mtok=1, output_cost_per_mtok=1
    )
    spend = RunSpend(max_total_tokens=0)
    with pytest.raises(BudgetExceededError, match="token budget of 0 reached"):
        await complete(
            [broken, priced],
            [{"role": "user", "content": "hi [[fail:503]]"}],
            spend=spend,
        )


async def test_holds_released_in_any_order_leave_nothing_held() -> None:
    from hush.providers.pricing import Price
    from hush.providers.spend import RunSpend

    spend = RunSpend(max_cost=0.25)
    price = Price(0.0, 1_000_000.0, 0.0, "resource")
    holds = [await spend.reserve("k", price, 0, max_tokens=t) for t in (0.05, 0.15, 0.05)]
    for hold in (holds[1], holds[0], holds[2]):
        hold.settle(None)
    last = await asyncio.wait_for(spend.reserve("k", price, 0, max_tokens=0.25), 1)  # type: ignore[arg-type]
    last.settle(None)


async def test_a_format_given_as_a_parameter_is_parsed_from_the_cache(
    server: MockLLMServer, register: Callable[..., str], tmp_path: Path
) -> None:
    from hush.providers import complete
    from hush.providers.spend import RunSpend

    name = register("format-param", server.base_url)
    spend = RunSpend(cache=ResponseCache(tmp_path / "c.sqlite"))
    ask = [{"role": "user", "content": "hi"}]
    first = await complete(name, ask, params={"response_format": Answer}, spend=spend)
    again = await complete(name, ask, params={"response_format": Answer}, spend=spend)
    assert again.cached and isinstance(again.parsed, Answer) and again.parsed == first.parsed


async def test_requests_that_never_answer_release_what_they_held(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    name = register("hangs", server.base_url, max_retries=0, timeout=0.2)
    server.configure(hang_rate=1.0)
    graph = batch(name, max_tokens=20)
    result = await asyncio.wait_for(Hush(graph).run({"qs": questions(8)}, max_total_tokens=100), 30)
    errors = result["errors"]
    assert all(e is not None for e in errors)
    assert not [e for e in errors if e.type == "BudgetExceededError"], (
        "a hold left behind by a request that never answered refused later calls"
    )
    assert result["$state"].tokens == 0
    server.configure(hang_rate=0.0)


def test_the_trace_tree_shows_what_a_call_cost() -> None:
    from hush.observability import format_tree

    records = [
        {"id": "a", "parent_id": None, "name": "g", "kind": "run", "run_id": "r"},
        {
            "id": "b",
            "parent_id": "a",
            "name": "llm",
            "kind": "generation",
            "type": "generation",
            "model": "m",
            "cost": 0.00123,
            "cached": True,
        },
    ]
    assert "m  0.001230 USD (cached)" in format_tree(records)
