"""Child process for the spend-across-kills test: a checkpointed map of priced LLM calls.

python spend_child.py BASE_URL DB MAX_COST N

Prints ``done`` after each item's answer (the test kills it part-way) and, if it gets to
the end, one JSON line with the run's cost, the items' costs and their errors.
"""

from __future__ import annotations

import asyncio
import json
import sys

from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
from hush.core.nodes.iteration import MapNode
from hush.core.nodes.iteration.base import Each
from hush.providers import LLMNode, get_registry

IN_PRICE, OUT_PRICE = 2.5, 10.0


def build() -> GraphNode:
    async def tell(cost: float | None) -> dict[str, float | None]:
        print("done", flush=True)
        return {"cost": cost}

    with GraphNode(name="spend") as g:
        with MapNode(name="items", inputs={"q": Each(PARENT["qs"])}, max_concurrency=8) as m:
            llm = LLMNode(
                name="llm",
                resource_key="priced",
                inputs={"messages": [{"role": "user", "content": PARENT["q"]}]},
                max_tokens=40,
            )
            t = CodeNode(name="tell", code_fn=tell, inputs={"cost": llm["cost"]})
            t["cost"] >> PARENT["cost"]
            START >> llm >> t >> END
        m["cost"] >> PARENT["costs"]
        m["error"] >> PARENT["errors"]
        START >> m >> END
    return g


async def main(base_url: str, db: str, max_cost: str, n: str) -> None:
    get_registry().register(
        "llm:priced",
        {
            "base_url": base_url,
            "api_key": "x",
            "model": "gpt-4o-mini",
            "rpm": 1_000_000,
            "input_cost_per_mtok": IN_PRICE,
            "output_cost_per_mtok": OUT_PRICE,
        },
    )
    qs = [f"question {i}: what is {i} times {i}?" for i in range(int(n))]
    result = await Hush(build()).run(
        {"qs": qs}, checkpoint=db, run_id="spend", max_cost=float(max_cost), progress=False
    )
    errors = [None if e is None else e.type for e in result["errors"]]
    state = result["$state"]
    print(json.dumps({"cost": state.cost, "costs": result["costs"], "errors": errors}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
