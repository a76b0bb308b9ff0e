"""``hush graph``, ``hush mock-llm``, ``hush trace`` and ``hush demo``."""

from __future__ import annotations

import errno
from pathlib import Path

import click

from hush.cli.errors import UserError
from hush.cli.loading import load_graph


@click.command()
@click.argument("target", metavar="FILE.py:GRAPH")
def graph(target: str) -> None:
    """Print a graph as a Mermaid flowchart (after validating it)."""
    click.echo(load_graph(target).to_mermaid(), nl=False)


@click.command("mock-llm", short_help="Serve the local OpenAI-compatible server.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    metavar="PORT",
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, metavar="ADDRESS", help="Address to bind."
)
@click.option(
    "--latency",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help="Delay before each answer.",
)
@click.option(
    "--rpm", type=click.IntRange(min=1), metavar="N", help="Requests per minute (429 above it)."
)
@click.option(
    "--tpm", type=click.IntRange(min=1), metavar="N", help="Tokens per minute (429 above it)."
)
@click.option(
    "--error-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    metavar="SHARE",
    help="Share of requests answered 500, 0 to 1.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, metavar="N", help="Seed of the faults."
)
def mock_llm(
    port: int,
    host: str,
    latency: float,
    rpm: int | None,
    tpm: int | None,
    error_rate: float,
    seed: int,
) -> None:
    """Serve the local OpenAI-compatible server (deterministic replies, limits, faults)."""
    from hush.testing import MockLLMConfig, serve_forever

    config = MockLLMConfig(latency=latency, rpm=rpm, tpm=tpm, error_rate_500=error_rate, seed=seed)

    def ready(base_url: str) -> None:
        click.echo(f"serving an OpenAI-compatible API at {base_url} (Ctrl-C stops)", err=True)

    try:
        serve_forever(host=host, port=port, config=config, on_ready=ready)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} is in use", "choose another with --port") from None
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


@click.command(short_help="Print a local trace as a tree.")
@click.argument(
    "path", metavar="FILE", type=click.Path(path_type=Path, exists=True, dir_okay=False)
)
def trace(path: Path) -> None:
    """Print a local trace (written with --trace or LocalTracer) as an indented tree."""
    from hush.cli.tracing import print_trace

    print_trace(path)


@click.command(short_help="Run hush batch on a bundled sheet, no API key needed.")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("hush-demo-answers.csv"),
    show_default=True,
    metavar="FILE",
    help="Where to write the answers.",
)
@click.option(
    "--progress/--no-progress", default=None, help="Progress bar (default: on a terminal)."
)
def demo(output: Path, progress: bool | None) -> int:
    """Classify a bundled spreadsheet of customer feedback with hush batch, no API key needed.

    The labels come from the local test server (picked at random), not from a model.
    """
    from hush.batch import BatchUsageError
    from hush.batch.tables import check_output
    from hush.demo import run_demo

    try:
        check_output(output)
        return run_demo(output, progress=progress)
    except BatchUsageError as exc:
        raise UserError(str(exc)) from None
