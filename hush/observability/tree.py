"""Render trace records as indented trees, one per run (drawn by ``rich``)."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Console
from rich.text import Text
from rich.tree import Tree

Children = Mapping[Any, list[Mapping[str, Any]]]


def format_tree(
    records: Iterable[Mapping[str, Any]], *, show_io: bool = False, width: int = 120
) -> str:
    """Render records (from :func:`~hush.observability.local.read_trace` or a
    :class:`~hush.observability.memory.MemoryTracer`) as one tree per run.

    Each line shows name, kind, duration, and for generations the model and
    token usage; failures show ``ERROR`` and the message. Children are listed in
    start order. A span whose parent was never recorded (the process died before
    the parent ended) is shown at the top level, marked as such. ``show_io``
    adds a line with the input and the output of each span, cut to ``width``.
    """
    items = list(records)
    ids = {r.get("id") for r in items}
    children: defaultdict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    roots: list[Mapping[str, Any]] = []
    for record in items:
        parent = record.get("parent_id")
        (children[parent] if parent is not None and parent in ids else roots).append(record)
    out = io.StringIO()
    console = Console(file=out, width=1_000_000, color_system=None, highlight=False)
    for number, root in enumerate(sorted(roots, key=_start_key)):
        if number:
            console.print()
        tree = Tree(_text(root, children, 0, show_io, width, top=True))
        _add_children(tree, root, children, 1, show_io, width)
        console.print(tree)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines())


def _add_children(
    tree: Tree, record: Mapping[str, Any], children: Children, depth: int, show_io: bool, width: int
) -> None:
    for child in sorted(children.get(record.get("id"), []), key=_start_key):
        branch = tree.add(_text(child, children, depth, show_io, width, top=False))
        _add_children(branch, child, children, depth + 1, show_io, width)


def _text(
    record: Mapping[str, Any], children: Children, depth: int, show_io: bool, width: int, top: bool
) -> Text:
    lines = [_label(record, top=top)]
    if show_io:
        bar = "│ " if children.get(record.get("id")) else "  "
        for key, label in (("input", "in: "), ("output", "out:")):
            if record.get(key) is not None:
                text = json.dumps(record[key], ensure_ascii=False, default=repr)
                room = max(width - 4 * depth - len(label) - 3, 10)
                shown = text if len(text) <= room else text[: room - 1] + "…"
                lines.append(f"{bar}{label} {shown}")
    return Text("\n".join(lines))


def _label(record: Mapping[str, Any], *, top: bool) -> str:
    parts = [str(record.get("name", "?")), f"[{record.get('kind', '?')}]"]
    if record.get("type") == "generation" and record.get("model"):
        parts.append(str(record["model"]))
    parts.append(_duration(record.get("duration_ms")))
    usage = record.get("usage")
    if isinstance(usage, Mapping) and usage:
        parts.append(
            f"tokens {usage.get('input', '?')} in / {usage.get('output', '?')} out"
            f" / {usage.get('total', '?')} total"
        )
    cost = record.get("cost")
    if isinstance(cost, int | float) and not isinstance(cost, bool):
        parts.append(f"{cost:.6f} USD" + (" (cached)" if record.get("cached") else ""))
    if record.get("status"):
        parts.append(f"({record['status']})")
    if top:
        parts += _run_fields(record)
    if record.get("level") == "ERROR":
        message = str(record.get("error") or "").splitlines()
        parts.append("ERROR " + (message[0] if message else ""))
    return "  ".join(part for part in parts if part).rstrip()


def _run_fields(record: Mapping[str, Any]) -> list[str]:
    fields = []
    if record.get("parent_id") is not None:
        fields.append(f"(parent {record['parent_id']} not recorded)")
    if record.get("kind") == "run":
        fields.append(f"run_id={record.get('run_id')}")
        for key, label in (("user_id", "user"), ("session_id", "session")):
            if record.get(key):
                fields.append(f"{label}={record[key]}")
        if record.get("tags"):
            fields.append("tags=" + ",".join(str(t) for t in record["tags"]))
    return fields


def _duration(ms: Any) -> str:
    if not isinstance(ms, int | float):
        return ""
    if ms < 1:
        return f"{ms:.2f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.2f} s"


def _start_key(record: Mapping[str, Any]) -> tuple[str, str]:
    return str(record.get("start_time") or ""), str(record.get("name") or "")
