"""The ``hush`` command line: run a graph from a file, print it, serve the local LLM, demo."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from hush.core.engine import Hush
from hush.core.nodes.graph.graph_node import GraphNode
from hush.core.state import RunRecord

app = typer.Typer(
    help="hush: an asyncio DAG workflow engine for LLM pipelines.", no_args_is_help=True
)


def load_graph(target: str) -> GraphNode:
    """Load ``FILE.py:name`` (a GraphNode, a Hush engine, or a function returning one)."""
    file, _, attr = target.partition(":")
    path = Path(file)
    if not path.is_file():
        raise typer.BadParameter(f"no such file: {file}")
    spec = importlib.util.spec_from_file_location(f"hush_user_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise typer.BadParameter(f"cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    sys.path.insert(0, str(path.resolve().parent))
    spec.loader.exec_module(module)
    if not attr:
        found = [v for v in vars(module).values() if isinstance(v, GraphNode) and v.parent is None]
        if len(found) != 1:
            raise typer.BadParameter(
                f"{file} has {len(found)} root graphs; name one as {file}:NAME"
            )
        obj: Any = found[0]
    else:
        if not hasattr(module, attr):
            raise typer.BadParameter(f"{file} has no attribute '{attr}'")
        obj = getattr(module, attr)
    if callable(obj) and not isinstance(obj, GraphNode | Hush):
        obj = obj()
    if isinstance(obj, Hush):
        return obj.graph
    if not isinstance(obj, GraphNode):
        raise typer.BadParameter(f"{target} is a {type(obj).__name__}, not a GraphNode")
    return obj


def to_jsonable(value: Any) -> Any:
    """Turn a run result into JSON-friendly data (errors, pydantic models, sets...)."""
    from dataclasses import asdict, is_dataclass

    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [to_jsonable(v) for v in value]
    if isinstance(value, RunRecord):
        return to_jsonable(value.to_dict())
    if is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(asdict(value))
    if hasattr(value, "model_dump"):
        return to_jsonable(value.model_dump())
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


@app.command()
def run(
    target: Annotated[str, typer.Argument(help="FILE.py:graph")],
    inputs: Annotated[
        Path | None, typer.Option("--inputs", "-i", help="JSON file of run inputs")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write the result as JSON")
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="SQLite file to save finished work in")
    ] = None,
    run_id: Annotated[str | None, typer.Option(help="run id (reuse it to resume)")] = None,
    progress: Annotated[
        bool | None, typer.Option("--progress/--no-progress", help="progress bars")
    ] = None,
    max_concurrency: Annotated[
        int | None, typer.Option(help="run-wide cap on running leaf nodes")
    ] = None,
    trace: Annotated[Path | None, typer.Option(help="write a local JSONL trace here")] = None,
) -> None:
    """Run a graph and print a summary; exit 1 when the run had errors."""
    graph = load_graph(target)
    data = json.loads(inputs.read_text()) if inputs else {}
    engine = Hush(graph)
    tracer = None
    if trace is not None:
        from hush.observability import LocalTracer

        tracer = LocalTracer(trace)
    if checkpoint is not None and run_id is None:
        raise typer.BadParameter("--checkpoint needs --run-id (use the same id to resume)")
    result = asyncio.run(
        engine.run(
            data,
            checkpoint=checkpoint,
            run_id=run_id,
            progress=progress,
            max_concurrency=max_concurrency,
            tracer=tracer,
        )
    )
    state = result.pop("$state")
    if output is not None:
        output.write_text(json.dumps(to_jsonable(result), indent=2, ensure_ascii=False))
    else:
        typer.echo(json.dumps(to_jsonable(result), indent=2, ensure_ascii=False)[:4000])
    items = sum(c.resumed for c in state.iterations.values())
    nodes = sum(1 for n in state.nodes.values() if n.resumed)
    resumed = (
        f", resumed from checkpoint: {nodes} node(s), {items} item(s)" if items or nodes else ""
    )
    typer.echo(
        f"run {state.run_id}: {state.status} in {state.duration:.2f}s, "
        f"{len(state.nodes)} nodes, {len(state.errors)} error(s){resumed}",
        err=True,
    )
    for err in state.errors[:10]:
        typer.echo(f"  {err}", err=True)
    if len(state.errors) > 10:
        typer.echo(f"  ... and {len(state.errors) - 10} more", err=True)
    raise typer.Exit(1 if state.errors else 0)


@app.command()
def graph(target: Annotated[str, typer.Argument(help="FILE.py:graph")]) -> None:
    """Print a graph as a Mermaid flowchart (after validating it)."""
    g = load_graph(target)
    g.build()
    typer.echo(g.to_mermaid(), nl=False)


@app.command("mock-llm")
def mock_llm(
    port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 8000,
    host: Annotated[str, typer.Option(help="address to bind (loopback by default)")] = "127.0.0.1",
    latency: Annotated[float, typer.Option(help="seconds per request")] = 0.0,
    rpm: Annotated[int | None, typer.Option(help="requests-per-minute limit (429 above)")] = None,
    tpm: Annotated[int | None, typer.Option(help="tokens-per-minute limit (429 above)")] = None,
    error_rate: Annotated[float, typer.Option(help="share of requests answered 500")] = 0.0,
    seed: Annotated[int, typer.Option(help="seed for injected faults")] = 0,
) -> None:
    """Serve the local OpenAI-compatible server (deterministic replies, limits, faults)."""
    from hush.testing import MockLLMConfig, serve_forever

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = MockLLMConfig(latency=latency, rpm=rpm, tpm=tpm, error_rate_500=error_rate, seed=seed)
    serve_forever(host=host, port=port, config=config)


@app.command()
def demo(
    rows: Annotated[int, typer.Option(help="how many rows to classify")] = 200,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress")] = None,
) -> None:
    """Classify spreadsheet-like rows with an LLM against the local server (no API key)."""
    from hush.demo import run_demo

    raise typer.Exit(asyncio.run(run_demo(rows, progress=progress)))


@app.command()
def trace(path: Annotated[Path, typer.Argument(help="JSONL file written by LocalTracer")]) -> None:
    """Print a local trace as an indented tree."""
    from hush.observability.local import read_trace
    from hush.observability.tree import format_tree

    typer.echo(format_tree(read_trace(path)))


def main() -> None:
    """Entry point of the ``hush`` script."""
    app()


if __name__ == "__main__":
    main()
