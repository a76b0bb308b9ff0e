"""The run's response cache, seen from Ray workers.

The driver's executor starts one :class:`CacheActor` per cache file, on the
driver's node, reading the same SQLite file. A worker's :class:`WorkerCache`
looks answers up there (a short blocking call: the cache's lookup is
synchronous) and hands new answers to the driver, which stores them in its own
cache, so workers and driver answer each other's repeated requests.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import ray

if TYPE_CHECKING:
    from hush.distributed.outbox import Outbox

logger = logging.getLogger(__name__)

LOOKUP_TIMEOUT = 5.0
"""Seconds a worker waits for a lookup before sending the request (a miss)."""


@ray.remote(num_cpus=0)
class CacheActor:
    """Reads the driver's response cache file."""

    def __init__(self, path: str, store_incomplete: bool) -> None:
        from hush.providers.cache import ResponseCache

        self.cache = ResponseCache(path, store_incomplete=store_incomplete)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.cache.get(key)


def start_cache_actor(path: str, store_incomplete: bool) -> Any:
    """A cache actor on this (the driver's) node."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    return CacheActor.options(  # type: ignore[attr-defined]
        scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)
    ).remote(path, store_incomplete)


class WorkerCache:
    """The driver's cache for the LLM calls of one worker item (see the module docstring)."""

    def __init__(self, actor: Any, outbox: Outbox) -> None:
        self.actor = actor
        self.outbox = outbox

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] | None = ray.get(
                self.actor.get.remote(key), timeout=LOOKUP_TIMEOUT
            )
        except Exception as exc:
            logger.warning("response cache lookup failed (%s): a miss, the call is sent", exc)
            return None
        return found

    def put(self, key: str, model: str, answer: Mapping[str, Any]) -> None:
        self.outbox.put(("cache_put", key, model, dict(answer)))
