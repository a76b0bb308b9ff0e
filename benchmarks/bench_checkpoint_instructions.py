"""What checkpointing costs the event loop's thread per trivial map item, noise-free.

    python benchmarks/bench_checkpoint_instructions.py [--items 1000]

Wall and CPU times of microsecond-sized items vary by half on a shared machine; the
work done does not. Each arm runs W1's map (trivial items, cap 100) in a child process
under ``valgrind --tool=callgrind --separate-threads=yes --cache-sim=yes`` (valgrind must
be installed; about a minute per child, two at a time), once with one run and once with
two, checkpoint off and on (a fresh ``run_id`` in one file); the difference of the two
counts of the loop's thread is what one warm run costs it, divided by ``--items``.
Printed per item: instructions, first-level cache misses (instruction and data), and an
estimate of cycles (instructions + 10 per miss, the usual callgrind weighting), each
with the on/off ratio. The misses matter: the checkpoint's extra work runs between every
other step of an item, so its code is cold each time. Valgrind runs one thread at a
time, so the writer thread's contention for the GIL is not in these figures; wall ratios
(``bench_checkpoint.py``) are higher by that. The checkpointed arm still varies by a few
percent between invocations (how often the loop waits for a commit depends on the
writer's timing); the other does not. To compare with older code, run this
script with ``PYTHONPATH=<a worktree of the older commit>``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent))
sys.path.insert(0, str(HERE))

from _common import callgrind, one_and_two_runs  # noqa: E402

ARMS = ("off", "on")
EVENTS = ("Ir", "Dr", "Dw", "I1mr", "D1mr", "D1mw")


def child(arm: str, runs: int, items: int) -> None:
    """Run W1 ``runs`` times, checkpointed or not (in the valgrind child)."""
    import asyncio

    sys.path.insert(0, str(HERE))
    from bench_map import map_engine, trivial

    folder = Path(tempfile.mkdtemp())

    async def main() -> None:
        engine = map_engine(trivial, 100)
        for run in range(runs):
            inputs = {"items": list(range(items))}
            if arm == "on":
                await engine.run(inputs, checkpoint=folder / "c.db", run_id=f"r{run}")
            else:
                await engine.run(inputs)

    asyncio.run(main())


def counts(arm: str, runs: int, items: int, folder: str) -> dict[int, list[int]]:
    """Events per thread (1: the loop's) of a child running ``runs`` runs."""
    argv = [sys.executable, __file__, "--child", arm, str(runs), str(items)]
    found = callgrind(argv, Path(folder) / f"cg.{arm}.{runs}", cache_sim=True)
    return {thread: values[: len(EVENTS)] for thread, values in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return
    import hush

    print(f"hush from {Path(hush.__file__).parent}; W1 map of {args.items} trivial items, cap 100")
    with tempfile.TemporaryDirectory() as folder:
        found = one_and_two_runs(lambda arm, runs: counts(arm, runs, args.items, folder), ARMS)
    per_item = {}
    for arm, (one, two) in found.items():
        costs = [(b - a) / args.items for a, b in zip(one[1], two[1], strict=True)]
        per_item[arm] = dict(zip(EVENTS, costs, strict=True))
    figures = {}
    for arm in ARMS:
        events = per_item[arm]
        misses = events["I1mr"] + events["D1mr"] + events["D1mw"]
        figures[arm] = (events["Ir"], misses, events["Ir"] + 10 * misses)
    off = figures["off"]
    for arm in ARMS:
        ir, misses, cycles = figures[arm]
        print(
            f"  checkpoint {arm:<3}  {ir / 1e3:6.1f} k instructions (x{ir / off[0]:.2f}), "
            f"{misses:5.0f} L1 misses (x{misses / off[1]:.2f}), "
            f"~{cycles / 1e3:6.1f} k cycles (x{cycles / off[2]:.2f}) per item"
        )


if __name__ == "__main__":
    main()
