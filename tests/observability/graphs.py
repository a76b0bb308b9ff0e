"""The graphs the tracing tests run: a map of prompt → LLM, and a map of maps with one bad cell."""

from __future__ import annotations

from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
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


def nested_map(*, name: str = "nested", bad: int = 77, cap: int = 4) -> Hush:
    """Rows of cells, each cell a code node; the cell ``bad`` raises ``ValueError``."""

    async def work(cell: int) -> dict[str, int]:
        if cell == bad:
            raise ValueError(f"cell {cell} is bad")
        return {"result": cell}

    with GraphNode(name=name) as g:
        with MapNode(
            name="rows", inputs={"row": Each(PARENT["rows"])}, max_concurrency=cap
        ) as rows:
            with MapNode(
                name="cells", inputs={"cell": Each(PARENT["row"])}, max_concurrency=cap
            ) as cells:
                n = CodeNode(name="work", code_fn=work, inputs={"cell": PARENT["cell"]})
                n["result"] >> PARENT["result"]
                START >> n >> END
            cells["result"] >> PARENT["results"]
            START >> cells >> END
        rows["results"] >> PARENT["table"]
        START >> rows >> END
    return Hush(g)
