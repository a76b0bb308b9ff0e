"""Settings of the local OpenAI-compatible server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Rate = Annotated[float, Field(ge=0.0, le=1.0)]
"""A probability in ``[0, 1]``."""

LatencyFn = Callable[[dict[str, Any]], float]
"""Computes the delay of one request from its JSON body."""

Latency = float | tuple[float, float] | LatencyFn
"""Fixed seconds, a ``(low, high)`` uniform range, or a callable of the request body."""


class MockLLMConfig(BaseModel):
    """Behaviour of :class:`~hush.testing.MockLLMServer`; fields may be changed while it runs.

    Rate limits are token buckets refilled continuously at ``limit / 60`` per second
    holding at most ``limit / 60 * burst_seconds`` (at least one request's worth).
    """

    model_config = ConfigDict(validate_assignment=True, arbitrary_types_allowed=True)

    models: list[str] = Field(default_factory=lambda: ["gpt-4o-mini", "mock-model"])
    """Names listed by ``GET /v1/models``; requests may name any model."""

    latency: Latency = 0.0
    """Delay before answering each chat request (also before injected faults)."""

    stream_chunk_chars: Annotated[int, Field(ge=1)] = 16
    """Characters of content per streamed chunk."""

    stream_chunk_delay: Annotated[float, Field(ge=0.0)] = 0.0
    """Pause between streamed chunks, in seconds."""

    reply_chars: Annotated[int, Field(ge=0)] = 60
    """How much of the last user message the reply quotes."""

    rpm: Annotated[int, Field(gt=0)] | None = None
    """Requests per minute; ``None`` means unlimited."""

    tpm: Annotated[int, Field(gt=0)] | None = None
    """Tokens per minute (prompt + ``max_tokens`` or the reply); ``None`` means unlimited."""

    burst_seconds: Annotated[float, Field(gt=0.0)] = 1.0
    """Bucket capacity in seconds of refill: how big a burst is accepted at once."""

    rate_limit_headers: Literal["always", "on_429", "never"] = "always"
    """When ``x-ratelimit-*`` headers are sent: on every response, only with 429s (as
    some providers do), or never (429s then carry only ``Retry-After``)."""

    error_rate_500: Rate = 0.0
    error_rate_503: Rate = 0.0
    hang_rate: Rate = 0.0
    drop_rate: Rate = 0.0
    malformed_rate: Rate = 0.0

    seed: int = 0
    """Seeds the random faults and latency ranges so runs are reproducible."""

    hang_seconds: Annotated[float, Field(gt=0.0)] = 600.0
    """How long a hung request sleeps (it is cut short when the server stops)."""

    fault_retry_after: Annotated[float, Field(ge=0.0)] = 0.05
    """``Retry-After`` sent with injected 429 and 503 faults, in seconds."""

    api_key: str | None = None
    """When set, requests must carry ``Authorization: Bearer <api_key>`` (else 401)."""

    echo_auth: bool = False
    """A careless server: every error message quotes the request's ``Authorization``
    header (and any ``x-`` header), as some proxies do."""

    max_records: Annotated[int, Field(ge=0)] = 100_000
    """Most recent requests kept in :attr:`MockLLMServer.requests` (applied on reset)."""
