"""``hush demo``: classify rows with an LLM against the local server, no API key needed."""

from __future__ import annotations

import time

from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
from hush.core.nodes.iteration import MapNode
from hush.core.nodes.iteration.base import Each
from hush.providers import LLMNode, PromptNode

CATEGORIES = ["billing", "delivery", "product quality", "account", "other"]

SAMPLE_FEEDBACK = [
    "I was charged twice for my order",
    "The parcel arrived three days late",
    "The blender broke after one week",
    "I cannot log in to my account",
    "Great service, thank you!",
    "Refund still not received after a month",
    "Courier left the box in the rain",
    "Colour is different from the picture",
]


def build_graph(resource_key: str = "demo") -> GraphNode:
    """A batch classification graph: one prompt and one LLM call per row, capped."""
    with GraphNode(name="classify-feedback") as graph:
        with MapNode(
            name="rows",
            inputs={"text": Each(PARENT["rows"]), "categories": PARENT["categories"]},
            max_concurrency=50,
        ) as rows:
            prompt = PromptNode(
                name="prompt",
                inputs={
                    "prompt": {
                        "system": "Classify customer feedback into one of: {categories}. Answer with the category only.",
                        "user": "{text}",
                    },
                    "text": PARENT["text"],
                    "categories": PARENT["categories"],
                },
            )
            llm = LLMNode(
                name="llm",
                resource_key=resource_key,
                inputs={"messages": prompt["messages"]},
                temperature=0,
            )
            llm["content"] >> PARENT["label"]
            START >> prompt >> llm >> END
        summary = CodeNode(
            name="summary",
            code_fn=lambda labels, errors: {
                "answered": sum(e is None for e in errors),
                "failed": sum(e is not None for e in errors),
            },
            inputs={"labels": rows["label"], "errors": rows["error"]},
            outputs={"*": PARENT},
        )
        rows["label"] >> PARENT["labels"]
        START >> rows >> summary >> END
    return graph


async def run_demo(n_rows: int = 200, *, progress: bool | None = None) -> int:
    """Start the local server, run the graph over ``n_rows`` rows, print a summary."""
    from hush.providers.resources import get_registry
    from hush.testing import MockLLMConfig, MockLLMServer

    config = MockLLMConfig(latency=(0.05, 0.15), rpm=6000, error_rate_500=0.05, seed=1)
    async with MockLLMServer(config) as server:
        get_registry().register(
            "llm:demo",
            {
                "base_url": server.base_url,
                "api_key": "local-demo",
                "model": "gpt-4o-mini",
                "rpm": 6000,
            },
        )
        rows = [SAMPLE_FEEDBACK[i % len(SAMPLE_FEEDBACK)] + f" (#{i})" for i in range(n_rows)]
        engine = Hush(build_graph())
        start = time.perf_counter()
        result = await engine.run(
            {"rows": rows, "categories": ", ".join(CATEGORIES)}, progress=progress
        )
        elapsed = time.perf_counter() - start
        state = result["$state"]
        print(
            f"classified {result['answered']}/{n_rows} rows in {elapsed:.2f}s ({n_rows / elapsed:.0f} rows/s)"
        )
        print(
            f"server saw {server.total_requests} requests; {server.status_counts.get(500, 0)} injected 500s were retried"
        )
        for text, label in list(zip(rows, result["labels"], strict=True))[:5]:
            print(f"  {text!r:50} -> {label!r}")
        print(f"run {state.run_id}: {state.status}, {len(state.errors)} error(s)")
        return 0 if not state.errors else 1
