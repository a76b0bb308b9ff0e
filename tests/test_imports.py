"""``import hush`` stays light: heavy SDKs load only when a feature that needs them is used."""

import subprocess
import sys

import pytest

HEAVY = ("openai", "rich", "opentelemetry", "ray", "pyarrow", "openpyxl", "langfuse")


def _loaded_after(statement: str) -> set[str]:
    """The heavy top-level packages present in ``sys.modules`` after ``statement`` in a fresh interpreter."""
    probe = f"import sys\n{statement}\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


@pytest.mark.parametrize("statement", ["import hush", "import hush.cli"])
def test_import_loads_no_heavy_sdk(statement: str) -> None:
    assert _loaded_after(statement) == set()


def test_provider_nodes_still_reachable_from_top_level() -> None:
    assert "openai" in _loaded_after("from hush import LLMNode")
