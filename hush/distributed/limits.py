"""One rate limiter per LLM resource for a whole Ray cluster.

A named async actor per resource (``hush-limiter:<executor>:<key>:<config digest>``) holds
the resource's real :class:`~hush.providers.limiter.ResourceLimiter`. The driver's executor
creates it (so it is owned by the driver, not by a worker, and restarted by Ray if it dies)
and kills it at shutdown; workers look it up by name, and again when it is gone. Permits
are leased per worker: when the executor replaces a dead worker it tells the actor to
:meth:`LimiterActor.forget` that worker, which returns its permits (also those granted
after it died), so a dead worker never shrinks the cluster's capacity. In each Ray worker,
:class:`ClusterLimiter` stands in for it: the requests waiting in that worker
ask together, and the actor grants as many as may go at once (the first waits
for its turn, the others only if they may go right away), so a burst costs one
round trip, not one per request. What each request learned (its real tokens,
rate-limit headers, a 429, a failure) goes back to the actor without waiting
for an answer, so every worker slows down when one is told to. Each request also
counts in the :class:`~hush.providers.run_counters.RunCounters` of its item, which the
worker sends back with the item's result for the driver's ``$state.llm``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import ray
from ray.exceptions import RayActorError

from hush.providers.errors import ResourceUnavailableError
from hush.providers.limiter import Permit, ResourceLimiter
from hush.providers.resources import LLMResource
from hush.providers.run_counters import RunCounters, current

logger = logging.getLogger(__name__)

NAMESPACE = "hush"
BATCH = 16
"""Waiting requests of one worker asked for in one round trip."""


@ray.remote(num_cpus=0)
class LimiterActor:
    """The cluster's limiter of one resource (runs on the actor's event loop)."""

    def __init__(self, key: str, resource: LLMResource) -> None:
        self.limiter = ResourceLimiter.from_resource(key, resource)
        self.permits: dict[int, tuple[str, Permit]] = {}
        self.ids = itertools.count(1)
        self.gone: set[str] = set()
        """Workers the executor replaced: their permits are returned, also late grants."""

    async def grant(self, owner: str, tokens: list[int]) -> list[int] | tuple[str, str, bool]:
        """Permits for the first requests of ``tokens`` of the worker ``owner``: the first
        waits its turn, the rest go only if they may go now. A refusal comes back as
        ``(key, message, unreachable)``."""
        try:
            granted = [await self.limiter.acquire(tokens[0])]
            for more in tokens[1:]:
                permit = self.limiter.try_acquire(more)
                if permit is None:
                    break
                granted.append(permit)
        except ResourceUnavailableError as exc:
            return (exc.resource_key or "", str(exc), exc.unreachable)
        if owner in self.gone:
            for permit in granted:
                permit.release()
            return (self.limiter.key, "this Ray worker was replaced by the executor", False)
        ids = []
        for permit in granted:
            number = next(self.ids)
            self.permits[number] = (owner, permit)
            ids.append(number)
        return ids

    def forget(self, owner: str) -> int:
        """Return the permits of the worker ``owner`` (it died); those it is granted later
        are returned at once. Returns how many were returned."""
        self.gone.add(owner)
        lost = [number for number, (held_by, _) in self.permits.items() if held_by == owner]
        for number in lost:
            self.permits.pop(number)[1].release()
        if lost:
            logger.warning(
                "%s: %d permits of a lost Ray worker returned", self.limiter.key, len(lost)
            )
        return len(lost)

    def feedback(self, reports: list[tuple[Any, ...]]) -> None:
        """Apply what requests learned: ``(kind, permit id, *arguments)``."""
        for kind, number, *args in reports:
            if kind == "retry":
                self.limiter.note_retry()
                continue
            held = self.permits.get(number)
            if held is None:
                continue
            permit = held[1]
            if kind == "commit":
                permit.commit(args[0], args[1])
            elif kind == "rate_limited":
                permit.rate_limited(args[0], args[1])
            elif kind == "failed":
                permit.failed(args[0], unreachable=args[1])
            elif kind == "release":
                permit.release()
                del self.permits[number]

    def stats(self) -> dict[str, Any]:
        """The limiter's counters and rates."""
        import dataclasses

        return dataclasses.asdict(self.limiter.stats())


OWNER = ""
"""This worker's lease name (set by its :class:`~hush.distributed.worker.ItemRunner`)."""


def actor_name(scope: str, key: str, resource: LLMResource) -> str:
    """The name of the limiter actor of ``key`` for the executor ``scope``."""
    digest = hashlib.sha256(resource.model_dump_json().encode()).hexdigest()[:12]
    return f"hush-limiter:{scope}:{key}:{digest}"


def create_limiter_actor(name: str, key: str, resource: LLMResource) -> Any:
    """Start (or find) the limiter actor ``name``; called by the driver, which owns it.
    Ray restarts it if its process dies (its handle stays valid; counts start over)."""
    return LimiterActor.options(  # type: ignore[attr-defined]
        name=name,
        namespace=NAMESPACE,
        get_if_exists=True,
        max_restarts=-1,
        max_concurrency=1000,
    ).remote(key, resource)


