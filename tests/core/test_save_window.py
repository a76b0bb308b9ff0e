"""The map's window of finished, uncommitted items (``SaveWindow``) against its rule.

The window reads one thing of the checkpoint: whether an entry number is committed (a
watermark: commits follow their numbers). A stand-in with a watermark the test moves is
that, and counts how often it is asked.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hush.core.checkpointing import UNCOMMITTED_PER_WORKER, SaveWindow


class Watermark:
    """``committed(n)`` of a store whose entries up to ``done`` are committed."""

    def __init__(self) -> None:
        self.done = 0
        self.asked = 0

    def committed(self, number: int) -> bool:
        self.asked += 1
        return number <= self.done


class Checkpoint:
    def __init__(self) -> None:
        self.store = Watermark()

    def saved(self, path: str, number: int) -> Any:
        return ("wait for", number)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 4), st.lists(st.tuples(st.integers(1, 3), st.integers(0, 40)), max_size=60))
def test_a_worker_waits_exactly_when_more_than_the_window_is_uncommitted(
    workers: int, steps: list[tuple[int, int]]
) -> None:
    """Items finish with increasing numbers (gaps: other saves) and commits catch up by
    jumps; ``finished`` asks to wait, for the oldest over the window, exactly when more than
    ``2 * workers`` finished items are not committed."""
    checkpoint = Checkpoint()
    window = SaveWindow(checkpoint, "g/map", workers)  # type: ignore[arg-type]
    size = UNCOMMITTED_PER_WORKER * workers
    finished: list[int] = []
    number = 0
    for gap, commits in steps:
        number += gap
        finished.append(number)
        checkpoint.store.done = max(checkpoint.store.done, number - commits)
        uncommitted = [n for n in finished if n > checkpoint.store.done]
        expected = ("wait for", uncommitted[-size - 1]) if len(uncommitted) > size else None
        assert window.finished(number) == expected


def test_the_window_asks_about_commits_a_few_times_per_hundred_items() -> None:
    """Steady state of a busy map: each commit covers the items finished since the one
    before; the committed prefix is dropped at once, not one item at a time."""
    checkpoint = Checkpoint()
    window = SaveWindow(checkpoint, "g/map", 100)
    for number in range(1, 20_001):
        if number % 120 == 0:
            checkpoint.store.done = number - 60
        assert window.finished(number) is None
    assert checkpoint.store.asked < 20_000 * 0.1
