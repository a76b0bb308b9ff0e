"""Fixtures: a local OpenAI-compatible server and a private resource registry."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from hush.providers.clients import aclose_all
from hush.providers.resources import LLMResource, ResourceRegistry
from hush.testing import MockLLMServer

SECRET = "sk-test-DO-NOT-LEAK-4c1d"
"""The API key every registered test resource carries (it must never show up)."""

Register = Callable[..., LLMResource]


@pytest.fixture
async def server() -> AsyncIterator[MockLLMServer]:
    async with MockLLMServer(latency=0.01, fault_retry_after=0.3) as running:
        yield running


@pytest.fixture
async def registry() -> AsyncIterator[ResourceRegistry]:
    """An empty registry (not the process-wide one); closes this loop's clients afterwards."""
    yield ResourceRegistry(discover=False)
    await aclose_all()


@pytest.fixture
def secret() -> str:
    return SECRET


@pytest.fixture
def register(registry: ResourceRegistry, server: MockLLMServer) -> Register:
    """Register ``llm:<name>`` against the local server with fast retries."""

    def add(name: str = "mock", base_url: str | None = None, **settings: Any) -> LLMResource:
        config = {
            "base_url": base_url or server.base_url,
            "model": "gpt-4o-mini",
            "api_key": SECRET,
            "timeout": 2.0,
            "max_retries": 3,
            "backoff_base": 0.02,
            "backoff_max": 0.1,
            **settings,
        }
        resource = registry.register(f"llm:{name}", config)
        assert isinstance(resource, LLMResource)
        return resource

    return add
