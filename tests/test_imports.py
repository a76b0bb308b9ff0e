"""``import hush`` stays light: heavy SDKs load only when a feature that needs them is used."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hush.testing import MockLLMServer

HEAVY = (
    "openai",
    "rich",
    "opentelemetry",
    "ray",
    "pyarrow",
    "openpyxl",
    "langfuse",
    "genai_prices",
)


LAZY = (*HEAVY, "tenacity", "hush.cli.run", "hush.cli.tools", "hush.cli.loading")
"""What a plain ``hush batch`` does not load (before its first request or after)."""


def _loaded_after(statement: str) -> set[str]:
    """The heavy top-level packages present in ``sys.modules`` after ``statement`` in a fresh interpreter."""
    probe = f"import sys\n{statement}\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


@pytest.mark.parametrize("statement", ["import hush", "import hush.cli"])
def test_import_loads_no_heavy_sdk(statement: str) -> None:
    assert _loaded_after(statement) == set()


def test_provider_nodes_are_reachable_from_top_level_without_the_sdk() -> None:
    """The SDK loads at the first call that needs it, not with the node's class."""
    assert _loaded_after("from hush import LLMNode, EmbeddingNode") == set()


def test_a_plain_batch_run_loads_no_heavy_sdk(tmp_path: Path) -> None:
    """``hush batch`` over a CSV (no --schema, no tracing) sends every row and exits without
    loading the ``openai`` SDK, a table library, ``rich``, ``ray`` or a tracing SDK; with
    every row answered at once, ``tenacity`` (retries), the other commands' modules and
    the retry policy's validator are not loaded either."""
    probe = f"""
import runpy, sys
sys.argv = ["hush", "batch", sys.argv[1], "-o", sys.argv[2], "--prompt", "Say {{text}}",
            "--model", "gpt-4o-mini", "--no-progress"]
try:
    runpy.run_module("hush.cli", run_name="__main__")
except SystemExit as done:
    from hush.core.policies import RetryPolicy
    built = ["RetryPolicy"] if RetryPolicy.__pydantic_complete__ else []
    print("exit", done.code, *(m for m in {LAZY!r} if m in sys.modules), *built)
"""
    with MockLLMServer() as server:
        config = tmp_path / "resources.yaml"
        config.write_text(f"llm:gpt-4o-mini:\n  base_url: {server.base_url}\n  model: m\n")
        source = tmp_path / "rows.csv"
        source.write_text("text\none\ntwo\n")
        done = subprocess.run(
            [sys.executable, "-c", probe, str(source), str(tmp_path / "out.csv")],
            capture_output=True,
            text=True,
            env={**os.environ, "HUSH_CONFIG": str(config)},
            check=False,
        )
        assert done.stdout.split() == ["exit", "0"], done.stdout + done.stderr
        assert server.total_requests == 2
