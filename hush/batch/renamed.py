"""The keywords ``run_batch`` took before the run options became objects (issue 20):
they still work, with one ``DeprecationWarning`` naming the new spelling."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from hush.batch.errors import BatchUsageError
from hush.core.run_options import Budget

RENAMED = {
    "max_concurrency": "max_running_nodes=N",
    "max_cost": "budget=Budget(max_cost=...)",
    "max_total_tokens": "budget=Budget(max_total_tokens=...)",
}
"""Old keyword of ``run_batch`` -> its new spelling."""


def translate(
    old: Mapping[str, Any], max_running_nodes: int | None, budget: Budget | None
) -> tuple[int | None, Budget | None]:
    """``max_running_nodes`` and ``budget`` with the renamed keywords in ``old`` moved in;
    an unknown keyword is a ``TypeError``, an option given both ways a usage error."""
    unknown = sorted(set(old) - set(RENAMED))
    if unknown:
        raise TypeError(f"run_batch() got an unexpected keyword argument {unknown[0]!r}")
    if not old:
        return max_running_nodes, budget
    warnings.warn(
        "run_batch(): " + "; ".join(f"{k}= is deprecated, use {RENAMED[k]}" for k in old),
        DeprecationWarning,
        stacklevel=3,
    )
    if old.get("max_concurrency") is not None:
        if max_running_nodes is not None:
            raise BatchUsageError(
                "max_running_nodes= and max_concurrency= are the same option; "
                "give only max_running_nodes="
            )
        max_running_nodes = old["max_concurrency"]
    cost, tokens = old.get("max_cost"), old.get("max_total_tokens")
    if cost is not None or tokens is not None:
        if budget is not None:
            raise BatchUsageError(
                "budget= and max_cost=/max_total_tokens= are the same option; give only budget="
            )
        budget = Budget(max_cost=cost, max_total_tokens=tokens)
    return max_running_nodes, budget
