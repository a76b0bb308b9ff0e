"""The base class of every error hush raises, below every package that raises one."""

from __future__ import annotations

from typing import ClassVar


class HushError(Exception):
    """Base class of every error hush raises itself."""

    retryable: ClassVar[bool] = False
    """Whether retrying the same work may succeed (a node's default retry rule reads it)."""
