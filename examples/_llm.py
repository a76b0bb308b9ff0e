"""Where the examples' LLM calls go: a real provider when a key is set, else the local server."""

from __future__ import annotations

import os

from hush.providers import get_registry
from hush.testing import MockLLMConfig, MockLLMServer

_local: MockLLMServer | None = None


def ensure_llm(key: str = "gpt-4o-mini", **limits: int) -> str:
    """Make ``llm:<key>`` usable and return ``key``.

    Uses ``resources.yaml`` if it defines the key, else OpenAI when
    ``OPENAI_API_KEY`` is set, else starts the bundled local OpenAI-compatible
    server in a background thread (no key needed).
    """
    global _local
    registry = get_registry()
    if registry.has(f"llm:{key}"):
        return key
    if os.environ.get("OPENAI_API_KEY"):
        registry.register(
            f"llm:{key}", {"model": key, "api_key": os.environ["OPENAI_API_KEY"], **limits}
        )
        return key
    if _local is None:
        _local = MockLLMServer(
            MockLLMConfig(latency=(0.05, 0.2), rpm=3000, error_rate_500=0.03, seed=7)
        )
        _local.start_in_thread()
    registry.register(
        f"llm:{key}",
        {"base_url": _local.base_url, "model": key, "rpm": 3000, **limits},
    )
    return key


def local_server() -> MockLLMServer | None:
    """The bundled server the examples started, if they use it (no key and no resources.yaml)."""
    return _local
