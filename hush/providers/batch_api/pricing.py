"""The Batch API price of a resource: its batch prices, else half its synchronous ones."""

from __future__ import annotations

from dataclasses import replace

from hush.providers.pricing import Price, price_of
from hush.providers.resources import LLMResource

DISCOUNT = 0.5
"""Batch prices at OpenAI, Anthropic and Gemini: half the synchronous ones."""


def batch_price(resource: LLMResource) -> Price | None:
    """The price of one batch call on ``resource`` (``None`` when it has no price)."""
    if resource.batch_input_cost_per_mtok is not None:
        output = resource.batch_output_cost_per_mtok
        return Price(
            resource.batch_input_cost_per_mtok,
            resource.batch_input_cost_per_mtok if output is None else output,
            resource.batch_input_cost_per_mtok,
            "resource-batch",
        )
    price = price_of(resource)
    if price is None:
        return None
    if price.table is not None:
        return _HalvedTable(price)
    return replace(
        price,
        input=price.input * DISCOUNT,
        output=price.output * DISCOUNT,
        cached_input=price.cached_input * DISCOUNT,
        source=f"{price.source}-batch",
    )


class _HalvedTable(Price):
    """A price-table price at the batch discount."""

    def __init__(self, price: Price) -> None:
        super().__init__(price.input, price.output, price.cached_input, price.source, price.table)

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        return super().cost(prompt_tokens, completion_tokens, cached_tokens) * DISCOUNT
