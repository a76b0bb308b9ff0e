"""``EmbeddingNode``: vectors for texts from an OpenAI-compatible ``/embeddings`` endpoint.

Texts go out in batches of the resource's ``batch_size``, each batch one request
through the ``openai`` SDK's embeddings client, under the resource's limiter,
retries, run budget (prices per million input tokens) and response cache (one
entry per text, so a text embedded before is never sent again).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hush.core.errors import NodeValueError
from hush.providers.attempts import Estimate, ResourceCaller
from hush.providers.cache import request_key
from hush.providers.client_scope import scoped_client
from hush.providers.connections import make_openai
from hush.providers.failures import MalformedReply, http_timeout
from hush.providers.resource_node import ResourceNode
from hush.providers.resources import (
    EmbeddingResource,
    ResourceRegistry,
    get_registry,
    normalize_key,
)
from hush.providers.spend import RunSpend
from hush.providers.spend import current as current_spend
from hush.providers.tokens import count_text_tokens

if TYPE_CHECKING:
    from hush.core.call import NodeCall

__all__ = ["EmbeddingClient", "EmbeddingNode", "EmbeddingResult", "embed"]

logger = logging.getLogger(__name__)

Vector = list[float]


@dataclass(slots=True)
class EmbeddingResult:
    """The vectors of one call's texts, in order, and what they cost."""

    embeddings: list[Vector]
    usage: dict[str, int]
    """``prompt_tokens`` and ``total_tokens`` of the requests sent (cached texts count 0)."""
    model: str
    cost: float | None
    latency_s: float
    requests: int
    """Requests sent (batches, retries included)."""
    cached: int
    """Texts answered from the response cache."""
    resource_key: str


class EmbeddingClient:
    """Embeddings from one resource over an ``openai.AsyncOpenAI`` client (SDK retries off)."""

    def __init__(self, key: str, resource: EmbeddingResource) -> None:
        self.key = key
        self.resource = resource
        self.caller = ResourceCaller(key, resource)
        self.openai = make_openai(resource)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.openai.close()

    async def embed(
        self,
        texts: Sequence[str],
        *,
        params: Mapping[str, Any] | None = None,
        attempts: int | None = None,
        timeout: float | None = None,
        spend: RunSpend | None = None,
        cache: bool = True,
    ) -> EmbeddingResult:
        """Vectors for ``texts``, in order; batches are sent concurrently (the limiter paces
        them) and a failed batch fails the call with :class:`LLMCallError`."""
        params = dict(params or {})
        started = time.monotonic()
        vectors: list[Vector | None] = [None] * len(texts)
        store = spend.cache if spend is not None and cache else None
        keys = [self._cache_key(text, params) for text in texts]
        if store is not None:
            for i, key in enumerate(keys):
                answer = store.get(key)
                vector = answer.get("embedding") if answer else None
                if isinstance(vector, list):
                    vectors[i] = vector
        missing = [i for i, v in enumerate(vectors) if v is None]
        hits = len(texts) - len(missing)
        if spend is not None and not missing and texts:
            spend.answered_from_cache(self.key, self.caller.price)
        size = self.resource.batch_size
        batches = [missing[i : i + size] for i in range(0, len(missing), size)]
        results = await _all(
            self._batch([texts[i] for i in batch], params, attempts, timeout, spend)
            for batch in batches
        )
        usage = {"prompt_tokens": 0, "total_tokens": 0}
        cost: float | None = None if batches and self.caller.price is None else 0.0
        requests = 0
        model = self.resource.model
        for batch, sent in zip(batches, results, strict=True):
            reply = sent.reply
            model = str(getattr(reply, "model", None) or model)
            for i, item in zip(batch, reply.data, strict=True):
                vectors[i] = list(item.embedding)
                if store is not None:
                    store.put(keys[i], self.resource.model, {"embedding": vectors[i]})
            for name in usage:
                usage[name] += sent.usage.get(name, 0)
            if cost is not None and sent.cost is not None:
                cost += sent.cost
            requests += sent.attempts
        return EmbeddingResult(
            embeddings=[v for v in vectors if v is not None],
            usage=usage,
            model=model,
            cost=cost,
            latency_s=time.monotonic() - started,
            requests=requests,
            cached=hits,
            resource_key=self.key,
        )

    def _cache_key(self, text: str, params: Mapping[str, Any]) -> str:
        return request_key(
            {"operation": "embeddings", "model": self.resource.model, "input": text, **params}
        )

    async def _batch(
        self,
        batch: list[str],
        params: dict[str, Any],
        attempts: int | None,
        timeout: float | None,
        spend: RunSpend | None,
    ) -> Any:
        tokens = sum(count_text_tokens(text) for text in batch)

        async def request(seconds: float, attempt: int) -> tuple[Any, Mapping[str, str]]:
            raw = await self.openai.embeddings.with_raw_response.create(
                model=self.resource.model,
                input=batch,
                timeout=http_timeout(seconds),
                **params,
            )
            reply = raw.parse()
            data = sorted(reply.data or [], key=lambda item: item.index)
            if len(data) != len(batch):
                raise MalformedReply(f"{len(data)} vectors for {len(batch)} texts")
            reply.data = data
            return reply, raw.headers

        def read(reply: Any) -> tuple[dict[str, int], int]:
            usage = getattr(reply, "usage", None)
            prompt = int(getattr(usage, "prompt_tokens", 0) or 0) if usage else 0
            if prompt <= 0:
                return {"prompt_tokens": tokens, "total_tokens": tokens, "estimated": True}, tokens
            total = int(getattr(usage, "total_tokens", 0) or 0) or prompt
            return {"prompt_tokens": prompt, "total_tokens": total}, total

        return await self.caller.send(
            request,
            read,
            Estimate(tokens, 0, tokens),
            attempts=attempts,
            timeout=timeout,
            spend=spend,
        )


