"""Fixtures for the local OpenAI-compatible server tests."""

from collections.abc import AsyncIterator

import openai
import pytest

from hush.testing import MockLLMServer


@pytest.fixture
async def server() -> AsyncIterator[MockLLMServer]:
    async with MockLLMServer() as running:
        yield running


@pytest.fixture
async def client(server: MockLLMServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=server.base_url, api_key="test", max_retries=0, timeout=5.0
    ) as api:
        yield api
