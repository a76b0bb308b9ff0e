"""A row's conversation history (``--history-column``): the messages placed between the
system prompt and the row's new user message.

A cell is empty (no history) or a JSON list of ``{"role": ..., "content": ...}``
messages (a JSON Lines input may hold the list itself). Anything else is that
row's error, found before anything is sent for it.
"""

from __future__ import annotations

import json
import math
from typing import Any

ROLES = frozenset({"system", "user", "assistant", "developer", "tool"})


class HistoryError(ValueError):
    """A history cell that is not a list of chat messages."""


def parse_history(cell: Any) -> list[dict[str, str]] | None:
    """The messages of ``cell`` (``None`` for an empty cell); raises :class:`HistoryError`."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return None
    messages = cell
    if isinstance(cell, str):
        if not cell.strip():
            return None
        try:
            messages = json.loads(cell)
        except json.JSONDecodeError as exc:
            raise HistoryError(f"is not JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(messages, list):
        raise HistoryError(
            f"is a JSON {type(messages).__name__}, not a list of {{role, content}} messages"
        )
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) - {"role", "content", "name"}:
            raise HistoryError(f"message {i + 1} is not a {{role, content}} object: {message!r}")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise HistoryError(
                f"message {i + 1} has role {role!r} (one of: {', '.join(sorted(ROLES))})"
            )
        if not isinstance(content, str):
            raise HistoryError(f"message {i + 1} has no text content: {message!r}")
        out.append({"role": str(role), "content": content})
    return out