async def _all(calls: Any) -> list[Any]:
    """Await every call at once; the first failure cancels the others and is raised."""
    tasks: list[asyncio.Task[Any]] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(call) for call in calls]
    except BaseExceptionGroup as group_error:
        raise group_error.exceptions[0] from None
    return [task.result() for task in tasks]


def get_embedding_client(
    resource_key: str, *, registry: ResourceRegistry | None = None
) -> EmbeddingClient:
    """The current scope's client for the embedding resource ``resource_key``."""
    resource = (registry or get_registry()).get_embedding(resource_key)
    key = normalize_key(resource_key, "embedding")
    return scoped_client(key, resource, lambda: EmbeddingClient(key, resource), EmbeddingClient)


async def embed(
    resource_key: str,
    texts: Sequence[str],
    *,
    params: Mapping[str, Any] | None = None,
    attempts: int | None = None,
    timeout: float | None = None,
    cache: bool = True,
) -> EmbeddingResult:
    """Vectors for ``texts`` from ``resource_key``, under the running run's budget and cache."""
    client = get_embedding_client(resource_key)
    return await client.embed(
        texts,
        params=params,
        attempts=attempts,
        timeout=timeout,
        spend=current_spend.get(),
        cache=cache,
    )


class EmbeddingNode(ResourceNode):
    """Embeds ``inputs["texts"]`` (a list of strings, or one string) with ``resource_key``.

    Outputs ``embeddings`` (one vector per text, in order), ``usage``
    (``prompt_tokens``, ``total_tokens``), ``model``, ``cost`` (USD, ``None``
    when the resource has no price), ``latency`` (seconds) and ``cached`` (how
    many texts the response cache answered). Extra keyword arguments
    (``dimensions=256``) are sent with each request. An empty string or a
    non-string text is the node's error, naming its position.
    """

    kind = "embedding"
    trace_kind = "llm"
    operation = "embeddings"
    category = "embedding"
    required_inputs = ("texts",)

    def output_keys(self) -> frozenset[str] | None:
        """What one call produces."""
        return frozenset({"embeddings", "usage", "model", "cost", "latency", "cached", "error"})

    def get_resource(self, registry: ResourceRegistry | None = None) -> EmbeddingResource:
        """The embedding resource ``resource_key`` names."""
        return (registry or get_registry()).get_embedding(self.resource_key)

    async def run(self, inputs: dict[str, Any], call: NodeCall) -> Mapping[str, Any] | None:
        """Embed the texts (in batches, through the limiter, with retries)."""
        texts = inputs["texts"]
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list | tuple):
            raise NodeValueError(
                f"EmbeddingNode '{self.name}': texts must be a list of strings, "
                f"got {type(texts).__name__}"
            )
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text:
                raise NodeValueError(
                    f"EmbeddingNode '{self.name}': texts[{i}] must be a non-empty string, "
                    f"got {text!r}"
                )
        params = {**self.params, **{k: v for k, v in inputs.items() if k != "texts"}}
        if not texts:
            return _outputs(EmbeddingResult([], {}, self.model_name(), 0.0, 0.0, 0, 0, ""))

        def send() -> Any:
            return embed(
                self.resource_key,
                texts,
                params=params,
                attempts=call.retry.attempts if call.retry is not None else None,
                timeout=call.timeout,
                cache=self.cache,
            )

        def report(result: EmbeddingResult) -> dict[str, Any]:
            dims = len(result.embeddings[0]) if result.embeddings else 0
            return {
                "response_model": result.model,
                "output": f"{len(result.embeddings)} vectors of {dims} dimensions",
                "usage": result.usage,
                "resource": result.resource_key,
                "attempts": max(1, result.requests),
                "cost": result.cost,
                "cached": result.cached == len(texts),
            }

        result = await self.traced(call, list(texts), send, report)
        return _outputs(result)


def _outputs(result: EmbeddingResult) -> dict[str, Any]:
    return {
        "embeddings": result.embeddings,
        "usage": result.usage,
        "model": result.model,
        "cost": result.cost,
        "latency": result.latency_s,
        "cached": result.cached,
    }
