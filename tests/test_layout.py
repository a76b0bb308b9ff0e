"""The package's shape: modules a reader can hold, and the nodes a user writes at the top."""

from __future__ import annotations

from pathlib import Path

import pytest

import hush

PACKAGE = Path(hush.__file__).resolve().parent
MAX_LINES = 400


def test_no_module_outside_hush_testing_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(PACKAGE.parent)): n
        for path in sorted(PACKAGE.rglob("*.py"))
        if "testing" not in path.relative_to(PACKAGE).parts[:1]
        and (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


@pytest.mark.parametrize(
    "name",
    [
        "GraphNode",
        "CodeNode",
        "MapNode",
        "PromptNode",
        "LLMNode",
        "ParserNode",
        "EmbeddingNode",
        "RerankNode",
    ],
)
def test_hush_exports_the_nodes_a_user_writes(name: str) -> None:
    assert getattr(hush, name).__name__ == name
