"""Moved to :mod:`hush.background`; kept as a re-export for ``hush.observability.spans``
until it imports from there."""

from hush.background.writer import BackgroundWriter, WriterFailedError

__all__ = ["BackgroundWriter", "WriterFailedError"]
