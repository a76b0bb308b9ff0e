"""Several rows in one request (``--rows-per-call N``).

The rows of a pack are numbered 1..N in one user message, each with the same
instructions (the prompt template filled with that row's values); the reply is
asked as ``{"answers": [{"row": n, "answer": ...}, ...]}`` under a strict JSON
schema and mapped back by number, never by position in the list. A row whose
answer is missing, duplicated, or does not validate is asked again alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from hush.batch.schema import AnswerSchema, SchemaMismatch, json_schema_format

INSTRUCTIONS = (
    "{count} rows follow, numbered 1 to {count}. Answer each row on its own, as if it were "
    "the only one, following the instructions in it. Reply with JSON: "
    '{{"answers": [{{"row": <row number>, "answer": <the answer to that row>}}, ...]}}, '
    "one entry per row."
)


def pack_messages(
    system: str | None, user: str, requests: Sequence[Mapping[str, Any]]
) -> list[dict[str, str]]:
    """The messages of one packed request: the system prompt, then the numbered rows."""
    parts = [INSTRUCTIONS.format(count=len(requests))]
    for number, request in enumerate(requests, start=1):
        parts.append(f"### Row {number}\n{user.format(**request['fields'])}")
    messages = [{"role": "system", "content": system}] if system is not None else []
    return [*messages, {"role": "user", "content": "\n\n".join(parts)}]


def pack_format(schema: AnswerSchema | None) -> dict[str, Any]:
    """The strict response format of a packed reply (the schema's object, or text, per row)."""
    answer = schema.schema if schema is not None else {"type": "string"}
    entry = {
        "type": "object",
        "properties": {"row": {"type": "integer"}, "answer": answer},
        "required": ["row", "answer"],
        "additionalProperties": False,
    }
    packed = {
        "type": "object",
        "properties": {"answers": {"type": "array", "items": entry}},
        "required": ["answers"],
        "additionalProperties": False,
    }
    return json_schema_format("rows", packed)


def split_reply(
    content: Any, count: int, schema: AnswerSchema | None
) -> list[tuple[str, dict[str, Any] | None] | None]:
    """Each row's answer in a packed reply, by row number: ``(text, parsed)`` (``parsed``
    with a schema), or ``None`` for a row to ask again alone."""
    found: list[tuple[str, dict[str, Any] | None] | None] = [None] * count
    try:
        reply = json.loads(content) if isinstance(content, str) else None
    except json.JSONDecodeError:
        return found
    entries = reply.get("answers") if isinstance(reply, dict) else reply
    if not isinstance(entries, list):
        return found
    seen: set[int] = set()
    twice: set[int] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        number = entry.get("row")
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= count:
            continue
        (twice if number in seen else seen).add(number)
        found[number - 1] = _answer(entry.get("answer"), schema)
    for number in twice:
        found[number - 1] = None
    return found


def _answer(value: Any, schema: AnswerSchema | None) -> tuple[str, dict[str, Any] | None] | None:
    if schema is None:
        if isinstance(value, str) and value.strip():
            return value, None
        return None
    try:
        parsed = schema.validate(value)
    except SchemaMismatch:
        return None
    return json.dumps(parsed, ensure_ascii=False), parsed
