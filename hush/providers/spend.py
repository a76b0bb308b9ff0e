"""What one run spends on LLM calls, the budget it stays within, and its response cache.

The run's LLM extension (:mod:`hush.providers.llm_run`) opens a :class:`RunSpend`
per run and makes it current for the run's tasks (a context variable), so every call made through
:func:`~hush.providers.clients.complete` during the run (``LLMNode`` or your own
code) is counted, held to the budget, and answered from the cache when it can.

Before each request is sent, its cost and tokens are estimated and reserved
against what is left: the prompt as counted by the token estimator, the reply as
``max_tokens`` when the request sets it, else the mean reply of the run's answered
calls to that resource (256 tokens before the first). A request that does not fit
next to the requests in flight waits for them to finish (their real usage often
leaves room); one that does not fit next to what was actually spent is not sent
and fails with :class:`~hush.providers.errors.BudgetExceededError`. When a reply
comes, its reservation is replaced by its real usage; a failed request spends
nothing.

What a map item's calls spend is also counted apart and saved with its result
(:mod:`hush.providers.usage`); what no saved work took is the run's *rest*, handed
to ``on_change`` (saved in the checkpoint too).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from hush.providers.errors import BudgetExceededError
from hush.providers.usage import (
    ResourceSpend,
    WorkSpend,
    counted_by,
    ledger_of,
    summarize,
    work_spend,
)

if TYPE_CHECKING:
    from hush.providers.cache import ResponseCache
    from hush.providers.pricing import Price

SAVE_EVERY = 1.0
"""Seconds between two saves of the totals in the run's checkpoint."""
DEFAULT_REPLY_TOKENS = 256
"""Reply tokens reserved for a request without ``max_tokens`` before any reply is known."""

__all__ = [
    "DEFAULT_REPLY_TOKENS",
    "Hold",
    "ResourceSpend",
    "RunSpend",
    "WorkSpend",
    "current",
    "work_spend",
]


