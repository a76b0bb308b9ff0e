"""Errors the ``hush`` command reports in one or two lines, exit status 2."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in how the command was called: the message says what, the hint how to fix it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint
