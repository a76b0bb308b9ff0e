"""Every speed or memory figure in the docs names the benchmark command that reproduces it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

FIGURE = re.compile(
    r"\d(?:\.\d+)?x\b"  # a ratio: 0.97-1.32x
    r"|\d\s?(?:µs|us)\b"  # a cost per node, item or span
    r"|B/item"  # memory per item
    r"|\d\s?(?:rows|texts|items|requests)/s\b"  # a throughput
    r"|% of ideal"
)
"""A measured figure: what a reader would want to reproduce."""

COMMAND = re.compile(r"python benchmarks/(\w+\.py)")


def sections(path: Path) -> list[tuple[int, list[str], str]]:
    """The page cut at its headings: (first line number, prose lines, the whole text).

    Figures are looked for in the prose only; a command may be in a code block.
    """
    found: list[tuple[int, list[str], list[str]]] = [(1, [], [])]
    in_code = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            found.append((number, [], []))
        elif not in_code:
            found[-1][1].append(line)
        found[-1][2].append(line)
    return [(first, prose, "\n".join(text)) for first, prose, text in found]


def test_the_figure_pattern_finds_figures_and_skips_prose() -> None:
    assert FIGURE.search("hush / bare 0.85-0.97x (3 runs)")
    assert FIGURE.search("1.9-3.8 µs per node")
    assert FIGURE.search("93 B/item")
    assert FIGURE.search("31-37 texts/s")
    assert not FIGURE.search("a 50 x 100 nested map of 2,000 items, cap 200")
    assert not FIGURE.search("max_concurrency=10**6 over 10 items")


def unsourced(path: Path) -> list[str]:
    """Figure lines whose section names no ``python benchmarks/...`` command."""
    lines_out = []
    for first, lines, text in sections(path):
        scripts = COMMAND.findall(text)
        missing = [s for s in scripts if not (ROOT / "benchmarks" / s).is_file()]
        assert missing == [], f"{path.name}:{first} names benchmarks that do not exist: {missing}"
        if not scripts:
            lines_out += [line.strip() for line in lines if FIGURE.search(line)]
    return lines_out


def test_a_figure_without_its_command_is_found(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# A\n\nhush is 0.5x bare asyncio.\n\n"
        "# B\n\n`python benchmarks/bench_map.py`: 93 B/item.\n\n"
        "```\n4x in a code block\n```\n"
        "# C\n\n20-30 µs per span, its command below.\n\n"
        "```bash\npython benchmarks/bench_map.py --runs 3\n```\n",
        encoding="utf-8",
    )
    assert unsourced(page) == ["hush is 0.5x bare asyncio."]


@pytest.mark.parametrize("path", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_every_figure_is_in_a_section_naming_its_benchmark_command(path: Path) -> None:
    assert unsourced(path) == [], f"{path.name}: figures with no `python benchmarks/...` command"
