"""``hush demo``: ``hush batch`` on a bundled spreadsheet against the local server, no API key.

It starts the bundled OpenAI-compatible server on loopback (its replies pick one
of the labels a prompt offers: not a model's answers), classifies 120
customer-feedback rows in three languages, writes the answers next to the rows,
prints the two commands that do the same by hand, and says what to try next.
"""

from __future__ import annotations

import csv
import shlex
from pathlib import Path

import click

from hush.batch import run_batch_sync
from hush.providers import get_registry
from hush.testing import MockLLMConfig, MockLLMServer

HERE = Path(__file__).resolve().parent / "demo_data"
DATA = HERE / "feedback.csv"
PROMPT_FILE = HERE / "prompt.txt"
RESOURCES = HERE / "resources.yaml"
"""``llm:demo`` pointing at ``hush mock-llm`` (port 8000, or ``$HUSH_DEMO_PORT``)."""
LABELS_NOTE = (
    "Note: the labels are not a model's answers: the local test server picks one of the "
    "offered labels at random (by a hash of the text)."
)


def by_hand(output: Path) -> list[str]:
    """The demo as two shell commands: the local server (in another terminal), then the batch."""
    batch = ["hush", "batch", str(DATA), "-o", str(output), "--prompt", f"@{PROMPT_FILE}"]
    config = f"HUSH_CONFIG={shlex.quote(str(RESOURCES))}"
    return ["hush mock-llm", f"{config} {shlex.join([*batch, '--model', 'demo'])}"]


def run_demo(output: Path, *, progress: bool | None = None) -> int:
    """Run the demo batch; return the exit status (0: every row answered)."""
    config = MockLLMConfig(latency=(0.05, 0.2), error_rate_500=0.03, seed=1)
    server = MockLLMServer(config).start_in_thread()
    try:
        click.echo(
            f"Started the bundled OpenAI-compatible server at {server.base_url} (no API key)."
        )
        click.echo(LABELS_NOTE)
        get_registry().register(
            "llm:demo",
            {"base_url": server.base_url, "model": "gpt-4o-mini", "api_key": "local-demo"},
        )
        click.echo("Running the equivalent of these two commands (the first in another terminal):")
        for command in by_hand(output):
            click.echo(f"  {command}")
        click.echo()
        prompt = PROMPT_FILE.read_text(encoding="utf-8")
        result = run_batch_sync(DATA, output, prompt=prompt, model="demo", progress=progress)
    finally:
        server.stop_thread()
    answered = len(result.rows) - result.failed
    click.echo(
        f"{answered}/{len(result.rows)} rows classified ({result.resumed} from the checkpoint); "
        f"{server.status_counts.get(500, 0)} injected server errors were retried."
    )
    for row in result.rows[:5]:
        text = " ".join(str(row["feedback"]).split())
        click.echo(f"  {text[:58]:60} -> {row['answer']}")
    with DATA.open(newline="", encoding="utf-8") as f:
        sheet = csv.DictReader(f).fieldnames or []
    added = ", ".join(c for c in (result.rows[0] if result.rows else {}) if c not in sheet)
    click.echo(f"\nWrote {output.resolve()}: the sheet's columns, then {added}.")
    click.echo("Run the demo again: finished rows come from")
    click.echo(f"{output.name}.checkpoint.db and nothing is sent twice.")
    click.echo(f"\nThe demo's code: {Path(__file__).resolve()}; its data: {DATA}")
    click.echo("Next: put your provider in resources.yaml (llm:gpt-4o-mini with base_url, api_key,")
    click.echo("model) and run hush batch on your own sheet:")
    click.echo('  hush batch sheet.xlsx -o answers.xlsx --prompt "Answer briefly: {question}" \\')
    click.echo("      --model gpt-4o-mini")
    click.echo("or build the same thing as a graph: see docs/tutorial.md.")
    return 0 if result.ok else 1
