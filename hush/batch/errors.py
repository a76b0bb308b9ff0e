"""What stops a batch before anything is sent (each is a usage error of ``hush batch``)."""

from __future__ import annotations

from hush.core.errors import HushError


class BatchUsageError(HushError, ValueError):
    """The batch cannot start: a bad file, template, model, option or a changed checkpoint."""


class TableError(BatchUsageError):
    """A table cannot be read or written (unknown format, missing file, bad content)."""


class TemplateError(BatchUsageError):
    """A prompt template is unreadable, malformed, or names a column that does not exist."""
