"""The checkpoint store and the background threads sit below the core: neither imports it
(nor anything above it), so ``hush.core`` -> ``hush.checkpoint`` is no package cycle."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import hush

HUSH = Path(hush.__file__).resolve().parent
ABOVE = (
    "hush.core",
    "hush.providers",
    "hush.observability",
    "hush.distributed",
    "hush.batch",
    "hush.cli",
)


def _imports(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, at any level (``TYPE_CHECKING`` blocks included)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def _above(module: str) -> bool:
    return any(module == top or module.startswith(f"{top}.") for top in ABOVE)


@pytest.mark.parametrize("package", ["checkpoint", "background"])
def test_the_package_imports_nothing_from_the_core_or_above(package: str) -> None:
    found = {
        (str(path.relative_to(HUSH)), module)
        for path in (HUSH / package).rglob("*.py")
        for module in _imports(path)
        if _above(module)
    }
    assert found == set()


def test_an_import_of_the_core_is_found(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("from hush.core import shutdown\nimport hush.core.errors\n")
    assert {m for m in _imports(probe) if _above(m)} == {
        "hush.core",
        "hush.core.shutdown",
        "hush.core.errors",
    }
