"""Cost, a spend budget and the response cache on one batch of prompts.

1. A first run with ``budget=Budget(max_cost=...)`` stops sending once the budget is
   reached: the calls that did not fit fail with ``BudgetExceededError``, nothing else
   is lost.
2. The same run id with a larger budget continues from the checkpoint: only the
   missing calls are sent.
3. A new run over the same prompts with the response cache sends nothing and costs 0.

Runs against the bundled local server (no key); the resource gets a made-up price.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from _llm import ensure_llm

from hush import END, PARENT, START, Budget, Each, GraphNode, Hush, LLMNode, MapNode
from hush.providers import get_registry


def build(model: str) -> GraphNode:
    with GraphNode(name="budgeted") as graph:
        with MapNode(
            name="answers", inputs={"q": Each(PARENT["questions"])}, max_concurrency=8
        ) as answers:
            llm = LLMNode(
                name="llm",
                resource_key=model,
                inputs={"messages": [{"role": "user", "content": PARENT["q"]}]},
                max_tokens=40,
            )
            llm["content"] >> PARENT["answer"]
            llm["cost"] >> PARENT["cost"]
            START >> llm >> END
        answers["answer"] >> PARENT["answers"]
        answers["error"] >> PARENT["errors"]
        START >> answers >> END
    return graph


async def main() -> None:
    model = ensure_llm("gpt-4o-mini")
    key = f"llm:{model}"
    config = get_registry().get_llm(key)
    if config.input_cost_per_mtok is None and config.base_url.startswith("http://127.0.0.1"):
        # The local server is free; give it a price so the budget has something to count.
        get_registry().register(
            key,
            {**config.model_dump(), "input_cost_per_mtok": 150.0, "output_cost_per_mtok": 600.0},
        )
    engine = Hush(build(model))
    questions = {"questions": [f"Give one fact about the number {i}." for i in range(40)]}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, cache = Path(tmp) / "run.db", Path(tmp) / "answers.sqlite"

        first = await engine.run(
            questions,
            run_id="facts",
            checkpoint=checkpoint,
            cache=cache,
            budget=Budget(max_cost=0.25),
        )
        state = first["$state"]
        refused = [e for e in first["errors"] if e is not None]
        print(
            f"run 1: {40 - len(refused)} answered for {state.cost:.4f} USD, {len(refused)} not sent"
        )
        if refused:
            print(f"  e.g. {refused[0].type}: {refused[0].message}")

        second = await engine.run(
            questions,
            run_id="facts",
            checkpoint=checkpoint,
            cache=cache,
            budget=Budget(max_cost=5.0),
        )
        state = second["$state"]
        print(
            f"run 2 (larger budget, same checkpoint): {state.llm[key]['calls']} calls sent, "
            f"{state.cost:.4f} USD, errors: {sum(e is not None for e in second['errors'])}"
        )

        third = await engine.run(questions, cache=cache, budget=Budget(max_cost=5.0))
        state = third["$state"]
        print(
            f"run 3 (new run, same cache): {state.llm[key]['calls']} calls sent, "
            f"{state.llm[key]['cached']} answered from the cache, {state.cost:.4f} USD"
        )
        assert third["answers"] == second["answers"]


if __name__ == "__main__":
    asyncio.run(main())
