"""Spreading one LLM node's calls over several resources by weight.

Each call goes first to one resource of the pool, chosen by smooth weighted
round-robin (a pool ``["a", "b"]`` with weights ``[3, 1]`` sends ``a, a, b, a,
a, a, b, a, ...``) among the resources whose limiter could send it at once;
when none could, among those that are not refusing calls (an open breaker, a
``Retry-After`` beyond ``max_retry_wait``), whose limiters then pace it. The
other resources of the pool follow in weight order, so a call that fails on its
resource for availability moves on to them (see
:func:`hush.providers.clients.complete`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

from hush.providers.errors import ResourceError
from hush.providers.limiter import get_limiter
from hush.providers.resources import get_registry, normalize_key


def check_weights(keys: Sequence[str], weights: Sequence[float] | None) -> list[float]:
    """One positive finite weight per key (all 1 when ``weights`` is ``None``); a mismatch
    raises ``ValueError`` saying why."""
    if weights is None:
        return [1.0] * len(keys)
    if isinstance(weights, str) or not isinstance(weights, Sequence):
        raise ValueError(f"weights must be a list of numbers, got {type(weights).__name__}")
    if len(weights) != len(keys):
        raise ValueError(
            f"weights has {len(weights)} numbers for {len(keys)} resources; give one per resource"
        )
    out = []
    for weight in weights:
        if (
            isinstance(weight, bool)
            or not isinstance(weight, int | float)
            or not math.isfinite(weight)
            or weight <= 0
        ):
            raise ValueError(f"weights are positive numbers, got {weight!r}")
        out.append(float(weight))
    return out


def pool_keys(resource_key: object) -> list[str]:
    """``resource_key`` as a list of keys (one string is one key); raises ``ValueError``."""
    keys = [resource_key] if isinstance(resource_key, str) else resource_key
    if not isinstance(keys, Sequence) or not keys:
        raise ValueError("resource_key must be a non-empty string or a non-empty list of them")
    for key in keys:
        if not isinstance(key, str) or not key:
            raise ValueError(f"resource_key entries are non-empty strings, got {key!r}")
    if len(set(keys)) != len(keys):
        raise ValueError(f"resource_key names a resource twice: {list(keys)}")
    return list(keys)


class Balancer:
    """The order one call tries a pool's resources in (thread-safe; one per node)."""

    def __init__(self, keys: Sequence[str], weights: Sequence[float]) -> None:
        self.keys = list(keys)
        self.weights = list(weights)
        self._current = [0.0] * len(self.keys)
        self._lock = threading.Lock()
        self._by_weight = sorted(range(len(self.keys)), key=lambda i: -self.weights[i])

    def order(self, tokens: int = 0) -> list[str]:
        """The pool's keys for one call: its chosen resource first, the others after."""
        states = [self._readiness(key, tokens) for key in self.keys]
        candidates = [i for i, state in enumerate(states) if state == "ready"]
        if not candidates:
            candidates = [i for i, state in enumerate(states) if state != "refused"]
        if not candidates:
            return [self.keys[i] for i in self._by_weight]
        first = self._pick(candidates)
        return [self.keys[first], *(self.keys[i] for i in self._by_weight if i != first)]

    def _pick(self, candidates: list[int]) -> int:
        """Smooth weighted round-robin among ``candidates``."""
        total = sum(self.weights[i] for i in candidates)
        with self._lock:
            for i in candidates:
                self._current[i] += self.weights[i]
            chosen = max(candidates, key=lambda i: self._current[i])
            self._current[chosen] -= total
        return chosen

    @staticmethod
    def _readiness(key: str, tokens: int) -> str:
        try:
            resource = get_registry().get_llm(key)
        except ResourceError:
            return "refused"
        return get_limiter(normalize_key(key), resource).readiness(tokens)
