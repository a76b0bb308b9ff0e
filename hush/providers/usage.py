"""What LLM calls used, per resource, and what one piece of work's calls used.

:class:`ResourceSpend` counts one resource's calls, tokens and cost. A
:class:`WorkSpend` (opened by :func:`work_spend` around a map item) counts what the
item's calls spent, to be saved with its result in the same commit; what no saved
work took (calls outside map items, items not saved) is the run's *rest*
(:attr:`~hush.providers.spend.RunSpend.rest`), saved in the checkpoint too. So a
resumed run starts from what its saved work cost.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hush.providers.pricing import Price
    from hush.providers.spend import RunSpend


@dataclass(slots=True)
class ResourceSpend:
    """One resource's calls in one run."""

    calls: int = 0
    """Requests answered by the provider."""
    cached: int = 0
    """Calls answered from the response cache (nothing sent, nothing spent)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    """USD; ``None`` when the resource has no price."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(
        self, calls: int, cached: int, prompt: int, completion: int, cost: float | None
    ) -> None:
        """Count ``calls`` answered and ``cached`` calls that used these tokens and cost."""
        self.calls += calls
        self.cached += cached
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost


def summarize(resources: Mapping[str, ResourceSpend]) -> dict[str, dict[str, Any]]:
    return {
        key: {
            "calls": r.calls,
            "cached": r.cached,
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "total_tokens": r.total_tokens,
            "cost": r.cost,
        }
        for key, r in resources.items()
    }


class WorkSpend:
    """What the calls of one piece of work (a map item) spent, to be saved with its result.

    Used as a context manager around the work (a map worker's items, one after another,
    each ended by :meth:`next`): calls made inside (in this task and those it starts) are
    counted here as well as in the run's totals. What is not :attr:`taken` (saved with the
    work) when the piece ends goes to the enclosing work, or to the run's rest: spend is
    never dropped because its work was not saved.
    """

    __slots__ = ("_token", "outer", "resources", "spend", "taken")

    def __init__(self, spend: RunSpend) -> None:
        self.spend = spend
        self.outer: WorkSpend | None = None
        self.resources: dict[str, ResourceSpend] = {}
        self.taken = False
        self._token: contextvars.Token[WorkSpend | None] | None = None

    def summary(self) -> dict[str, dict[str, Any]] | None:
        """What the work spent, per resource (``None`` if nothing)."""
        return summarize(self.resources) if self.resources else None

    def __enter__(self) -> WorkSpend:
        self.outer = _work.get()
        self._token = _work.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None
        _work.reset(self._token)
        self.next()

    def next(self) -> None:
        """The piece of work ended: what it did not take goes to the enclosing work or the
        run's rest; the next piece is counted from nothing."""
        if self.resources:
            if not self.taken:
                self._release()
            self.resources = {}
        self.taken = False

    def _release(self) -> None:
        spend, outer = self.spend, self.outer
        if outer is not None and outer.spend is not spend:
            outer = None
        for key, r in self.resources.items():
            counts = (r.calls, r.cached, r.prompt_tokens, r.completion_tokens, r.cost)
            if outer is not None:
                ledger_of(outer.resources, key, None).add(*counts)
            else:
                spend.count_rest(key, *counts)


_work: contextvars.ContextVar[WorkSpend | None] = contextvars.ContextVar(
    "hush_work_spend", default=None
)


def work_spend(spend: RunSpend | None) -> contextlib.AbstractContextManager[WorkSpend | None]:
    """A :class:`WorkSpend` of ``spend`` to use around one piece of work (nothing without)."""
    return contextlib.nullcontext() if spend is None else WorkSpend(spend)


def counted_by(spend: RunSpend) -> dict[str, ResourceSpend]:
    """Where a call of ``spend`` is counted apart: its innermost work, else the run's rest."""
    work = _work.get()
    while work is not None:
        if work.spend is spend:
            return work.resources
        work = work.outer
    return spend.rest


def ledger_of(resources: dict[str, ResourceSpend], key: str, price: Price | None) -> ResourceSpend:
    found = resources.get(key)
    if found is None:
        found = resources[key] = ResourceSpend(cost=None if price is None else 0.0)
    return found
