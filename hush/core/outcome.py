"""What finished work reports to the work around it: one value, one merge.

A node attempt, a graph execution and a map item each end with an
:class:`Outcome`: the errors inside it (handled or not), those no handler took
care of, the snapshots of clean results still to be written if a map item does
not end clean, and the usage its work measured (opaque to the core; today the
LLM spend of a map item). The work around it takes it in with
:meth:`Outcome.merge`.

The lists are made on the first write: an outcome with nothing to report
allocates nothing but itself, and merging it costs three truth tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from hush.core.checkpointing import Snapshot
    from hush.core.errors import NodeError

T = TypeVar("T")


class Outcome:
    """Errors, unhandled errors, snapshots and usage reported by one piece of work.

    ``usage`` stays with the work that measured it (it is saved with that work's
    result): the run extension that measures usage already counts what no saved
    work took for the work around it, so :meth:`merge` does not add it again.
    """

    __slots__ = ("errors", "saves", "unhandled", "usage")

    def __init__(
        self,
        errors: Sequence[NodeError] = (),
        unhandled: Sequence[NodeError] = (),
        saves: Sequence[Snapshot] = (),
        usage: Mapping[str, Any] | None = None,
    ) -> None:
        self.errors = errors
        """Every error inside, handled or not, in the order they happened."""
        self.unhandled = unhandled
        """The errors no error handler took care of (a failed map item counts)."""
        self.saves = saves
        """Inside a map item: results of clean nodes, written if the item does not end clean."""
        self.usage = usage
        """What the work consumed, as the run extension measured it (``None``: nothing)."""

    @property
    def clean(self) -> bool:
        """Nothing inside failed, so the whole result may be saved and reused."""
        return not self.errors

    def merge(self, other: Outcome) -> None:
        """Take in what ``other`` (work inside this one) reported; nothing to do if it is empty."""
        if other.errors:
            self.errors = _joined(self.errors, other.errors)
        if other.unhandled:
            self.unhandled = _joined(self.unhandled, other.unhandled)
        if other.saves:
            self.saves = _joined(self.saves, other.saves)

    def fail(self, error: NodeError, *, handled: bool) -> None:
        """Count this work's own ``error`` (``handled``: an error handler takes care of it)."""
        self.errors = _joined(self.errors, (error,))
        if not handled:
            self.unhandled = _joined(self.unhandled, (error,))

    def handle(self, error: NodeError) -> None:
        """An error handler takes care of ``error``, carried up from inside this work."""
        if self.unhandled:
            self.unhandled = [e for e in self.unhandled if e is not error]

    def keep(self, snapshot: Snapshot) -> None:
        """Keep a clean result's ``snapshot``, to be written if the map item does not end clean."""
        self.saves = _joined(self.saves, (snapshot,))

    def take_saves(self) -> Sequence[Snapshot]:
        """The snapshots kept so far, handed over to be written (none are left here)."""
        saves, self.saves = self.saves, ()
        return saves


class GraphOutcome(Outcome):
    """What one execution of a graph produced, handed back to the node that ran it."""

    __slots__ = ("error", "written")

    def __init__(
        self,
        written: dict[str, Any],
        error: NodeError | None,
        errors: Sequence[NodeError] = (),
        unhandled: Sequence[NodeError] = (),
        saves: Sequence[Snapshot] = (),
        usage: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(errors, unhandled, saves, usage)
        self.written = written
        """What the graph's nodes wrote to its state (its outputs)."""
        self.error = error
        """The first error no handler took care of: the graph failed."""


def _joined(mine: Sequence[T], theirs: Sequence[T]) -> list[T]:
    """``mine`` extended by ``theirs``: in place once it is a list of its own, else a new one."""
    if type(mine) is list:
        mine.extend(theirs)
        return mine
    return [*mine, *theirs]
