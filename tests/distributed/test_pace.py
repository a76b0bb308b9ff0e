"""How many items a Ray worker holds (``hush.distributed.pace``): enough to hide the measured
round trip, few enough that the last items of a map are shared."""

from __future__ import annotations

from hush.distributed.pace import CALLS_PER_WORKER, MAX_BATCH, Pace


def measured(item_s: float, trip_s: float) -> Pace:
    pace = Pace()
    pace.ran(item_s)
    pace.trip(trip_s)
    return pace


def test_before_anything_is_measured_a_worker_holds_two_sets_of_slots_and_one() -> None:
    assert Pace().held(1) == 3
    assert Pace().held(16) == 33


def test_trivial_items_are_held_by_the_dozen_and_long_ones_two_ahead() -> None:
    assert measured(item_s=0.0004, trip_s=0.01).held(1) == 1 + 50
    assert measured(item_s=0.02, trip_s=0.005).held(1) == 1 + 2
    assert Pace.room(3, 1) == 2, "a call carries two long items"
    assert measured(item_s=0.05, trip_s=0.005).held(16) == 16 + 17
    assert measured(item_s=1e-9, trip_s=1.0).held(1) == 1 + MAX_BATCH * CALLS_PER_WORKER


def test_the_averages_follow_the_items() -> None:
    pace = measured(item_s=0.02, trip_s=0.005)
    for _ in range(40):
        pace.ran(0.0004)
    assert pace.held(1) > 20


def test_a_busy_worker_gets_more_only_once_half_its_share_has_room() -> None:
    assert Pace.room(51, 0) == 51
    assert Pace.room(51, 30) == 0
    assert Pace.room(51, 25) == 26
    assert Pace.room(2, 1) == 1
    assert Pace.room(2, 2) == 0
