"""EmbeddingNode and the local server's /v1/embeddings, over real HTTP through the openai SDK."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

import hush
from hush.core import END, PARENT, START, GraphBuildError, GraphDefinitionError, GraphNode, Hush
from hush.core.errors import RunOptionError
from hush.providers import EmbeddingNode, get_registry
from hush.providers.resources import ResourceRegistry
from hush.testing import MockLLMServer
from hush.testing.retrieval import embed
from tests.llm.conftest import SECRET

Register = Callable[..., str]


@pytest.fixture
def register_embedding() -> Iterator[Register]:
    """Register ``embedding:<name>`` against a server for the test; removed afterwards."""
    added: list[str] = []

    def add(name: str, base_url: str, **settings: Any) -> str:
        config = {
            "base_url": base_url,
            "api_key": SECRET,
            "model": "text-embedding-3-small",
            "backoff_base": 0.01,
            "backoff_max": 0.05,
            **settings,
        }
        get_registry().register(f"embedding:{name}", config)
        added.append(f"embedding:{name}")
        return name

    yield add
    for key in added:
        get_registry().unregister(key)


def embed_graph(resource: str, **options: Any) -> GraphNode:
    with GraphNode(name="g") as graph:
        node = EmbeddingNode(
            name="embed",
            resource_key=resource,
            inputs={"texts": PARENT["texts"]},
            outputs={"*": PARENT},
            **options,
        )
        START >> node >> END
    return graph


TEXTS = [f"document number {i} about topic {i % 3}" for i in range(10)]


# -- the local server ---------------------------------------------------------------------


async def test_server_embeddings_through_the_openai_sdk(server: MockLLMServer) -> None:
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0)
    try:
        packed = await client.embeddings.create(model="m", input=["red apples", "green pears"])
        plain = await client.embeddings.create(
            model="m", input="red apples", encoding_format="float", dimensions=8
        )
        with pytest.raises(openai.BadRequestError, match="input"):
            await client.embeddings.create(model="m", input=["fine", ""])
    finally:
        await client.close()
    assert [d.index for d in packed.data] == [0, 1]
    assert packed.data[0].embedding == pytest.approx(embed("red apples"), abs=1e-6)
    assert packed.data[1].embedding == pytest.approx(embed("green pears"), abs=1e-6)
    assert plain.data[0].embedding == pytest.approx(embed("red apples", 8))
    assert packed.usage.prompt_tokens == packed.usage.total_tokens > 0
    assert server.requests[0].path == "/v1/embeddings"


def test_server_vectors_are_deterministic_unit_vectors_close_for_shared_words() -> None:
    a, b, c = embed("the cat sat"), embed("the cat sat down"), embed("quarterly revenue grew")
    assert embed("the cat sat") == a
    assert sum(x * x for x in a) == pytest.approx(1.0)

    def cosine(u: list[float], v: list[float]) -> float:
        return sum(x * y for x, y in zip(u, v, strict=True))

    assert cosine(a, b) > cosine(a, c)


# -- the node -----------------------------------------------------------------------------


async def test_ten_texts_give_ten_vectors_in_order_in_batches(
    server: MockLLMServer, register_embedding: Register
) -> None:
    name = register_embedding("small", server.base_url, batch_size=3)
    result = await Hush(embed_graph(name)).run({"texts": TEXTS})
    assert result["$state"].errors == []
    assert len(result["embeddings"]) == 10
    for vector, text in zip(result["embeddings"], TEXTS, strict=True):
        assert vector == pytest.approx(embed(text), abs=1e-6)
    sent = [r.body["input"] for r in server.requests]
    assert sorted(sent) == sorted([TEXTS[0:3], TEXTS[3:6], TEXTS[6:9], TEXTS[9:10]])
    assert {r.body["model"] for r in server.requests} == {"text-embedding-3-small"}
    assert result["usage"]["prompt_tokens"] > 0 and result["model"] == "text-embedding-3-small"
    assert result["cached"] == 0 and result["cost"] is None


async def test_a_failed_batch_is_retried_and_a_bad_request_is_not(
    server: MockLLMServer, register_embedding: Register
) -> None:
    name = register_embedding("retrying", server.base_url, batch_size=2)
    texts = ["alpha", "beta [[fail-once:503]]", "gamma"]
    result = await Hush(embed_graph(name)).run({"texts": texts})
    assert result["$state"].errors == []
    assert result["embeddings"][1] == pytest.approx(embed(texts[1]), abs=1e-6)
    assert server.status_counts == {200: 2, 503: 1}

    server.reset()
    result = await Hush(embed_graph(name)).run({"texts": ["x [[fail:400]]"]})
    (error,) = result["$state"].errors
    assert error.type == "LLMCallError" and "HTTP 400" in error.message
    assert server.total_requests == 1


async def test_rate_limited_batches_wait_for_the_limiter(
    server: MockLLMServer, register_embedding: Register
) -> None:
    name = register_embedding("paced", server.base_url, batch_size=1, max_concurrency=1)
    result = await Hush(embed_graph(name)).run({"texts": TEXTS[:6]})
    assert len(result["embeddings"]) == 6
    assert server.peak_in_flight == 1
    limiter = hush.providers.get_limiter("embedding:paced", get_registry().get_embedding("paced"))
    assert limiter.stats().ok >= 6


async def test_prices_per_million_input_tokens_and_the_run_budget(
    server: MockLLMServer, register_embedding: Register
) -> None:
    name = register_embedding("priced", server.base_url, input_cost_per_mtok=20.0)
    result = await Hush(embed_graph(name)).run({"texts": TEXTS})
    tokens = result["usage"]["prompt_tokens"]
    assert result["cost"] == pytest.approx(tokens * 20.0 / 1e6)
    state = result["$state"]
    assert state.cost == pytest.approx(result["cost"])
    assert state.tokens == tokens
    assert state.llm[f"embedding:{name}"]["cost"] == pytest.approx(result["cost"])

    server.reset()
    refused = await Hush(embed_graph(name)).run({"texts": TEXTS}, max_cost=1e-9)
    (error,) = refused["$state"].errors
    assert error.type == "BudgetExceededError"
    assert server.total_requests == 0


async def test_max_cost_needs_a_price_for_the_embedding_resource(
    server: MockLLMServer, register_embedding: Register
) -> None:
    name = register_embedding("free", server.base_url)
    with pytest.raises(RunOptionError, match=f"'embedding:{name}' has none"):
        await Hush(embed_graph(name)).run({"texts": TEXTS}, max_cost=1.0)
    assert server.total_requests == 0


async def test_the_response_cache_answers_texts_embedded_before(
    server: MockLLMServer, register_embedding: Register, tmp_path: Path
) -> None:
    name = register_embedding("cached", server.base_url, batch_size=4)
    cache = tmp_path / "cache.db"
    first = await Hush(embed_graph(name)).run({"texts": TEXTS[:5]}, cache=cache)
    assert server.total_requests == 2
    second = await Hush(embed_graph(name)).run({"texts": TEXTS}, cache=cache)
    assert second["cached"] == 5
    assert second["embeddings"][:5] == first["embeddings"]
    assert [r.body["input"] for r in server.requests[2:]] == [TEXTS[5:9], TEXTS[9:]]


async def test_the_call_is_traced_as_an_embeddings_operation(
    server: MockLLMServer, register_embedding: Register
) -> None:
    name = register_embedding("traced", server.base_url, batch_size=5)
    calls = [e.llm async for e in Hush(embed_graph(name)).stream({"texts": TEXTS}) if e.llm]
    (call,) = calls
    assert call.operation == "embeddings"
    assert call.messages == TEXTS
    assert call.model == "text-embedding-3-small"
    assert call.output == "10 vectors of 64 dimensions"
    assert call.usage is not None and call.usage["prompt_tokens"] > 0
    assert call.resource == f"embedding:{name}"


async def test_otlp_spans_name_the_embeddings_operation(
    server: MockLLMServer, register_embedding: Register
) -> None:
    from hush.observability import OTLPTracer
    from tests.observability.otlp_receiver import OtlpReceiver

    name = register_embedding("otlp", server.base_url, batch_size=5)
    receiver = OtlpReceiver().start()
    try:
        tracer = OTLPTracer(receiver.url, service_name="embed")
        await Hush(embed_graph(name)).run({"texts": TEXTS}, tracer=tracer)
        spans = receiver.wait_for_spans(3)
    finally:
        receiver.stop()
    (call,) = [s for s in spans if s.name == "embeddings text-embedding-3-small"]
    assert call.attributes["gen_ai.operation.name"] == "embeddings"
    assert call.attributes["gen_ai.request.model"] == "text-embedding-3-small"
    assert call.attributes["gen_ai.usage.input_tokens"] > 0
    assert call.attributes["hush.resource"] == f"embedding:{name}"


async def test_bad_texts_are_the_nodes_error_naming_the_position(
    server: MockLLMServer, register_embedding: Register
) -> None:
    name = register_embedding("strict", server.base_url)
    result = await Hush(embed_graph(name)).run({"texts": ["fine", ""]})
    (error,) = result["$state"].errors
    assert error.message == "EmbeddingNode 'embed': texts[1] must be a non-empty string, got ''"
    result = await Hush(embed_graph(name)).run({"texts": {"a": 1}})
    (error,) = result["$state"].errors
    assert error.message == "EmbeddingNode 'embed': texts must be a list of strings, got dict"
    assert server.total_requests == 0


def test_unknown_or_wrong_kind_of_resource_is_a_build_error(
    register_embedding: Register,
) -> None:
    get_registry().register("llm:chat-only", {"model": "gpt-4o-mini"})
    try:
        for key, problem in [
            ("nowhere", "unknown resource 'embedding:nowhere'"),
            ("llm:chat-only", "llm:chat-only is not an embedding resource"),
        ]:
            with pytest.raises(GraphBuildError, match=problem):
                embed_graph(key).build()
    finally:
        get_registry().unregister("llm:chat-only")
    with GraphNode(name="g"), pytest.raises(GraphDefinitionError, match="inputs need texts"):
        EmbeddingNode(name="e", resource_key="x", inputs={})


def test_importing_hush_does_not_load_the_openai_sdk() -> None:
    code = "import sys, hush; assert 'openai' not in sys.modules; hush.EmbeddingNode"
    code += "; assert 'openai' not in sys.modules"  # loaded by the first embeddings call
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_exported_from_hush_and_hush_providers() -> None:
    assert hush.EmbeddingNode is EmbeddingNode
    assert hush.providers.EmbeddingNode is EmbeddingNode


# -- resources.yaml -----------------------------------------------------------------------

UPSTREAM = """\
llm:gpt-4o-mini:
  base_url: {url}
  model: gpt-4o-mini
embedding:bge-m3:
  base_url: {url}
  model: bge-m3
  batch_size: 16
  input_cost_per_mtok: 0.02
reranking:bge-reranker:
  base_url: {url}
  model: bge-reranker-v2-m3
vectordb:milvus:
  uri: http://localhost:19530
"""


def test_an_upstream_style_resources_file_loads_and_warns_about_unknown_sections(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "resources.yaml"
    path.write_text(UPSTREAM.format(url="http://127.0.0.1:9/v1"))
    registry = ResourceRegistry(path)
    with caplog.at_level(logging.WARNING, logger="hush.providers.resources"):
        keys = registry.keys()
    assert keys == ["embedding:bge-m3", "llm:gpt-4o-mini", "rerank:bge-reranker"]
    assert "'vectordb:milvus' is ignored" in caplog.text
    assert registry.get_llm("gpt-4o-mini").model == "gpt-4o-mini"
    embedding = registry.get_embedding("bge-m3")
    assert (embedding.batch_size, embedding.input_cost_per_mtok) == (16, 0.02)
    assert registry.get_rerank("bge-reranker").model == "bge-reranker-v2-m3"
    assert registry.get_rerank("reranking:bge-reranker") is registry.get_rerank("bge-reranker")
