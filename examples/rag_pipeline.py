"""A small RAG pipeline: embed the passages and the question, search, rerank, answer.

Upstream Hush's RAG tutorials as a hush graph: an ``EmbeddingNode`` embeds the
passages and the question (in batches, under the resource's rate limit), a
``CodeNode`` keeps the passages closest to the question, a ``RerankNode`` orders
them by relevance and an ``LLMNode`` answers from the best ones. Resources come
from ``resources.yaml`` (``embedding:local-embed``, ``rerank:local-rerank``,
``llm:gpt-4o-mini``) when it defines them, else the bundled local server.

    python examples/rag_pipeline.py "Which planet has the most moons?"
"""

from __future__ import annotations

import asyncio
import math
import sys
from typing import Any

from _llm import ensure_llm, local_server

from hush import (
    END,
    PARENT,
    START,
    CodeNode,
    EmbeddingNode,
    GraphNode,
    Hush,
    LLMNode,
    PromptNode,
    RerankNode,
)
from hush.providers import get_registry
from hush.testing import MockLLMServer

PASSAGES = [
    {"id": "mercury", "text": "Mercury is the smallest planet and the closest to the Sun."},
    {"id": "venus", "text": "Venus is the hottest planet because its thick atmosphere traps heat."},
    {"id": "earth", "text": "Earth is the only planet known to host life; it has one moon."},
    {"id": "mars", "text": "Mars has two small moons, Phobos and Deimos."},
    {"id": "jupiter", "text": "Jupiter is the largest planet; it has 95 known moons."},
    {"id": "saturn", "text": "Saturn has the most moons of any planet: 146 known moons."},
    {"id": "uranus", "text": "Uranus rotates on its side and has 28 known moons."},
    {"id": "neptune", "text": "Neptune has the strongest winds of any planet."},
    {"id": "pluto", "text": "Pluto was reclassified as a dwarf planet in 2006."},
    {"id": "sun", "text": "The Sun holds 99.8 percent of the mass of the solar system."},
]


def ensure_retrieval() -> tuple[str, str]:
    """``embedding:local-embed`` and ``rerank:local-rerank``, from resources.yaml or on the
    local server (the one the LLM uses when it is local, else one of its own)."""
    registry = get_registry()
    keys = ("local-embed", "local-rerank")
    if registry.has("embedding:local-embed") and registry.has("rerank:local-rerank"):
        return keys
    server = local_server() or MockLLMServer(latency=0.02).start_in_thread()
    registry.register(
        "embedding:local-embed",
        {"base_url": server.base_url, "model": "mock-embed", "batch_size": 4, "rpm": 600},
    )
    registry.register("rerank:local-rerank", {"base_url": server.url, "model": "mock-rerank"})
    return keys


EMBED, RERANK = ensure_retrieval()
LLM = ensure_llm("gpt-4o-mini")


def cosine(a: list[float], b: list[float]) -> float:
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / norm if norm else 0.0


def nearest(
    passages: list[dict[str, Any]], vectors: list[list[float]], query: list[list[float]]
) -> dict[str, Any]:
    """The five passages whose vectors are closest to the question's."""
    scored = sorted(zip(passages, vectors, strict=True), key=lambda pv: -cosine(pv[1], query[0]))
    return {"candidates": [p for p, _ in scored[:5]]}


def context_of(reranks: list[dict[str, Any]]) -> dict[str, Any]:
    """The best passages as numbered context lines, and their ids as sources."""
    lines = [f"[{r['id']}] {r['content']}" for r in reranks]
    return {"context": "\n".join(lines), "sources": [r["id"] for r in reranks]}


with GraphNode(name="rag") as graph:
    texts = CodeNode(
        name="texts",
        code_fn=lambda passages: {"texts": [p["text"] for p in passages]},
        inputs={"passages": PARENT["passages"]},
    )
    embed_passages = EmbeddingNode(
        name="embed_passages", resource_key=EMBED, inputs={"texts": texts["texts"]}
    )
    embed_question = EmbeddingNode(
        name="embed_question", resource_key=EMBED, inputs={"texts": PARENT["question"]}
    )
    search = CodeNode(
        name="search",
        code_fn=nearest,
        inputs={
            "passages": PARENT["passages"],
            "vectors": embed_passages["embeddings"],
            "query": embed_question["embeddings"],
        },
    )
    rerank = RerankNode(
        name="rerank",
        resource_key=RERANK,
        inputs={"query": PARENT["question"], "documents": search["candidates"], "top_k": 2},
    )
    context = CodeNode(
        name="context",
        code_fn=context_of,
        inputs={"reranks": rerank["reranks"]},
        outputs={"sources": PARENT},
    )
    prompt = PromptNode(
        name="prompt",
        inputs={
            "prompt": {
                "system": "Answer from the context only; cite the [ids] you used.",
                "user": "Context:\n{context}\n\nQuestion: {question}",
            },
            "context": context["context"],
            "question": PARENT["question"],
        },
    )
    answer = LLMNode(
        name="answer",
        resource_key=LLM,
        inputs={"messages": prompt["messages"]},
        outputs={"content": PARENT["answer"]},
        temperature=0,
        retry=3,
    )
    START >> texts >> embed_passages
    START >> embed_question
    [embed_passages, embed_question] >> search >> rerank >> context >> prompt >> answer >> END


async def main() -> None:
    question = " ".join(sys.argv[1:]) or "Which planet has the most moons?"
    result = await Hush(graph).run({"question": question, "passages": PASSAGES})
    state = result["$state"]
    print(f"question: {question}")
    print(f"sources:  {', '.join(result.get('sources') or [])}")
    print(f"answer:   {result.get('answer')}")
    print(f"status:   {state.status} in {state.duration:.2f}s")
    for error in state.errors:
        print(f"error:    {error}")


if __name__ == "__main__":
    asyncio.run(main())
