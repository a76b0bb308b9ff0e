"""Render trace records as indented trees, one per run."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

_BRANCH, _LAST, _PIPE, _SPACE = "├── ", "└── ", "│   ", "    "


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
        if parent is not None and parent in ids:
            children[parent].append(record)
        else:
            roots.append(record)

    blocks: list[str] = []
    for root in sorted(roots, key=_start_key):
        lines = [_label(root, top=True)]
        lines += _io_lines(root, _io_prefix(root, children, ""), show_io, width)
        _render_children(root, children, "", lines, show_io, width)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _render_children(
    record: Mapping[str, Any],
    children: Mapping[Any, list[Mapping[str, Any]]],
    prefix: str,
    lines: list[str],
    show_io: bool,
    width: int,
) -> None:
    kids = sorted(children.get(record.get("id"), []), key=_start_key)
    for index, child in enumerate(kids):
        last = index == len(kids) - 1
        lines.append(prefix + (_LAST if last else _BRANCH) + _label(child, top=False))
        inner = prefix + (_SPACE if last else _PIPE)
        lines += _io_lines(child, _io_prefix(child, children, inner), show_io, width)
        _render_children(child, children, inner, lines, show_io, width)


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


def _io_prefix(
    record: Mapping[str, Any], children: Mapping[Any, list[Mapping[str, Any]]], prefix: str
) -> str:
    """Indent of a record's input/output lines, continuing the bar to its children."""
    return prefix + ("│ " if children.get(record.get("id")) else "  ")


def _io_lines(record: Mapping[str, Any], prefix: str, show_io: bool, width: int) -> list[str]:
    if not show_io:
        return []
    lines = []
    for key, label in (("input", "in: "), ("output", "out:")):
        if record.get(key) is not None:
            text = json.dumps(record[key], ensure_ascii=False, default=repr)
            room = max(width - len(prefix) - len(label) - 1, 10)
            shown = text if len(text) <= room else text[: room - 1] + "…"
            lines.append(f"{prefix}{label} {shown}")
    return lines


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