class ClusterLimiter(ResourceLimiter):
    """A worker's stand-in for the cluster's limiter of one resource."""

    def __init__(self, key: str, resource: LLMResource) -> None:
        super().__init__(
            key,
            max_in_flight=resource.max_in_flight,
            max_retry_wait=resource.max_retry_wait,
            base_url=resource.base_url,
        )
        self.name = ACTOR_NAMES.get(key, "")
        self.actor = self._look_up()
        self._waiting: deque[tuple[int, asyncio.Future[Permit]]] = deque()
        self._asking = False
        self._reports: list[tuple[Any, ...]] = []
        self._task: asyncio.Task[None] | None = None

    async def acquire(self, tokens: int = 0) -> Permit:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Permit] = loop.create_future()
        self._waiting.append((tokens, future))
        if not self._asking:
            self._asking = True
            self._task = loop.create_task(self._ask())
        enqueued = time.monotonic()
        try:
            permit = await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                future.result().release()
            raise
        permit.counters = counters = current.get()
        permit.waited_s = permit.sent_at - enqueued
        if counters is not None:
            counters.sent(self.key, permit.waited_s)
        return permit

    def try_acquire(self, tokens: int = 0) -> Permit | None:
        return None

    def note_retry(self) -> None:
        self.report(("retry", 0))
        counters = current.get()
        if counters is not None:
            counters.retried(self.key)

    def report(self, item: tuple[Any, ...]) -> None:
        """Queue one request's news for the actor; what queued in one turn of the event loop
        goes in one message, not waited for."""
        self._reports.append(item)
        if len(self._reports) == 1:
            try:
                asyncio.get_running_loop().call_soon(self._send)
            except RuntimeError:
                self._send()

    def _look_up(self) -> Any:
        """The driver's limiter actor of this resource (by name)."""
        try:
            return ray.get_actor(self.name, namespace=NAMESPACE)
        except ValueError:
            raise ResourceUnavailableError(
                f"{self.key}: the cluster's limiter ({self.name or 'unnamed'}) is gone; "
                "was the executor shut down while its map ran?",
                resource_key=self.key,
            ) from None

    def _send(self) -> None:
        reports, self._reports = self._reports, []
        if reports:
            self.actor.feedback.remote(reports)

    async def _ask(self) -> None:
        try:
            while self._waiting:
                asked = [tokens for tokens, _ in itertools.islice(self._waiting, BATCH)]
                try:
                    answer = await self._ask_actor(asked)
                except Exception as exc:
                    _, future = self._waiting.popleft()
                    if not future.done():
                        future.set_exception(exc)
                    continue
                if isinstance(answer, tuple):
                    key, message, unreachable = answer
                    _, future = self._waiting.popleft()
                    if not future.done():
                        future.set_exception(
                            ResourceUnavailableError(
                                message, resource_key=key, unreachable=unreachable
                            )
                        )
                    continue
                now = time.monotonic()
                for number in answer:
                    tokens, future = self._waiting.popleft()
                    permit = RemotePermit(self, number, tokens, now)
                    if future.done():
                        permit.release()
                    else:
                        future.set_result(permit)
        finally:
            self._asking = False

    async def _ask_actor(self, asked: list[int]) -> list[int] | tuple[str, str, bool]:
        """Ask the actor; when it is gone, look it up again and ask once more."""
        try:
            answer: list[int] | tuple[str, str, bool] = await self.actor.grant.remote(OWNER, asked)
        except RayActorError:
            logger.warning("%s: the cluster's limiter was lost; looking it up again", self.key)
            self.actor = self._look_up()
            answer = await self.actor.grant.remote(OWNER, asked)
        return answer


ACTOR_NAMES: dict[str, str] = {}
"""In a worker: the limiter actor's name of each LLM resource (sent with the body)."""


class RemotePermit(Permit):
    """A permit granted by the cluster's limiter: what happens to the request is reported
    back to it."""

    __slots__ = ("_cluster", "_number")

    def __init__(self, cluster: ClusterLimiter, number: int, tokens: int, sent_at: float) -> None:
        self._cluster = cluster
        self._number = number
        self._released = False
        self.tokens = tokens
        self.sent_at = sent_at
        self.waited_s = 0.0
        self.counters = None
        self.outcome = None

    def _counts(self, outcome: Any) -> RunCounters | None:
        """The counters to tell of the request's first outcome (``None``: tell none)."""
        if self.outcome is not None:
            return None
        self.outcome = outcome
        return self.counters

    def commit(self, actual_tokens: int, headers: Mapping[str, str] | None = None) -> None:
        self._cluster.report(("commit", self._number, actual_tokens, _plain(headers)))
        if counters := self._counts("answered"):
            counters.answered(self._cluster.key, actual_tokens)

    def rate_limited(
        self, headers: Mapping[str, str] | None = None, retry_after: float | None = None
    ) -> float:
        self._cluster.report(("rate_limited", self._number, _plain(headers), retry_after))
        if counters := self._counts("rate_limited"):
            counters.rate_limited(self._cluster.key, retry_after or 0.0)
        return retry_after or 0.0

    def failed(
        self, headers: Mapping[str, str] | None = None, *, unreachable: str | None = None
    ) -> None:
        self._cluster.report(("failed", self._number, _plain(headers), unreachable))
        if counters := self._counts("failed" if unreachable is None else "unreachable"):
            counters.failed(self._cluster.key)

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._cluster.report(("release", self._number))


def _plain(headers: Mapping[str, str] | None) -> dict[str, str] | None:
    if headers is None:
        return None
    with contextlib.suppress(Exception):
        return {str(k): str(v) for k, v in headers.items()}
    return None
