"""``ParseError``: text that could not be parsed, with where and a snippet."""

from __future__ import annotations

from hush.core.errors import HushError

_SNIPPET = 40


class ParseError(HushError, ValueError):
    """The text could not be parsed, or a field is missing or of the wrong type.

    ``position`` is the offset in the text the node received (``None`` when the
    problem is not at one place, e.g. a missing field); ``line`` and ``column``
    count from 1.
    """

    def __init__(self, message: str, text: str = "", position: int | None = None) -> None:
        self.position = position
        self.line: int | None = None
        self.column: int | None = None
        if position is not None:
            position = max(0, min(position, len(text)))
            self.line = text.count("\n", 0, position) + 1
            self.column = position - (text.rfind("\n", 0, position) + 1) + 1
            message = (
                f"{message} at line {self.line}, column {self.column} (char {position})\n"
                f"{snippet(text, position)}"
            )
        super().__init__(message)


def snippet(text: str, position: int) -> str:
    """The line around ``position`` (cut to a window) with a caret under it."""
    start = text.rfind("\n", 0, position) + 1
    end = text.find("\n", position)
    end = len(text) if end < 0 else end
    lo = max(start, position - _SNIPPET)
    hi = min(end, position + _SNIPPET)
    prefix = "..." if lo > start else ""
    suffix = "..." if hi < end else ""
    line = f"    {prefix}{text[lo:hi]}{suffix}"
    caret = " " * (4 + len(prefix) + position - lo) + "^"
    return f"{line}\n{caret}"
