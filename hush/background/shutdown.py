"""The one shutdown policy of hush's background threads: close what is open at exit.

At interpreter exit one ``atexit`` hook closes every registered object still open:
all begin closing at once, and each is waited for at most its ``exit_timeout``
seconds. In a forked child each is told that its threads do not exist.
"""

from __future__ import annotations

import atexit
import logging
import os
import time
import weakref
from typing import Protocol

logger = logging.getLogger("hush.shutdown")


class Closing(Protocol):
    """What the exit hook closes."""

    name: str
    exit_timeout: float

    def begin_close(self) -> None:
        """Start closing without waiting."""

    def wait_closed(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for the close to finish."""

    def after_fork(self) -> None:
        """In a forked child: forget the parent's threads and locks."""


_open: weakref.WeakSet[Closing] = weakref.WeakSet()


def register(closing: Closing) -> None:
    """Close ``closing`` at exit unless :func:`unregister` comes first (held weakly)."""
    _open.add(closing)


def unregister(closing: Closing) -> None:
    """``closing`` was closed by its owner."""
    _open.discard(closing)


@atexit.register
def close_all() -> None:
    """Close everything still registered, each waited for at most its ``exit_timeout``
    (one warning for each that did not finish: what it still held is lost)."""
    pending = list(_open)
    start = time.monotonic()
    for closing in pending:
        closing.begin_close()
    for closing in pending:
        if not closing.wait_closed(max(start + closing.exit_timeout - time.monotonic(), 0.0)):
            logger.warning(
                "%s did not finish within %.1f s of interpreter exit; what it still held is lost",
                closing.name,
                closing.exit_timeout,
            )


def _after_fork() -> None:
    for closing in list(_open):
        closing.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
