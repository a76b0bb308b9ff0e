"""The clients of each event loop, closed with it, and calls with fallback across resources.

HTTP connections belong to the event loop that opened them, so each running loop
(each ``asyncio.run``, each thread running a loop) gets its own
:class:`~hush.providers.client.LLMClient` per resource; all of them draw on the
resource's one process-wide limiter. A loop's clients are closed when the loop
shuts down (``asyncio.run`` and ``anyio.run`` finalize async generators before
closing the loop; a small generator registered on the loop does the closing), so
no socket outlives its loop. A client replaced because its resource's settings
changed is closed only once its calls in flight are over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pydantic

from hush.providers.client import FALLBACK_STATUS, LLMClient, LLMResult, TokenCallback
from hush.providers.errors import BudgetExceededError, LLMCallError, ResourceUnavailableError
from hush.providers.resources import ResourceRegistry, get_registry, normalize_key
from hush.providers.spend import RunSpend
from hush.providers.spend import current as current_spend

__all__ = ["aclose_all", "complete", "get_client"]

logger = logging.getLogger("hush.providers.client")


class _LoopClients:
    """The clients of one event loop, and the generator that closes them with it."""

    def __init__(self) -> None:
        self.clients: dict[str, LLMClient] = {}
        self.keeper: AsyncIterator[None] | None = None

    async def aclose(self) -> None:
        clients, self.clients = list(self.clients.values()), {}
        await asyncio.gather(*(client.aclose() for client in clients), return_exceptions=True)


async def _close_with_the_loop(owner: _LoopClients) -> AsyncIterator[None]:
    """Yields once; finalized by the loop's shutdown, when it closes the clients."""
    try:
        yield
    finally:
        await owner.aclose()


_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClients] = (
    weakref.WeakKeyDictionary()
)


def _for_running_loop() -> _LoopClients:
    loop = asyncio.get_running_loop()
    owner = _loops.get(loop)
    if owner is None:
        owner = _loops[loop] = _LoopClients()
        keeper = _close_with_the_loop(owner)
        step: Any = keeper.__anext__()
        with contextlib.suppress(StopIteration):
            step.send(None)  # registers the generator with the loop, runs it to its yield
        owner.keeper = keeper
    return owner


def get_client(resource_key: str, *, registry: ResourceRegistry | None = None) -> LLMClient:
    """The running loop's client for ``resource_key`` (created on first use)."""
    key = normalize_key(resource_key)
    resource = (registry or get_registry()).get_llm(key)
    owner = _for_running_loop()
    client = owner.clients.get(key)
    if client is None or client.resource != resource:
        if client is not None:
            client.retire()
        client = owner.clients[key] = LLMClient(key, resource)
    return client


async def aclose_all() -> None:
    """Close every client of the running loop now (they are recreated on next use)."""
    owner = _loops.get(asyncio.get_running_loop())
    if owner is not None:
        await owner.aclose()


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
    )
