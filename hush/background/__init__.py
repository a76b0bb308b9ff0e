"""Background threads below every other package: a batching writer thread
(:class:`BackgroundWriter`), the one shutdown policy at interpreter exit
(:mod:`~hush.background.shutdown`) and the hand-overs between a thread and an event loop
(:mod:`~hush.background.handoff`). Imports nothing else from hush, so that the core and the
checkpoint store can both use it."""

from hush.background.writer import BackgroundWriter, WriterFailedError

__all__ = ["BackgroundWriter", "WriterFailedError"]
