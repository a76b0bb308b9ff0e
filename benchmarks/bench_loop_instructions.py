"""What tracing costs the event loop's thread, in instructions per item: noise-free.

    python benchmarks/bench_loop_instructions.py [--items 1000] [--jobs 2]

Wall and CPU times of microsecond-sized items vary by half on a machine other jobs
share; instruction counts do not. Each arm runs W1's map (trivial items, cap 100) in a
child process under ``valgrind --tool=callgrind --separate-threads=yes`` (valgrind must
be installed; about a minute per child), once with one run and once with two; the
difference of the two counts of the loop's thread is what one warm run costs it,
divided by ``--items``. Arms: tracing off; a tracer with ``sample=0.0`` (no item drawn:
what sampling leaves on the loop for the items it leaves out) and ``sample=0.1``
(LocalTracer: its thread's count is printed too); a subscriber of the kinds a tracer
reads that drops every event (every item traced: the cost of building its events); one
that reads every kind ("events only" in ``bench_tracing.py``). Run ids are fixed and
hashing seeded, so a rerun gives the same figures within a fraction of a percent. To
compare with older code, run this script with ``PYTHONPATH=<a worktree of the older
commit>``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent))
sys.path.insert(0, str(HERE))

from _common import callgrind, one_and_two_runs  # noqa: E402

ARMS = ("off", "sample=0.0", "sample=0.1", "tracer's kinds", "events only")
TRACED = frozenset(("run_start", "node_start", "node_end", "llm", "run_end"))


class Dropping:
    """A tracer whose subscriber reads ``kinds`` (``None``: every kind) and drops them."""

    def __init__(self, kinds: frozenset[str] | None) -> None:
        self.kinds = kinds

    def subscribe(self, start: Any) -> Any:
        class Subscriber:
            kinds = self.kinds

            def __call__(self, event: Any) -> None:
                return None

        return Subscriber()

    async def flush(self, timeout: float | None = None) -> None:
        return None


def child(arm: str, runs: int, items: int) -> None:
    """Run W1 ``runs`` times with ``arm``'s tracer (in the valgrind child)."""
    sys.path.insert(0, str(HERE))
    from bench_map import map_engine, trivial

    from hush.observability import LocalTracer

    folder = tempfile.mkdtemp()

    def make() -> Any:
        if arm.startswith("sample="):
            return LocalTracer(Path(folder) / "trace.jsonl", sample=float(arm[7:]))
        if arm == "tracer's kinds":
            return Dropping(TRACED)
        return Dropping(None) if arm == "events only" else None

    async def main() -> None:
        engine = map_engine(trivial, 100)
        for run in range(runs):
            tracer = make()
            await engine.run({"items": list(range(items))}, tracer=tracer, run_id=f"i{run}")
            if hasattr(tracer, "close"):
                tracer.close(timeout=60)

    asyncio.run(main())


def counts(arm: str, runs: int, items: int, folder: str) -> dict[int, int]:
    """Instructions per thread (1: the loop's) of a child running ``runs`` runs."""
    argv = [sys.executable, __file__, "--child", arm, str(runs), str(items)]
    found = callgrind(argv, Path(folder) / f"cg.{ARMS.index(arm)}.{runs}")
    return {thread: values[0] for thread, values in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=2, help="children at a time")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return
    import hush

    print(f"hush from {Path(hush.__file__).parent}; W1 map of {args.items} trivial items, cap 100")
    with tempfile.TemporaryDirectory() as folder:
        found = one_and_two_runs(
            lambda arm, runs: counts(arm, runs, args.items, folder), ARMS, args.jobs
        )
    per_item = {
        arm: {t: (two[t] - one.get(t, 0)) / args.items for t in two}
        for arm, (one, two) in found.items()
    }
    off = per_item["off"][1]
    print(f"  {'tracing off':<16} loop {off / 1e3:6.1f} k instructions per item")
    for arm in ARMS[1:]:
        loop = per_item[arm][1]
        line = (
            f"  {arm:<16} loop {loop / 1e3:6.1f} k instructions per item, "
            f"x{loop / off:.2f} vs off ({(loop - off) / 1e3:+.1f} k)"
        )
        others = sum(v for t, v in per_item[arm].items() if t != 1)
        if others:
            line += f"; other threads {others / 1e3:.1f} k per item"
        print(line)


if __name__ == "__main__":
    main()
