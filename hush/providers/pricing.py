"""What an LLM call costs: the resource's own prices, else a maintained price table.

A resource may set ``input_cost_per_mtok`` and ``output_cost_per_mtok`` (USD per
million tokens) and ``cached_input_cost_per_mtok`` (prompt tokens the provider
served from its prompt cache; default: the input price). When it sets none, the
price comes from the ``genai-prices`` table (kept by the pydantic team) for its
model *at its endpoint*: a known provider's URL (``api.openai.com``, Azure,
OpenRouter, ...) and a model that provider lists. Anything else (a local server,
an unknown model) has no price, and its calls cost ``None`` rather than a guess.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hush.providers.resources import LLMResource

logger = logging.getLogger(__name__)

PER_MTOK = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens; ``table`` prices with tiers are computed by the table."""

    input: float
    output: float
    cached_input: float
    source: str
    """``"resource"`` (configured) or ``"genai-prices"``."""
    table: Any = None
    """The table's model price, when its rates depend on the prompt's size."""

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        """USD for one call's usage."""
        cached = min(max(cached_tokens, 0), prompt_tokens)
        if self.table is not None:
            from genai_prices import Usage

            amounts = self.table.calc_price(
                Usage(
                    input_tokens=prompt_tokens,
                    cache_read_tokens=cached,
                    output_tokens=completion_tokens,
                )
            )
            return float(amounts["total_price"])
        return (
            (prompt_tokens - cached) * self.input
            + cached * self.cached_input
            + completion_tokens * self.output
        ) / PER_MTOK

    def usage_cost(self, usage: Mapping[str, Any]) -> float:
        """USD for an OpenAI-style ``usage`` (``prompt_tokens``, ``completion_tokens``,
        ``cached_tokens``)."""
        return self.cost(
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
            int(usage.get("cached_tokens") or 0),
        )


def price_of(resource: LLMResource) -> Price | None:
    """The resource's price, or ``None`` when it has none and the table does not know it."""
    if resource.input_cost_per_mtok is not None and resource.output_cost_per_mtok is not None:
        cached = resource.cached_input_cost_per_mtok
        return Price(
            resource.input_cost_per_mtok,
            resource.output_cost_per_mtok,
            resource.input_cost_per_mtok if cached is None else cached,
            "resource",
        )
    key = (resource.model, resource.base_url, resource.api_type)
    with _lock:
        if key not in _table_prices:
            _table_prices[key] = _from_table(*key)
        return _table_prices[key]


_lock = threading.Lock()
_table_prices: dict[tuple[str, str, str], Price | None] = {}


def _from_table(model: str, base_url: str, api_type: str) -> Price | None:
    if api_type != "azure" and _on_this_network(base_url):
        return None  # no provider of the table is here; its import costs ~0.15 s
    try:
        from genai_prices import Usage, calc_price
    except ImportError:
        return None
    try:
        usage = Usage(input_tokens=1, output_tokens=1)
        if api_type == "azure":
            found = calc_price(usage, model, provider_id="azure")
        else:
            found = calc_price(usage, model, provider_api_url=base_url)
    except LookupError:
        return None
    except Exception:
        logger.debug("price table lookup failed for %s at %s", model, base_url, exc_info=True)
        return None
    table = found.model_price
    rates = [_rate(table.input_mtok), _rate(table.output_mtok), _rate(table.cache_read_mtok)]
    if any(rate is None for rate in rates[:2]) or any(rate is _TIERED for rate in rates):
        return Price(0.0, 0.0, 0.0, "genai-prices", table=table)
    input_rate, output_rate, cached = rates
    assert isinstance(input_rate, float) and isinstance(output_rate, float)
    return Price(
        input_rate,
        output_rate,
        cached if isinstance(cached, float) else input_rate,
        "genai-prices",
    )


def _on_this_network(base_url: str) -> bool:
    """Whether ``base_url`` names this machine or a private network (a local server)."""
    host = urllib.parse.urlsplit(base_url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_unspecified


_TIERED = object()


def _rate(value: Any) -> float | object | None:
    """A per-mtok rate as a float; ``None`` when absent, ``_TIERED`` when it has tiers."""
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return _TIERED
