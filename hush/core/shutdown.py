"""Moved to :mod:`hush.background.shutdown`; kept as a re-export for
``hush.observability.spans`` until it imports from there."""

from hush.background.shutdown import Closing, close_all, register, unregister

__all__ = ["Closing", "close_all", "register", "unregister"]
