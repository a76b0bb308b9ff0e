"""Chat, embeddings and rerank share one request loop: the same fault is classified,
retried and reported alike by all three (over real HTTP to the local server)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from hush.providers import get_registry
from hush.providers.client_scope import client_scope
from hush.providers.clients import complete
from hush.providers.embedding import embed
from hush.providers.errors import LLMCallError
from hush.providers.rerank import rerank
from hush.testing import MockLLMServer

SETTINGS = {"max_retries": 1, "backoff_base": 0.01, "backoff_max": 0.02, "api_key": "k"}
KINDS = ("chat", "embeddings", "rerank")


@pytest.fixture
async def call(server: MockLLMServer) -> AsyncIterator[Callable[[str, str], Awaitable[Any]]]:
    """Send ``text`` as one chat, embeddings or rerank call to the local server."""
    keys = {"chat": "llm:same", "embeddings": "embedding:same", "rerank": "rerank:same"}
    for key in keys.values():
        get_registry().register(key, {"base_url": server.base_url, "model": "m", **SETTINGS})

    async def send(kind: str, text: str) -> Any:
        if kind == "chat":
            return await complete(keys[kind], [{"role": "user", "content": text}])
        if kind == "embeddings":
            return await embed(keys[kind], [text])
        return await rerank(keys[kind], text, ["a document"])

    async with client_scope():
        yield send
    for key in keys.values():
        get_registry().unregister(key)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("fault", "sent", "says", "retryable"),
    [
        ("[[fail:503]]", 2, "HTTP 503", True),
        ("[[fail:400]]", 1, "HTTP 400", False),
        ("[[fail:cut]]", 2, "the reply was cut after the server started answering", True),
    ],
)
async def test_a_fault_is_classified_and_retried_alike_by_chat_embeddings_and_rerank(
    server: MockLLMServer,
    call: Callable[[str, str], Awaitable[Any]],
    kind: str,
    fault: str,
    sent: int,
    says: str,
    retryable: bool,
) -> None:
    with pytest.raises(LLMCallError) as caught:
        await call(kind, f"hello {fault}")
    error = caught.value
    assert says in error.message
    assert not error.message.count("cannot connect")
    assert (error.retryable, error.attempts, error.retries_exhausted) == (
        retryable,
        sent,
        retryable,
    )
    assert server.total_requests == sent
