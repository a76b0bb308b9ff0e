"""Chat clients by resource, and calls with fallback across resources.

Each resource has one :class:`~hush.providers.client.LLMClient` per owner: the current
``client_scope()`` (a run, or your ``async with`` block), else the running event loop (see
:mod:`hush.providers.client_scope`). All of them draw on the resource's one process-wide
limiter.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic

from hush.providers.client import LLMClient, LLMResult, TokenCallback
from hush.providers.client_scope import current_scope, scoped_client
from hush.providers.errors import BudgetExceededError, LLMCallError, ResourceUnavailableError
from hush.providers.failures import FALLBACK_STATUS
from hush.providers.resources import ResourceRegistry, get_registry, normalize_key
from hush.providers.spend import RunSpend
from hush.providers.spend import current as current_spend

__all__ = ["aclose_all", "complete", "get_client"]

logger = logging.getLogger("hush.providers.client")


def get_client(resource_key: str, *, registry: ResourceRegistry | None = None) -> LLMClient:
    """The current scope's client for ``resource_key`` (created on first use)."""
    key = normalize_key(resource_key)
    resource = (registry or get_registry()).get_llm(key)
    return scoped_client(key, resource, lambda: LLMClient(key, resource), LLMClient)


async def aclose_all() -> None:
    """Close every client of the current scope now (they are recreated on next use)."""
    await current_scope().aclose()


async def complete(
    resource_keys: str | Sequence[str],
    messages: Sequence[Mapping[str, Any]],
    *,
    params: Mapping[str, Any] | None = None,
    response_format: type[pydantic.BaseModel] | Mapping[str, Any] | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
    registry: ResourceRegistry | None = None,
    attempts: int | None = None,
    timeout: float | None = None,
    on_token: TokenCallback | None = None,
    spend: RunSpend | None = None,
    cache: bool = True,
) -> LLMResult:
    """Call the first resource; when it fails for availability, try the next ones in order.

    Availability means a retryable failure left after that resource's retries (429, 5xx,
    timeout, connection, malformed body), 401/403/404, or a resource that cannot be
    reached or asked to wait too long. Other failures (a 400, a reply not matching
    ``response_format``) are raised at once. When every resource fails, the
    :class:`LLMCallError` lists each one's failure in ``failures``. ``attempts`` and
    ``timeout`` apply to each resource; ``on_token`` streams the reply (see
    :meth:`LLMClient.complete`).

    ``spend`` (default: the running run's, see :mod:`hush.providers.spend`) counts the
    call, holds it to the run's budget and, unless ``cache=False``, answers it from
    the run's response cache when any of the resources was asked the same before
    (nothing is sent; a streamed call gets the whole reply as one token).
    """
    keys = [resource_keys] if isinstance(resource_keys, str) else list(resource_keys)
    if not keys:
        raise ValueError("complete() needs at least one resource key")
    registry = registry or get_registry()
    clients = [get_client(key, registry=registry) for key in keys]
    if spend is None:
        spend = current_spend.get()
    store = spend.cache if spend is not None and cache else None
    request = (messages, params, response_format, tools)
    if store is not None:
        assert spend is not None
        for client in clients:
            key, model_type = client.request_key(*request)
            answer = store.get(key)
            found = client.cached_result(answer, model_type) if answer else None
            if found is not None:
                spend.answered_from_cache(client.key, client.price)
                if on_token is not None and found.content:
                    on_token(found.content, 1)
                return found
    failures: list[LLMCallError] = []
    for position, client in enumerate(clients):
        try:
            result = await client.complete(
                messages,
                params=params,
                response_format=response_format,
                tools=tools,
                attempts=attempts,
                timeout=timeout,
                on_token=on_token,
                spend=spend,
            )
            if store is not None:
                store.put(client.request_key(*request)[0], client.resource.model, result.answer())
            return result
        except LLMCallError as error:
            failures.append(error)
            unusable = isinstance(error, ResourceUnavailableError)
            if not (error.retryable or unusable or error.status_code in FALLBACK_STATUS):
                break
            if position + 1 < len(clients):
                logger.info(
                    "%s failed (%s); falling back to %s",
                    client.key,
                    error,
                    clients[position + 1].key,
                )
    refused = [error for error in failures if isinstance(error, BudgetExceededError)]
    if len(failures) == 1 or refused:
        raise (refused[-1] if refused else failures[0])
    summary = "; ".join(str(error) for error in failures)
    last = failures[-1]
    raise LLMCallError(
        f"{len(failures)} resources failed: {summary}",
        status_code=last.status_code,
        resource_key=None,
        retryable=all(error.retryable for error in failures),
        attempts=sum(error.attempts for error in failures),
        failures=failures,
        retries_exhausted=any(error.retries_exhausted for error in failures),
    )
