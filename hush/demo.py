"""``hush demo``: ``hush batch`` on a bundled spreadsheet against the local server, no API key.

It starts the bundled OpenAI-compatible server on loopback (its replies pick one
of the labels a prompt offers), classifies 120 customer-feedback rows in three
languages, writes the answers next to the rows, and says what to try next.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from hush.batch import run_batch_sync
from hush.providers import get_registry
from hush.testing import MockLLMConfig, MockLLMServer

DATA = Path(__file__).resolve().parent / "demo_data" / "feedback.csv"
PROMPT = (
    "Classify this customer feedback as one of: billing, delivery, product, account or other. "
    "Answer with the label only.\n\nFeedback: {feedback}"
)


def run_demo(output: Path, *, progress: bool | None = None) -> int:
    """Run the demo batch; return the exit status (0: every row answered)."""
    config = MockLLMConfig(latency=(0.05, 0.2), error_rate_500=0.03, seed=1)
    server = MockLLMServer(config).start_in_thread()
    try:
        print(f"Started the bundled OpenAI-compatible server at {server.base_url} (no API key).")
        get_registry().register(
            "llm:demo",
            {"base_url": server.base_url, "model": "gpt-4o-mini", "api_key": "local-demo"},
        )
        command = shlex.join(
            ["hush", "batch", str(DATA), "-o", str(output), "--prompt", PROMPT, "--model", "demo"]
        )
        print(f"Running the equivalent of:\n  {command}\n")
        result = run_batch_sync(DATA, output, prompt=PROMPT, model="demo", progress=progress)
    finally:
        server.stop_thread()
    answered = len(result.rows) - result.failed
    print(
        f"{answered}/{len(result.rows)} rows classified ({result.resumed} from the checkpoint); "
        f"{server.status_counts.get(500, 0)} injected server errors were retried."
    )
    for row in result.rows[:5]:
        text = " ".join(str(row["feedback"]).split())
        print(f"  {text[:58]:60} -> {row['answer']}")
    print(f"\nWrote {output.resolve()}: the sheet's columns, then answer, error, latency_s, model,")
    print("prompt_tokens and completion_tokens for every row. Run the demo again: finished rows")
    print(f"come from {output.name}.checkpoint.db and nothing is sent twice.")
    print(f"\nThe demo's code: {Path(__file__).resolve()}; its data: {DATA}")
    print("Next: put your provider in resources.yaml (llm:gpt-4o-mini with base_url, api_key,")
    print("model) and run hush batch on your own sheet:")
    print('  hush batch sheet.xlsx -o answers.xlsx --prompt "Answer briefly: {question}" \\')
    print("      --model gpt-4o-mini")
    print("or build the same thing as a graph: see docs/tutorial.md.")
    return 0 if result.ok else 1
