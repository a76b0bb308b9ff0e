"""How long ``hush batch`` takes from the command to its first request, in CPU and wall time.

``hush batch`` runs over 50 CSV rows against the local server (in a process of its own)
``--runs`` times. In each run an audit hook in the command's interpreter notes, at the
first ``socket.connect`` to the server (the first request's connection), the process's
CPU time since it started (``time.process_time()``: interpreter start-up, imports,
reading the rows, building the graph) and the wall time since the command was launched.
CPU time is the figure to compare on a busy machine; the wall time is what a user sees.

Each tree's ``hush`` package is byte-compiled first (``compileall``), as an installed
package is (with ``PYTHONDONTWRITEBYTECODE`` set, a fresh worktree would otherwise be
compiled again in every run). With ``--compare PATH`` the runs alternate between this
tree and the tree at ``PATH`` (e.g. a ``git worktree`` of the base commit), one run of
each in turn, and both are printed, as ranges (min-max) over the runs, with
``python -X importtime``'s cumulative figures for ``hush.cli`` and ``openai``:

    python benchmarks/bench_first_request.py [--runs 5] [--compare /tmp/base]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server_process import ServerProcess

HERE = Path(__file__).resolve().parent.parent
PROBE = """
import json, runpy, sys, time
port = int(sys.argv[1])
seen = []

def hook(event, args):
    if event == "socket.connect" and not seen:
        address = args[1]
        if isinstance(address, tuple) and len(address) >= 2 and address[1] == port:
            seen.append((time.process_time(), time.monotonic()))
            print(json.dumps(seen[0]), file=sys.stderr, flush=True)

sys.addaudithook(hook)
sys.argv = ["hush", *sys.argv[2:]]
runpy.run_module("hush.cli", run_name="__main__")
"""


SHOWN = (
    "hush batch rows.csv -o out.csv --prompt 'Classify: {text}' --model gpt-4o-mini --no-progress"
)
"""The command each run times (run as ``python -c PROBE``: the ``hush`` script's own
start-up, ``from hush.cli import main``, is the same import)."""


def one_run(tree: Path, server: ServerProcess, workdir: Path, source: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) from launching ``hush batch`` to its first connection."""
    config = workdir / "resources.yaml"
    config.write_text(
        f"llm:gpt-4o-mini:\n  base_url: {server.base_url}\n  model: gpt-4o-mini\n  rpm: 1200\n"
    )
    output = workdir / f"out-{time.monotonic_ns()}.csv"
    command = [sys.executable, "-c", PROBE, str(server.port), "batch", str(source)]
    command += ["-o", str(output), "--prompt", "Classify: {text}", "--model", "gpt-4o-mini"]
    command += ["--no-progress"]
    env = {**os.environ, "HUSH_CONFIG": str(config), "PYTHONPATH": str(tree)}
    launched = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=workdir)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    first = next(line for line in done.stderr.splitlines() if line.startswith("["))
    cpu, at = json.loads(first)
    return cpu, at - launched


def import_seconds(tree: Path, module: str) -> float:
    """The cumulative ``python -X importtime`` figure for ``module`` in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),
    )
    last = [line for line in done.stderr.splitlines() if line.rstrip().endswith(f"| {module}")]
    return int(last[-1].split("|")[1]) / 1e6


def span(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--compare", type=Path, help="another tree, run in turn with this one")
    args = parser.parse_args()
    trees = {"this tree": HERE}
    if args.compare is not None:
        trees = {f"{args.compare}": args.compare.resolve(), "this tree": HERE}
    cpu: dict[str, list[float]] = {name: [] for name in trees}
    wall: dict[str, list[float]] = {name: [] for name in trees}
    for tree in trees.values():
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "hush")], check=True)
    server = ServerProcess(seed=3)
    try:
        server.configure(latency=[0.01, 0.02])
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            source = workdir / "rows.csv"
            source.write_text("id,text\n" + "".join(f"{i},row {i}\n" for i in range(50)))
            for _ in range(args.runs):
                for name, tree in trees.items():
                    server.reset()
                    used, elapsed = one_run(tree, server, workdir, source)
                    cpu[name].append(used)
                    wall[name].append(elapsed)
    finally:
        server.stop()
    print(f"hush batch, 50 rows: command to first request over {args.runs} runs (min-max)")
    print(f"command: {SHOWN}  (HUSH_CONFIG: one llm resource, http://127.0.0.1, rpm 1200)")
    print(f"{'tree':<28} {'CPU s':>11} {'wall s':>11} {'import hush.cli':>16} {'openai':>11}")
    for name, tree in trees.items():
        cli = [import_seconds(tree, "hush.cli") for _ in range(3)]
        sdk = [import_seconds(tree, "openai") for _ in range(3)]
        print(
            f"{name:<28} {span(cpu[name]):>11} {span(wall[name]):>11} "
            f"{span(cli):>16} {span(sdk):>11}"
        )
    verdict = "met" if max(wall["this tree"]) <= 0.5 else "not met"
    print(f"target: the first request within 0.5 s of the command in every run: {verdict}")


if __name__ == "__main__":
    main()
