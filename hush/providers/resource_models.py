"""The settings of each kind of resource (chat, embedding, rerank, Langfuse) and their keys.

A resource is named ``category:name`` (``llm:gpt-4o-mini``); each category has
its pydantic model here, which validates a resource's settings and keeps its
secrets as ``SecretStr``. Each model's validator is built when it first validates
(``defer_build``): a run that uses chat resources only never builds the others.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    SecretStr,
    ValidationInfo,
    model_validator,
)

__all__ = [
    "CATEGORIES",
    "CATEGORY_ALIASES",
    "Credential",
    "EmbeddingResource",
    "LLMResource",
    "LangfuseResource",
    "RerankResource",
    "Resource",
    "normalize_key",
]

logger = logging.getLogger("hush.providers.resources")

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
"""A finite number above zero (``.inf`` and ``.nan`` are refused)."""
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
"""A finite number, zero or more."""

_stripped_warned: set[tuple[str, str]] = set()
_stripped_lock = threading.Lock()


def _resource_name(info: ValidationInfo, model: type[BaseModel] | None = None) -> str:
    """The key of the resource being validated, else its model's name."""
    context = info.context if isinstance(info.context, Mapping) else {}
    title = (info.config or {}).get("title") or (model.__name__ if model else None)
    return str(context.get("resource") or title or "a resource")


def _strip_credential(value: Any, info: ValidationInfo) -> Any:
    """A key without the spaces or line break pasted around it, warned about once per
    resource and field (never showing the key)."""
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not isinstance(raw, str) or raw == raw.strip():
        return value
    where = _resource_name(info)
    field = "a value in headers" if info.field_name == "headers" else str(info.field_name)
    with _stripped_lock:
        first = (where, field) not in _stripped_warned
        _stripped_warned.add((where, field))
    if first:
        logger.warning(
            "%s: %s has spaces or a line break around it (pasted with the key?); they were removed",
            where,
            field,
        )
    return raw.strip()


Credential = Annotated[SecretStr, BeforeValidator(_strip_credential)]
"""A secret, stripped of surrounding whitespace on load."""


