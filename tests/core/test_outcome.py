"""One outcome value: what work reports to the work around it, merged in one place."""

from __future__ import annotations

from hush.core.checkpointing import Snapshot
from hush.core.errors import NodeError
from hush.core.outcome import GraphOutcome, Outcome


def error(path: str) -> NodeError:
    return NodeError.from_exception(ValueError(path), path)


def test_merging_an_empty_outcome_makes_no_lists() -> None:
    outcome = Outcome()
    outcome.merge(Outcome())
    outcome.merge(GraphOutcome({}, None))
    assert (outcome.errors, outcome.unhandled, outcome.saves) == ((), (), ())
    assert outcome.clean


def test_merge_takes_errors_unhandled_and_saves_and_leaves_the_other_alone() -> None:
    handled, unhandled = error("g/a"), error("g/b")
    snapshot = Snapshot("g/m[x.0]/c", "k", b"blob")
    inner = GraphOutcome({"x": 1}, unhandled, [handled, unhandled], [unhandled], [snapshot])
    outer = Outcome()
    outer.fail(error("g/own"), handled=True)
    outer.merge(inner)
    outer.merge(inner)
    assert [e.node for e in outer.errors] == ["g/own", "g/a", "g/b", "g/a", "g/b"]
    assert list(outer.unhandled) == [unhandled, unhandled]
    assert list(outer.saves) == [snapshot, snapshot]
    assert (len(inner.errors), len(inner.unhandled), len(inner.saves)) == (2, 1, 1)
    assert not outer.clean


def test_usage_stays_with_the_work_that_measured_it() -> None:
    inner = GraphOutcome({}, None, usage={"model": {"calls": 1}})
    outer = Outcome()
    outer.merge(inner)
    assert outer.usage is None
    assert inner.usage == {"model": {"calls": 1}}


def test_a_handled_error_leaves_the_unhandled_ones() -> None:
    carried, other = error("g/inner"), error("g/other")
    outcome = Outcome()
    outcome.fail(carried, handled=False)
    outcome.fail(other, handled=False)
    outcome.handle(carried)
    assert list(outcome.unhandled) == [other]
    assert list(outcome.errors) == [carried, other]


def test_saves_taken_for_writing_are_not_merged_again() -> None:
    snapshot = Snapshot("g/m[x.0]/c", "k", b"blob")
    item = GraphOutcome({}, None)
    item.keep(snapshot)
    assert list(item.take_saves()) == [snapshot]
    outer = Outcome()
    outer.merge(item)
    assert outer.saves == ()
