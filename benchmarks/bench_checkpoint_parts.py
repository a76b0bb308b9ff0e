"""Where a checkpointed trivial map item's event-loop time goes: each step switched off.

    python benchmarks/bench_checkpoint_parts.py [--rounds 15] [--items 5000]

W1 (trivial items, cap 100) runs without a checkpoint, with one, and with one and a step of
the checkpoint's replaced by nothing, the arms taking turns in one process, each run from a
collected heap. Printed per arm: the median over ``--rounds`` of the event loop's CPU per
item over the run without a checkpoint, and of the wall time as a ratio to it. What an arm
saves against "checkpoint" is what its step costs. The switched-off arms are measurements
only: they save nothing (``saving``), key nothing (``keying``: every item gets a name made
from its position), or skip the map's wait for commits (``window``) or the spend meter
(``spend meter``); their runs are not resumable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_map import map_engine, trivial

import hush.core.nodes.iteration.map_node as map_node
from hush.core.checkpointing import ItemKeys, RunCheckpoint, SaveWindow


def _by_position(self: ItemKeys, index: int, shared: Any, own: Any) -> tuple[str, str]:
    return f"{index:032x}", f"m[{index:032x}.0]"


def _as_taken(self: ItemKeys, items: Iterator[Any], shared: Any, ahead: int = 1) -> Iterator[Any]:
    return items


SWITCHES: dict[str, list[tuple[Any, str, Callable[..., Any]]]] = {
    "keying": [(ItemKeys, "keyed", _as_taken), (ItemKeys, "take", _by_position)],
    "saving": [(RunCheckpoint, "save_item", lambda self, *args: None)],
    "window": [(SaveWindow, "finished", lambda self, number: None)],
    "spend meter": [(map_node, "work_usage", lambda run: contextlib.nullcontext())],
}


@contextlib.contextmanager
def switched_off(name: str | None) -> Iterator[None]:
    """The checkpoint with step ``name`` replaced by nothing (``None``: as it is)."""
    saved = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in SWITCHES.get(name or "", [])]
    for owner, attr, stand_in in SWITCHES.get(name or "", []):
        setattr(owner, attr, stand_in)
    try:
        yield
    finally:
        for owner, attr, original in saved:
            setattr(owner, attr, original)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--items", type=int, default=5000)
    args = parser.parse_args()
    engine = map_engine(trivial, 100)
    items = list(range(args.items))
    arms: list[str | None] = ["off", None, *SWITCHES]
    found: dict[str | None, list[tuple[float, float]]] = {arm: [] for arm in arms}
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "parts.db"

        async def run(arm: str | None) -> tuple[float, float]:
            options = {} if arm == "off" else {"checkpoint": db, "run_id": uuid.uuid4().hex}
            with switched_off(None if arm == "off" else arm):
                gc.collect()
                wall, loop = time.perf_counter(), time.thread_time()
                await engine.run({"items": items}, **options)
                return time.perf_counter() - wall, time.thread_time() - loop

        for arm in arms:
            await run(arm)
        for _ in range(args.rounds):
            for arm in arms:
                found[arm].append(await run(arm))
    off_wall = statistics.median(w for w, _ in found["off"])
    off_loop = statistics.median(c for _, c in found["off"])
    print(f"W1, {args.items} trivial items, cap 100: medians of {args.rounds} rounds")
    print(f"  {'no checkpoint':<28} wall {off_wall * 1e3:.1f} ms")
    for arm in arms[1:]:
        wall = statistics.median(w for w, _ in found[arm])
        loop = statistics.median(c for _, c in found[arm])
        label = "checkpoint" if arm is None else f"checkpoint, no {arm}"
        added = (loop - off_loop) / len(items) * 1e6
        print(f"  {label:<28} wall x{wall / off_wall:.2f}   loop +{added:.2f} us/item")


if __name__ == "__main__":
    asyncio.run(main())
