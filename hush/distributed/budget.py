"""A worker's side of the driver's budget.

:class:`DriverSpend` is the parent of each item's own
:class:`~hush.providers.spend.RunSpend`: every LLM request asks the driver's spend
for its budget hold (the driver answers through ``ItemRunner.answer``) and
reports the reply's usage to settle it, so ``max_cost`` and ``max_total_tokens``
hold across every worker and the driver counts each call once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hush.providers.errors import BudgetExceededError
from hush.providers.spend import Hold, ResourceSpend, RunSpend

if TYPE_CHECKING:
    from hush.distributed.outbox import Outbox
    from hush.providers.pricing import Price


class DriverSpend(RunSpend):
    """The driver's spend, seen from a worker (see the module docstring)."""

    def __init__(self, outbox: Outbox) -> None:
        super().__init__()
        self.outbox = outbox

    async def reserve(
        self, key: str, price: Price | None, prompt_tokens: int, max_tokens: int | None
    ) -> Hold:
        answer = await self.outbox.ask(("reserve", 0, key, price, prompt_tokens, max_tokens))
        number, refusal = answer
        if refusal is not None:
            raise BudgetExceededError(refusal, resource_key=key)
        return RemoteHold(self, number, price)

    def answered_from_cache(self, key: str, price: Price | None) -> None:
        self.outbox.put(("cached", key, price))

    def absorb(self, summary: Mapping[str, Mapping[str, Any]], *, propagate: bool = True) -> None:
        """Nothing: the driver counts each call when its hold is settled."""


class RemoteHold(Hold):
    """A hold kept by the driver; settling it reports the reply's usage there."""

    __slots__ = ("number",)

    def __init__(self, spend: DriverSpend, number: int, price: Price | None) -> None:
        super().__init__(spend, ResourceSpend(), price, 0.0, 0)
        self.number = number

    def settle(self, usage: Mapping[str, Any] | None, cost: float | None = None) -> None:
        if self._done:
            return
        self._done = True
        assert isinstance(self.spend, DriverSpend)
        plain = None if usage is None else {k: int(v or 0) for k, v in usage.items()}
        self.spend.outbox.put(("settle", self.number, plain, cost))
