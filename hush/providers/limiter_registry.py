"""The process-wide limiter of each resource, by key (one per resource config)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from hush.providers.resource_models import LLMResource

if TYPE_CHECKING:
    from hush.providers.limiter import ResourceLimiter

__all__ = ["all_limiters", "get_limiter", "use_limiters"]

_limiters: dict[str, tuple[LLMResource, ResourceLimiter]] = {}
_limiters_lock = threading.Lock()
_factory: Callable[[str, LLMResource], ResourceLimiter] | None = None


def get_limiter(key: str, resource: LLMResource) -> ResourceLimiter:
    """The process-wide limiter of ``key``; a changed resource config gets a fresh one."""
    with _limiters_lock:
        entry = _limiters.get(key)
        if entry is None or entry[0] != resource:
            if _factory is not None:
                make = _factory
            else:
                from hush.providers.limiter import ResourceLimiter

                make = ResourceLimiter.from_resource
            entry = (resource, make(key, resource))
            _limiters[key] = entry
        return entry[1]


def use_limiters(factory: Callable[[str, LLMResource], ResourceLimiter] | None) -> None:
    """Make :func:`get_limiter` build limiters with ``factory`` from now on (``None``: the
    process's own). A Ray worker uses it to draw on the cluster's limiters."""
    global _factory
    with _limiters_lock:
        _factory = factory
        _limiters.clear()


def all_limiters() -> dict[str, ResourceLimiter]:
    """Every limiter created in this process, by resource key."""
    with _limiters_lock:
        return {key: limiter for key, (_, limiter) in _limiters.items()}
