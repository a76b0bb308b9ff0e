"""The graph the engine tracing tests run: a map of prompt → LLM over 20 questions."""

from __future__ import annotations

from hush.core import END, PARENT, START, GraphNode
from hush.core.nodes.iteration import MapNode
from hush.core.nodes.iteration.base import Each
from hush.providers import LLMNode, PromptNode


def batch_graph() -> GraphNode:
    with GraphNode(name="traced-batch") as g:
        with MapNode(
            name="llm_batch", inputs={"query": Each(PARENT["queries"])}, max_concurrency=8
        ) as m:
            p = PromptNode(
                name="prompt",
                inputs={
                    "prompt": {"system": "Be brief.", "user": "{query}"},
                    "query": PARENT["query"],
                },
            )
            llm = LLMNode(
                name="llm", resource_key="traced", inputs={"messages": p["messages"]}, temperature=0
            )
            llm["content"] >> PARENT["answer"]
            START >> p >> llm >> END
        m["answer"] >> PARENT["answers"]
        START >> m >> END
    return g


QUERIES = [f"question {i}" + (" [[fail:400]]" if i == 13 else "") for i in range(20)]
