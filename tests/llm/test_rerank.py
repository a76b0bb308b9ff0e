"""RerankNode and the local server's /rerank routes, over real HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import hush
from hush.core import END, PARENT, START, GraphBuildError, GraphNode, Hush
from hush.providers import RerankNode, get_registry
from hush.testing import MockLLMServer
from hush.testing.retrieval import overlap
from tests.llm.conftest import SECRET

Register = Callable[..., str]

DOCS = [
    "Paris is the capital of France.",
    "Bananas are rich in potassium.",
    "The capital of Italy is Rome.",
    "France borders Spain and Italy.",
    "Capital gains are taxed in France.",
]
QUERY = "what is the capital of France"


@pytest.fixture
def register_rerank() -> Iterator[Register]:
    """Register ``rerank:<name>`` against a server (its root URL) for the test."""
    added: list[str] = []

    def add(name: str, base_url: str, **settings: Any) -> str:
        config = {
            "base_url": base_url,
            "api_key": SECRET,
            "model": "bge-reranker-v2-m3",
            "backoff_base": 0.01,
            "backoff_max": 0.05,
            **settings,
        }
        get_registry().register(f"rerank:{name}", config)
        added.append(f"rerank:{name}")
        return name

    yield add
    for key in added:
        get_registry().unregister(key)


def rerank_graph(resource: str, **options: Any) -> GraphNode:
    with GraphNode(name="g") as graph:
        node = RerankNode(
            name="rerank",
            resource_key=resource,
            inputs={
                "query": PARENT["query"],
                "documents": PARENT["documents"],
                "top_k": PARENT["top_k"],
            },
            outputs={"*": PARENT},
            **options,
        )
        START >> node >> END
    return graph


def expected_order(query: str, docs: list[str]) -> list[int]:
    return sorted(range(len(docs)), key=lambda i: (-overlap(query, docs[i]), i))


# -- the local server ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/rerank", "/v1/rerank", "/v2/rerank"])
async def test_server_reranks_by_word_overlap(server: MockLLMServer, path: str) -> None:
    async with httpx.AsyncClient() as client:
        reply = await client.post(
            server.url + path,
            json={"model": "m", "query": QUERY, "documents": DOCS, "top_n": 3},
        )
        bad = await client.post(server.url + path, json={"query": QUERY, "documents": []})
    assert reply.status_code == 200
    results = reply.json()["results"]
    assert [r["index"] for r in results] == expected_order(QUERY, DOCS)[:3]
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    assert bad.status_code == 400 and "documents" in bad.json()["error"]["message"]


# -- the node -----------------------------------------------------------------------------


async def test_rerank_best_first_with_top_k(
    server: MockLLMServer, register_rerank: Register
) -> None:
    server.configure(api_key=SECRET)
    name = register_rerank("bge", server.url)
    result = await Hush(rerank_graph(name)).run({"query": QUERY, "documents": DOCS, "top_k": 2})
    assert result["$state"].errors == []
    best = expected_order(QUERY, DOCS)[:2]
    assert [r["index"] for r in result["reranks"]] == best
    assert [r["content"] for r in result["reranks"]] == [DOCS[i] for i in best]
    assert result["reranks"][0]["score"] >= result["reranks"][1]["score"] > 0
    (request,) = server.requests
    assert request.path == "/rerank"
    assert request.body == {
        "model": "bge-reranker-v2-m3",
        "query": QUERY,
        "documents": DOCS,
        "top_n": 2,
    }
    assert request.status == 200


async def test_dict_documents_keep_their_fields(
    server: MockLLMServer, register_rerank: Register
) -> None:
    name = register_rerank("dicts", server.url + "/v2")
    documents = [
        {"id": "a", "text": DOCS[1], "source": "fruit.md"},
        {"id": "b", "page_content": DOCS[0], "source": "geo.md"},
    ]
    result = await Hush(rerank_graph(name)).run(
        {"query": QUERY, "documents": documents, "top_k": None}
    )
    first, second = result["reranks"]
    assert (first["id"], first["source"], first["index"]) == ("b", "geo.md", 1)
    assert first["content"] == DOCS[0] and first["page_content"] == DOCS[0]
    assert (second["id"], second["index"], second["text"]) == ("a", 0, DOCS[1])
    assert server.requests[0].path == "/v2/rerank"
    assert server.requests[0].body["documents"] == [DOCS[1], DOCS[0]]
    assert "top_n" not in server.requests[0].body


async def test_transient_failures_are_retried_and_bad_requests_are_not(
    server: MockLLMServer, register_rerank: Register
) -> None:
    name = register_rerank("flaky", server.url)
    query = "capital [[fail-once:503]]"
    result = await Hush(rerank_graph(name)).run({"query": query, "documents": DOCS, "top_k": 1})
    assert result["$state"].errors == []
    assert server.status_counts == {503: 1, 200: 1}

    server.reset()
    result = await Hush(rerank_graph(name)).run(
        {"query": "x [[fail:422]]", "documents": DOCS, "top_k": 1}
    )
    (error,) = result["$state"].errors
    assert error.type == "LLMCallError" and "HTTP 422" in error.message
    assert server.total_requests == 1


async def test_cost_cache_and_trace(
    server: MockLLMServer, register_rerank: Register, tmp_path: Path
) -> None:
    name = register_rerank("priced", server.url, input_cost_per_mtok=50.0)
    inputs = {"query": QUERY, "documents": DOCS, "top_k": 3}
    first = await Hush(rerank_graph(name)).run(inputs, cache=tmp_path / "c.db")
    assert first["cost"] == pytest.approx(first["usage"]["total_tokens"] * 50.0 / 1e6)
    assert first["cost"] > 0 and first["cached"] is False
    events = [
        e.llm
        async for e in Hush(rerank_graph(name)).stream(inputs, cache=tmp_path / "c.db")
        if e.llm
    ]
    (call,) = events
    assert call.operation == "rerank" and call.cached is True
    assert call.messages == {"query": QUERY, "documents": DOCS, "top_k": 3}
    assert [o["index"] for o in call.output] == [r["index"] for r in first["reranks"]]
    assert server.total_requests == 1


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"query": "", "documents": DOCS, "top_k": 1}, "query must be a non-empty string"),
        ({"query": QUERY, "documents": "doc", "top_k": 1}, "documents must be a list, got str"),
        ({"query": QUERY, "documents": DOCS, "top_k": 0}, "top_k must be a positive integer"),
        (
            {"query": QUERY, "documents": [{"id": 1}], "top_k": 1},
            "documents[0] is a dict without a text field (content, text, page_content)",
        ),
        ({"query": QUERY, "documents": [3], "top_k": 1}, "documents[0] must be a string or a dict"),
    ],
)
async def test_bad_inputs_are_the_nodes_error(
    server: MockLLMServer, register_rerank: Register, inputs: dict[str, Any], message: str
) -> None:
    name = register_rerank("strict", server.url)
    result = await Hush(rerank_graph(name)).run(inputs)
    (error,) = result["$state"].errors
    assert error.message.startswith("RerankNode 'rerank': ")
    assert message in error.message
    assert server.total_requests == 0


async def test_no_documents_give_no_reranks_without_a_request(
    server: MockLLMServer, register_rerank: Register
) -> None:
    name = register_rerank("empty", server.url)
    result = await Hush(rerank_graph(name)).run({"query": QUERY, "documents": [], "top_k": 3})
    assert result["reranks"] == []
    assert server.total_requests == 0


def test_the_resource_must_be_a_rerank_resource() -> None:
    with pytest.raises(GraphBuildError, match="unknown resource 'rerank:nowhere'"):
        rerank_graph("nowhere").build()


def test_exported_from_hush_and_hush_providers() -> None:
    assert hush.RerankNode is RerankNode
    assert hush.providers.RerankNode is RerankNode