class LLMResource(BaseModel):
    """An OpenAI-compatible chat endpoint and the limits it is used under."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    api_type: Literal["openai", "azure"] = "openai"
    """``openai`` for any OpenAI-compatible server (OpenAI, vLLM, Ollama, ...); ``azure``
    for Azure OpenAI (``base_url`` is the Azure endpoint, ``model`` the deployment)."""
    base_url: str = "https://api.openai.com/v1"
    api_key: Credential | None = None
    """``None`` sends no real key (a placeholder), never one taken from the environment."""
    model: str = Field(min_length=1)
    api_version: str | None = None
    """Required for ``azure``."""
    rpm: PositiveInt | None = None
    """Requests per minute; unset means learned from the server (headers, 429s)."""
    tpm: PositiveInt | None = None
    """Tokens per minute (prompt + ``max_tokens``); unset means learned from the server."""
    max_in_flight: PositiveInt | None = Field(
        default=None, validation_alias=AliasChoices("max_in_flight", "max_concurrency")
    )
    """Requests in flight at once (also the connection pool size); unset means 256. The
    old key ``max_concurrency`` still loads, with a ``DeprecationWarning``."""
    timeout: PositiveFloat = 60.0
    """Seconds allowed for one attempt."""
    max_retries: NonNegativeInt = 6
    """Retries after the first attempt, for 429, 5xx, timeouts, connection errors and
    malformed replies."""
    backoff_base: PositiveFloat = 0.5
    """First retry delay in seconds (doubling, with jitter) when the server gives no
    ``Retry-After``."""
    backoff_max: PositiveFloat = 30.0
    """Longest retry delay in seconds when the server gives no ``Retry-After``."""
    max_retry_wait: PositiveFloat = 120.0
    """Longest ``Retry-After`` (or pause) honoured, in seconds. A server asking for more
    (a spent daily quota) fails that call at once, and calls to the resource fail at
    once until then; the run can be resumed later."""
    headers: dict[str, Credential] = Field(default_factory=dict)
    """Extra HTTP headers sent with every request (values are treated as secrets)."""
    rate_limit_headers: bool = True
    """Learn limits and remaining budget from ``x-ratelimit-*`` response headers."""
    plain_requests: bool = True
    """Send plain chat completions (not streamed, no pydantic ``response_format``) over the
    resource's HTTP pool without importing the ``openai`` SDK (the same bytes; the first
    request goes out about a second sooner). ``False``: every call goes through the SDK."""
    input_cost_per_mtok: NonNegativeFloat | None = None
    """USD per million prompt tokens (with ``output_cost_per_mtok``; unset: the price table's,
    if it knows the model at this endpoint, else calls cost ``None``)."""
    output_cost_per_mtok: NonNegativeFloat | None = None
    """USD per million completion tokens."""
    cached_input_cost_per_mtok: NonNegativeFloat | None = None
    """USD per million prompt tokens served from the provider's prompt cache (default: the
    input price)."""
    service_tier: str | None = None
    """Sent as ``service_tier`` with every call (for instance ``flex``: batch prices,
    synchronous, slower); a call's own ``service_tier`` parameter wins."""
    service_tier_fallback: bool = False
    """When the provider answers a call sent at a ``service_tier`` with a 429 saying that
    tier's capacity is unavailable, send it again at once without ``service_tier`` (the
    standard tier, at its price)."""
    batch_fallback: Literal["fail", "sync"] = "fail"
    """Batch API: when a batch fails or expires, fail its calls or send them synchronously."""
    batch_window: PositiveFloat = 2.0
    """Batch API (``LLMNode(batch=True)``): seconds without a new call before the collected
    calls are submitted."""
    batch_poll_interval: PositiveFloat = 30.0
    """Batch API: first seconds between polls of a batch (growing with its age)."""
    batch_input_cost_per_mtok: NonNegativeFloat | None = None
    """Batch API price per million prompt tokens (unset: half the input price)."""
    batch_output_cost_per_mtok: NonNegativeFloat | None = None
    """Batch API price per million completion tokens (unset: half the output price)."""

    @model_validator(mode="before")
    @classmethod
    def _old_in_flight_key(cls, data: Any, info: ValidationInfo) -> Any:
        """``max_concurrency`` is the old name of ``max_in_flight`` (its errors name the key
        written)."""
        if not isinstance(data, Mapping) or "max_concurrency" not in data:
            return data
        where = _resource_name(info, cls)
        if "max_in_flight" in data:
            raise ValueError(
                f"{where}: max_concurrency and max_in_flight are both given; keep max_in_flight "
                "(max_concurrency is its old name)"
            )
        warnings.warn(
            f"{where}: 'max_concurrency' is deprecated in a resource; write 'max_in_flight' "
            "(requests in flight at once)",
            DeprecationWarning,
            stacklevel=2,
        )
        return data

    @property
    def max_concurrency(self) -> int | None:
        """The old name of :attr:`max_in_flight` (deprecated)."""
        warnings.warn(
            "LLMResource.max_concurrency is deprecated; read max_in_flight",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.max_in_flight

    @model_validator(mode="after")
    def _azure_needs_version(self) -> LLMResource:
        if self.api_type == "azure" and not self.api_version:
            raise ValueError("api_version is required when api_type is 'azure'")
        return self

    @model_validator(mode="after")
    def _prices_come_in_pairs(self) -> LLMResource:
        given = [self.input_cost_per_mtok is not None, self.output_cost_per_mtok is not None]
        if any(given) and not all(given):
            raise ValueError("set both input_cost_per_mtok and output_cost_per_mtok, or neither")
        if self.cached_input_cost_per_mtok is not None and not all(given):
            raise ValueError(
                "cached_input_cost_per_mtok needs input_cost_per_mtok and output_cost_per_mtok"
            )
        return self


class LangfuseResource(BaseModel):
    """Langfuse credentials (``langfuse:default`` is the tracer's default)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    public_key: Annotated[str, BeforeValidator(_strip_credential), Field(min_length=1)]
    secret_key: Credential
    host: str = "https://cloud.langfuse.com"


class _InputPriced(LLMResource):
    """A resource billed for input tokens only: ``input_cost_per_mtok`` alone is its price."""

    @model_validator(mode="before")
    @classmethod
    def _output_price_is_zero(cls, data: Any) -> Any:
        if (
            isinstance(data, Mapping)
            and data.get("input_cost_per_mtok") is not None
            and data.get("output_cost_per_mtok") is None
        ):
            return {**data, "output_cost_per_mtok": 0.0}
        return data


class EmbeddingResource(_InputPriced):
    """An OpenAI-compatible ``/embeddings`` endpoint (OpenAI, vLLM, TEI, Ollama), with the
    same limits, retries and prices (per million input tokens) as an LLM resource."""

    batch_size: PositiveInt = 64
    """Texts sent in one request."""


class RerankResource(_InputPriced):
    """A rerank endpoint (Jina, Cohere v2, TEI, vLLM): requests go to ``{base_url}/rerank``."""

    base_url: str = Field(min_length=1)


Resource = LLMResource | LangfuseResource

CATEGORIES: dict[str, type[LLMResource] | type[LangfuseResource]] = {
    "llm": LLMResource,
    "langfuse": LangfuseResource,
    "embedding": EmbeddingResource,
    "rerank": RerankResource,
}
"""Known key categories and the model validating each."""

CATEGORY_ALIASES = {"reranking": "rerank", "embeddings": "embedding"}
"""Other spellings of a category (upstream Hush writes ``reranking:``)."""


def normalize_key(key: str, default_category: str = "llm") -> str:
    """``"gpt-4o-mini"`` → ``"llm:gpt-4o-mini"``; a key with a known category is kept."""
    category, sep, name = key.partition(":")
    category = CATEGORY_ALIASES.get(category, category)
    if sep and category in CATEGORIES and name:
        return f"{category}:{name}"
    return f"{default_category}:{key}"
