"""The docs as a reader uses them: runnable guide code runs, every cited file exists."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

CITED = re.compile(r"(?<![\w/.-])((?:examples|benchmarks|docs|hush|tests)/[\w./-]*\w)")
"""A repository path written in prose or code: examples/..., benchmarks/..., docs/..."""


def texts() -> list[Path]:
    return [
        ROOT / "README.md",
        *sorted(DOCS.glob("*.md")),
        *sorted((ROOT / "examples").glob("*.py")),
        *sorted((ROOT / "benchmarks").glob("*.py")),
    ]


@pytest.mark.parametrize("path", texts(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_cited_file_is_in_the_repo(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "shared/" not in text, f"{path.name} cites files outside the repository"
    missing = []
    for cited in CITED.findall(text):
        if cited.endswith((".db", ".jsonl", ".json.out")) and not cited.startswith("examples/"):
            continue
        candidates = [ROOT / cited, ROOT / cited.rstrip(".")]
        if path.parent == DOCS:
            candidates.append(DOCS / cited)
        if not any(c.exists() for c in candidates):
            missing.append(cited)
    assert not missing, f"{path.name} cites files that are not in the repository: {missing}"


@pytest.mark.parametrize("path", texts(), ids=lambda p: str(p.relative_to(ROOT)))
def test_markdown_links_resolve(path: Path) -> None:
    if path.suffix != ".md":
        return
    broken = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8")):
        if "://" in target:
            continue
        if not (path.parent / target).exists():
            broken.append(target)
    assert not broken, f"{path.name} links to missing files: {broken}"


def test_getting_started_code_runs_in_an_empty_directory(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / "getting-started.md").read_text(), re.S)
    runnable = [b for b in blocks if b.startswith("from hush import")]
    assert len(runnable) >= 2
    env = {k: v for k, v in os.environ.items() if k not in ("HUSH_CONFIG", "OPENAI_API_KEY")}
    for number, block in enumerate(runnable):
        script = tmp_path / f"guide_{number}.py"
        script.write_text(block)
        out = subprocess.run(
            [sys.executable, script.name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert out.returncode == 0, (block, out.stderr[-2000:])
        assert "status='ok'" in out.stdout or "['A', 'B']" in out.stdout, out.stdout
