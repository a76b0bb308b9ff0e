"""Import the OpenAI SDK (and what a first request needs) in a background thread.

``hush batch`` calls :func:`start` as soon as its arguments are parsed, so the SDK's
import (about a second on a small machine) runs while the command reads and checks
its input. Only third-party modules are imported here, each after the packages it
depends on: they never import :mod:`hush`, so a module lock the main thread holds
is never waited on in a cycle, and an import the main thread reaches while the
thread is at it simply waits for it (the interpreter's per-module import locks).
A failed import is left for the main thread to raise where it needs the module.
"""

from __future__ import annotations

import importlib
import logging
import threading

__all__ = ["MODULES", "THREAD_NAME", "start", "started"]

logger = logging.getLogger("hush.providers.preload")

THREAD_NAME = "hush-preload"

MODULES = (
    "openai",
    "openai.types.chat",
    "openai.resources.chat.completions",
    "httpx2",
    "tenacity",
    "genai_prices",
)
"""In the order a first request needs them; a package before its submodules."""

_lock = threading.Lock()
_thread: threading.Thread | None = None


def _import_all() -> None:
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception:
            logger.debug("preloading %s failed; it is imported where it is used", name)


def start() -> threading.Thread:
    """Start importing :data:`MODULES` in a daemon thread (once per process); returns it."""
    global _thread
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_import_all, name=THREAD_NAME, daemon=True)
            _thread.start()
        return _thread


def started() -> threading.Thread | None:
    """The preload thread, once :func:`start` has run in this process (it may be done)."""
    return _thread
