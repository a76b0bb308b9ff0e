"""Budget and cache options shared by ``hush run`` and ``hush batch``, the spend summary,
and ``hush cache``."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from hush.cli.errors import UserError
from hush.cli.groups import CommandGroup
from hush.core.run_options import Budget
from hush.core.state import RunRecord
from hush.providers.spend import RunSpend
from hush.providers.spend import current as current_spend

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT = "default"
"""``--cache default``: the default cache file."""


def spend_options(command: F) -> F:
    """Add ``--max-cost``, ``--max-total-tokens`` and ``--cache PATH``."""
    command = click.option(
        "--cache",
        "cache",
        metavar="PATH",
        default=None,
        help="Answer LLM calls asked before from this SQLite file, and store new answers "
        "('default': the default cache file, see hush cache info).",
    )(command)
    command = click.option(
        "--max-total-tokens",
        type=click.IntRange(min=0),
        metavar="N",
        help="Stop sending LLM requests once N prompt+completion tokens are spent.",
    )(command)
    command = click.option(
        "--max-cost",
        type=click.FloatRange(min=0),
        metavar="USD",
        help="Stop sending LLM requests once they would cost more than USD.",
    )(command)
    return command


def budget_option(max_cost: float | None, max_total_tokens: int | None) -> Budget | None:
    """What ``Hush.run(budget=...)`` takes for ``--max-cost`` and ``--max-total-tokens``."""
    if max_cost is None and max_total_tokens is None:
        return None
    return Budget(max_cost=max_cost, max_total_tokens=max_total_tokens)


def cache_option(value: str | None) -> bool | Path | None:
    """What ``engine.run(cache=...)`` takes for the ``--cache`` given."""
    if value is None:
        return None
    return True if value == DEFAULT else Path(value)


@contextmanager
def sent_here() -> Iterator[RunSpend]:
    """A ledger of the LLM calls this process sends, for the run started inside the block.

    The run counts each call in it as a nested run counts into its enclosing one; what a
    resumed run's checkpoint says its earlier attempts spent is not counted here, so
    ``spend_line(state, sent)`` can tell "sent now" from "run total". The ledger has no
    budget and no cache: it only counts.
    """
    ledger = RunSpend()
    token = current_spend.set(ledger)
    try:
        yield ledger
    finally:
        current_spend.reset(token)


def spend_line(state: RunRecord, sent: RunSpend | None = None) -> str:
    """``", LLM: 40 call(s) (12 cached), 18,230 tokens, 0.0123 USD"``, or ``""`` without calls.

    With ``sent`` (from :func:`sent_here`) and a resumed run that spent some of it before:
    ``", LLM sent now: 148 call(s), ...; run total: 197 call(s), ..."``.
    """
    total = _totals(state.llm)
    if not total["calls"] and not total["cached"]:
        return ""
    priced = any(r.get("cost") is not None for r in state.llm.values())
    run_total = _spent(total, state.tokens, state.cost, priced=priced)
    if sent is None:
        return f", LLM: {run_total}"
    now = _totals(sent.summary())
    if (now["calls"], now["cached"]) == (total["calls"], total["cached"]):
        return f", LLM: {run_total}"
    sent_now = _spent(now, sent.tokens, sent.cost, priced=priced, unpriced_note=False)
    return f", LLM sent now: {sent_now}; run total: {run_total}"


def _totals(per_resource: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    return {
        key: sum(int(r.get(key, 0)) for r in per_resource.values()) for key in ("calls", "cached")
    }


def _spent(
    counts: Mapping[str, int], tokens: int, cost: float, *, priced: bool, unpriced_note: bool = True
) -> str:
    from_cache = f" ({counts['cached']} cached)" if counts["cached"] else ""
    unpriced = ", cost unknown (no price)" if unpriced_note else ""
    money = f", {usd(cost)} USD" if priced else unpriced
    return f"{counts['calls']} call(s){from_cache}, {tokens:,} tokens{money}"


def budget_hint(state: RunRecord, *, resumable: bool) -> str | None:
    """What to do when calls were refused for the budget, else ``None``; ``resumable``: the
    run had a checkpoint (running it again continues it)."""
    refused = sum(1 for e in state.unhandled if e.type == "BudgetExceededError")
    if not refused:
        return None
    if resumable:
        return (
            f"{refused} call(s) were not sent: the budget was reached; run the same command "
            "with a larger --max-cost / --max-total-tokens to continue"
        )
    return (
        f"{refused} call(s) were not sent: the budget was reached; with --checkpoint FILE "
        "--run-id ID (or --cache FILE), a rerun with a larger budget keeps the finished calls"
    )


def usd(amount: float) -> str:
    """A USD amount with the precision small amounts need."""
    return f"{amount:.2f}" if amount >= 1 else f"{amount:.4f}"


@click.group(cls=CommandGroup, short_help="Look at or clear the LLM response cache.")
def cache() -> None:
    """The LLM response cache used by --cache (see the docs' cost and caching page)."""


@cache.command(short_help="Delete cached answers.")
@click.argument("path", metavar="[PATH]", required=False, type=click.Path(path_type=Path))
@click.option("--model", metavar="NAME", help="Only the answers of this model.")
def clear(path: Path | None, model: str | None) -> None:
    """Delete the answers in the cache at PATH (default: the default cache file)."""
    from hush.providers.cache import default_cache_path

    target = _cache_file(path or default_cache_path())
    if not target.is_file():
        click.echo(f"{target}: no cache there", err=True)
        return
    store = _open(target)
    deleted = store.clear(model)
    store.close()
    click.echo(f"{target}: deleted {deleted} answer(s)", err=True)


@cache.command(short_help="Where the cache is and how many answers it holds.")
@click.argument("path", metavar="[PATH]", required=False, type=click.Path(path_type=Path))
def info(path: Path | None) -> None:
    """Print the cache file and how many answers it holds."""
    from hush.providers.cache import default_cache_path

    target = _cache_file(path or default_cache_path())
    if not target.is_file():
        click.echo(f"{target}: no cache there yet")
        return
    store = _open(target)
    click.echo(f"{target}: {len(store)} answer(s)")
    store.close()


def _cache_file(path: Path) -> Path:
    if path.is_dir():
        raise UserError(f"{path} is a directory, not a cache file", "give the cache's SQLite file")
    return path


def _open(path: Path) -> Any:
    import sqlite3

    from hush.providers.cache import ResponseCache

    try:
        store = ResponseCache(path)
        len(store)
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{path} is not a response cache ({exc})") from None
    return store
