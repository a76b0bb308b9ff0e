"""A local OpenAI-compatible server per test and resources registered against it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from hush.providers.resources import get_registry
from hush.testing import MockLLMServer

SECRET = "sk-test-SECRET-do-not-leak-4242"


@pytest.fixture
async def server() -> AsyncIterator[MockLLMServer]:
    async with MockLLMServer() as srv:
        yield srv


@pytest.fixture
def register() -> Iterator[Callable[..., str]]:
    """Register ``llm:<name>`` for the test; removed afterwards."""
    added: list[str] = []

    def add(name: str, base_url: str, **settings: Any) -> str:
        key = f"llm:{name}"
        config = {
            "base_url": base_url,
            "api_key": SECRET,
            "model": settings.pop("model", "gpt-4o-mini"),
            "backoff_base": 0.01,
            "backoff_max": 0.05,
            "rpm": 600_000,
            **settings,
        }
        get_registry().register(key, config)
        added.append(key)
        return name

    yield add
    for key in added:
        get_registry().unregister(key)
