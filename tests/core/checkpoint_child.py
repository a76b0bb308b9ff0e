"""Child process for the SIGKILL test: a 2,000-item checkpointed map of LLM calls.

python checkpoint_child.py BASE_URL DB RUN_ID OUT_JSON
"""

from __future__ import annotations

import asyncio
import json
import sys

from hush.core import END, PARENT, START, GraphNode, Hush
from hush.core.nodes.iteration import MapNode
from hush.core.nodes.iteration.base import Each
from hush.providers import LLMNode, PromptNode, get_registry

N_ITEMS = 2000
CAP = 20


def build() -> GraphNode:
    with GraphNode(name="ckpt") as g:
        with MapNode(name="items", inputs={"q": Each(PARENT["queries"])}, max_concurrency=CAP) as m:
            p = PromptNode(name="p", inputs={"prompt": "{q}", "q": PARENT["q"]})
            llm = LLMNode(name="llm", resource_key="ckpt", inputs={"messages": p["messages"]})
            llm["content"] >> PARENT["answer"]
            START >> p >> llm >> END
        m["answer"] >> PARENT["answers"]
        m["error"] >> PARENT["errors"]
        START >> m >> END
    return g


async def main() -> None:
    base_url, db, run_id, out = sys.argv[1:5]
    get_registry().register(
        "llm:ckpt", {"base_url": base_url, "api_key": "x", "model": "gpt-4o-mini", "rpm": 1_000_000}
    )
    result = await Hush(build()).run(
        {"queries": [f"item {i}" for i in range(N_ITEMS)]},
        checkpoint=db,
        run_id=run_id,
        progress=False,
    )
    state = result["$state"]
    with open(out, "w") as f:
        json.dump(
            {
                "answers": result["answers"],
                "errors": [str(e) if e else None for e in result["errors"]],
                "resumed": state.iterations["ckpt/items"].resumed,
            },
            f,
        )


if __name__ == "__main__":
    asyncio.run(main())