class RunSpend:
    """Totals, budget and response cache of one run (see the module docstring).

    ``parent`` is the spend of the run this one runs inside (an ``engine.run`` in a
    node): every request is held to both budgets and counted in both. ``on_change``
    receives :meth:`rest_summary` (what no saved work took) at most once a second as
    calls are counted, and on :meth:`save` (the engine saves it in the run's checkpoint;
    map items save theirs with their results).
    """

    def __init__(
        self,
        *,
        max_cost: float | None = None,
        max_total_tokens: int | None = None,
        cache: ResponseCache | None = None,
        parent: RunSpend | None = None,
        on_change: Callable[[dict[str, dict[str, Any]]], object] | None = None,
    ) -> None:
        self.max_cost = max_cost
        self.max_total_tokens = max_total_tokens
        self.cache = cache
        self.parent = parent
        self.on_change = on_change
        self.cost = 0.0
        """USD spent by the run's priced calls."""
        self.tokens = 0
        """Prompt plus completion tokens of every answered request."""
        self.resources: dict[str, ResourceSpend] = {}
        self.rest: dict[str, ResourceSpend] = {}
        """Spend of this opening of the run that no saved work took."""
        self._held_cost = 0.0
        self._held_tokens = 0
        self._holds = 0
        self._changed: asyncio.Event | None = None
        self._saved_at = 0.0

    def resource(self, key: str, price: Price | None) -> ResourceSpend:
        """The ledger of ``key`` (created on first use)."""
        found = self.resources.get(key)
        if found is None:
            found = self.resources[key] = ResourceSpend(cost=None if price is None else 0.0)
        return found

    async def reserve(
        self,
        key: str,
        price: Price | None,
        prompt_tokens: int,
        max_tokens: int | None,
    ) -> Hold:
        """Hold the estimated cost and tokens of one request until it is answered; wait while
        requests in flight hold what it needs; raise :class:`BudgetExceededError` when what is
        spent leaves no room for it (here or in the enclosing run)."""
        ledger = self.resource(key, price)
        if self.max_cost is not None and price is None:
            raise BudgetExceededError(
                f"max_cost is set but resource '{key}' has no price: set its "
                "input_cost_per_mtok and output_cost_per_mtok",
                resource_key=key,
            )
        while True:
            if max_tokens is not None:
                reply = max(0, max_tokens)
            elif ledger.calls:
                reply = -(-ledger.completion_tokens // ledger.calls)
            else:
                reply = DEFAULT_REPLY_TOKENS
            tokens = prompt_tokens + reply
            cost = price.cost(prompt_tokens, reply) if price is not None else 0.0
            refused = self._refusal(cost, tokens, held=False)
            if refused is not None:
                if max_tokens is None and not ledger.calls:
                    refused += (
                        f" ({DEFAULT_REPLY_TOKENS} reply tokens assumed before the first reply;"
                        " set max_tokens to reserve less)"
                    )
                raise BudgetExceededError(refused, resource_key=key)
            if self._refusal(cost, tokens, held=True) is None:
                break
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()
        # The hold is recorded before the enclosing run is asked (which may wait), so that
        # requests checked meanwhile count it; it ends in the one ``finally`` below unless a
        # Hold takes it over.
        self._held_cost += cost
        self._held_tokens += tokens
        self._holds += 1
        hold: Hold | None = None
        try:
            outer = None
            if self.parent is not None:
                outer = await self.parent.reserve(key, price, prompt_tokens, max_tokens)
            hold = Hold(self, ledger, price, cost, tokens, outer, key=key)
            return hold
        finally:
            if hold is None:
                self._release(cost, tokens)

    def answered_from_cache(self, key: str, price: Price | None) -> None:
        """Count a call the cache answered."""
        self.resource(key, price).cached += 1
        ledger_of(counted_by(self), key, price).add(0, 1, 0, 0, None)
        if self.parent is not None:
            self.parent.answered_from_cache(key, price)

    def absorb(self, summary: Mapping[str, Mapping[str, Any]], *, propagate: bool = True) -> None:
        """Count what was spent for this run elsewhere (a :meth:`summary`: of a Ray worker, or,
        with ``propagate=False``, of the run's earlier attempts read from its checkpoint,
        which is saved already)."""
        for key, spent in summary.items():
            ledger = self.resources.get(key)
            if ledger is None:
                ledger = self.resources[key] = ResourceSpend(cost=spent.get("cost"))
            elif spent.get("cost") is not None:
                ledger.cost = (ledger.cost or 0.0) + spent["cost"]
            counts = (
                spent.get("calls", 0),
                spent.get("cached", 0),
                spent.get("prompt_tokens", 0),
                spent.get("completion_tokens", 0),
            )
            ledger.calls += counts[0]
            ledger.cached += counts[1]
            ledger.prompt_tokens += counts[2]
            ledger.completion_tokens += counts[3]
            self.tokens += counts[2] + counts[3]
            self.cost += spent.get("cost") or 0.0
            if propagate:
                ledger_of(counted_by(self), key, None).add(*counts, spent.get("cost"))
        if propagate and self.parent is not None:
            self.parent.absorb(summary)
        self._changed_totals(force=False)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per resource: ``calls``, ``cached``, ``prompt_tokens``, ``completion_tokens``,
        ``total_tokens`` and ``cost``."""
        return summarize(self.resources)

    def restsummarize(self) -> dict[str, dict[str, Any]]:
        """:meth:`summary` of what this opening of the run spent that no saved work took."""
        return summarize(self.rest)

    def count_rest(
        self, key: str, calls: int, cached: int, prompt: int, completion: int, cost: float | None
    ) -> None:
        """Move spend counted apart for work that was not saved into the run's rest."""
        ledger_of(self.rest, key, None).add(calls, cached, prompt, completion, cost)
        self._changed_totals(force=False)

    def _refusal(self, cost: float, tokens: int, *, held: bool) -> str | None:
        spent_cost = self.cost + (self._held_cost if held else 0.0)
        spent_tokens = self.tokens + (self._held_tokens if held else 0)
        if self.max_cost is not None and spent_cost + cost > self.max_cost:
            return (
                f"budget of {_usd(self.max_cost)} USD reached: {_usd(spent_cost)} spent, "
                f"{_usd(cost)} needed"
            )
        if self.max_total_tokens is not None and spent_tokens + tokens > self.max_total_tokens:
            return (
                f"token budget of {self.max_total_tokens:,} reached: {spent_tokens:,} spent, "
                f"{tokens:,} needed"
            )
        return None

    def _release(self, cost: float, tokens: int) -> None:
        self._holds -= 1
        if self._holds == 0:
            self._held_cost, self._held_tokens = 0.0, 0
        else:
            self._held_cost -= cost
            self._held_tokens -= tokens
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def save(self) -> None:
        """Hand the totals to ``on_change`` now."""
        self._changed_totals(force=True)

    def _changed_totals(self, *, force: bool) -> None:
        if self.on_change is None:
            return
        now = time.monotonic()
        if force or now - self._saved_at >= SAVE_EVERY:
            self._saved_at = now
            self.on_change(self.restsummarize())


class Hold:
    """One request's reservation; :meth:`settle` replaces it with what the reply used."""

    __slots__ = ("_done", "cost", "key", "ledger", "outer", "price", "spend", "tokens")

    def __init__(
        self,
        spend: RunSpend,
        ledger: ResourceSpend,
        price: Price | None,
        cost: float,
        tokens: int,
        outer: Hold | None = None,
        *,
        key: str = "",
    ) -> None:
        self.spend = spend
        self.key = key
        self.ledger = ledger
        self.price = price
        self.cost = cost
        self.tokens = tokens
        self.outer = outer
        self._done = False

    def settle(self, usage: Mapping[str, Any] | None, cost: float | None = None) -> None:
        """Count the reply's ``usage`` and ``cost`` (``None`` usage: nothing was spent)."""
        if self._done:
            return
        self._done = True
        spend, ledger = self.spend, self.ledger
        if usage is not None:
            prompt = int(usage.get("prompt_tokens") or 0)
            completion = int(usage.get("completion_tokens") or 0)
            ledger.add(1, 0, prompt, completion, cost)
            ledger_of(counted_by(spend), self.key, self.price).add(1, 0, prompt, completion, cost)
            spend.tokens += prompt + completion
            if cost is not None:
                spend.cost += cost
        spend._release(self.cost, self.tokens)
        if usage is not None:
            spend._changed_totals(force=False)
        if self.outer is not None:
            self.outer.settle(usage, cost)


current: contextvars.ContextVar[RunSpend | None] = contextvars.ContextVar(
    "hush_run_spend", default=None
)
"""The running run's :class:`RunSpend` (``None`` outside a run)."""


def _usd(amount: float) -> str:
    if amount >= 0.01 or amount <= 0:
        return f"{amount:.2f}"
    return f"{amount:.8f}".rstrip("0")
