"""Fixtures for the tracer tests: a loopback OTLP receiver and Langfuse tracers pointed at it."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from otlp_receiver import HangingServer, OtlpReceiver

from hush.observability.langfuse import LangfuseTracer
from hush.providers import get_registry
from hush.testing import MockLLMServer

SECRET_KEY = "sk-lf-test-0123456789abcdef-secret"


@pytest.fixture
def secret_key() -> str:
    """The secret key every test tracer uses."""
    return SECRET_KEY


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    running = OtlpReceiver().start()
    yield running
    running.stop()


@pytest.fixture
def hanging_server() -> Iterator[HangingServer]:
    server = HangingServer()
    yield server
    server.close()


@pytest.fixture
def make_tracer(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., LangfuseTracer]]:
    """Builds LangfuseTracers with a fresh public key each (the SDK keeps one client per key)."""
    for name in ("LANGFUSE_BASE_URL", "LANGFUSE_HOST", "LANGFUSE_TRACING_ENABLED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANGFUSE_MEDIA_UPLOAD_ENABLED", "false")
    made: list[LangfuseTracer] = []

    def make(host: str, **kwargs: Any) -> LangfuseTracer:
        kwargs.setdefault("public_key", f"pk-lf-test-{uuid.uuid4().hex}")
        kwargs.setdefault("secret_key", SECRET_KEY)
        tracer = LangfuseTracer(host=host, **kwargs)
        made.append(tracer)
        return tracer

    yield make
    for tracer in made:
        tracer.close(timeout=0.2)


@pytest.fixture
async def llm_resource() -> AsyncIterator[MockLLMServer]:
    async with MockLLMServer() as server:
        get_registry().register(
            "llm:traced",
            {
                "base_url": server.base_url,
                "api_key": "sk-llm-secret-xyz",
                "model": "gpt-4o-mini",
                "rpm": 10**6,
            },
        )
        yield server
        get_registry().unregister("llm:traced")


@pytest.fixture
def quiet_map_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Keep the expected failures of map items out of the log."""
    caplog.set_level(logging.CRITICAL, logger="hush.core")
    yield
