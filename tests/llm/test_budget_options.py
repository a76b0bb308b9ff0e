"""The LLM run options under their new spelling (``budget=Budget(...)``, ``cache=``), and
``$state.llm`` holding the run's own calls only, over real HTTP to the local server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from hush import Budget
from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
from hush.core.errors import RunOptionError
from hush.providers import ResponseCache
from hush.testing import MockLLMServer
from tests.llm.test_spend import IN_PRICE, OUT_PRICE, batch, questions


def priced(register: Callable[..., str], server: MockLLMServer, name: str) -> str:
    return register(
        name, server.base_url, input_cost_per_mtok=IN_PRICE, output_cost_per_mtok=OUT_PRICE
    )


async def test_a_budget_object_holds_the_run_to_its_tokens(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    name = priced(register, server, "budgeted")
    result = await Hush(batch(name, cap=1, max_tokens=20)).run(
        {"qs": questions(6)}, budget=Budget(max_total_tokens=60)
    )
    state = result["$state"]
    refused = [e for e in result["errors"] if e is not None]
    assert refused and {e.type for e in refused} == {"BudgetExceededError"}
    assert 0 < state.tokens <= 60
    assert state.llm[f"llm:{name}"]["calls"] == 6 - len(refused)


async def test_a_max_cost_budget_without_prices_is_refused_by_its_check(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    name = register("unpriced", server.base_url)
    with pytest.raises(RunOptionError, match=f"resource '{name}' has none"):
        await Hush(batch(name)).run({"qs": questions(2)}, budget=Budget(max_cost=1.0))
    assert server.total_requests == 0
    result = await Hush(batch(name)).run(
        {"qs": questions(2)}, budget=Budget(max_total_tokens=10**6)
    )
    assert result["errors"] == [None, None], "a token budget needs no price"


async def test_cache_takes_a_path_or_a_cache_object(
    server: MockLLMServer, register: Callable[..., str], tmp_path: Path
) -> None:
    name = priced(register, server, "cached")
    engine, path = Hush(batch(name)), tmp_path / "answers.db"
    await engine.run({"qs": questions(4)}, cache=path)
    sent = server.total_requests
    cache = ResponseCache(path)
    try:
        again = await engine.run({"qs": questions(4)}, cache=cache)
    finally:
        cache.close()
    assert server.total_requests == sent, "every answer came from the cache"
    assert again["$state"].llm[f"llm:{name}"]["cached"] == 4
    assert again["$state"].cost == 0.0
    with pytest.raises(RunOptionError, match="cache must be a file path, True or a ResponseCache"):
        await engine.run({"qs": questions(1)}, cache=3.5)


async def test_two_concurrent_runs_each_count_only_their_own_calls(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    name = register("shared", server.base_url)
    engine = Hush(batch(name))
    small, large = await asyncio.gather(
        engine.run({"qs": questions(3)}), engine.run({"qs": questions(12)})
    )
    assert small["$state"].llm[f"llm:{name}"]["sent"] == 3
    assert large["$state"].llm[f"llm:{name}"]["sent"] == 12
    assert small["$state"].llm[f"llm:{name}"]["calls"] == 3


async def test_a_nested_run_counts_in_its_own_record_and_in_the_enclosing_one(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    name = register("nested", server.base_url)
    inner = Hush(batch(name))

    async def start_inner() -> dict[str, int]:
        result = await inner.run({"qs": questions(2)})
        return {"sent": result["$state"].llm[f"llm:{name}"]["sent"]}

    with GraphNode(name="outer") as g:
        node = CodeNode(name="inner", code_fn=start_inner, outputs={"sent": PARENT})
        START >> node >> END
    outer = await Hush(g).run()
    assert outer["sent"] == 2
    assert outer["$state"].llm[f"llm:{name}"]["sent"] == 2
