"""Secrets that must never appear in text hush keeps or shows.

Configured secrets (API keys, secret headers, the Langfuse secret key) are
registered here when their configuration is read; :func:`redact` replaces each
exact value with ``***``. It is applied where an exception becomes text that is
kept (a node's error message and traceback), so a server that echoes the
``Authorization`` header cannot carry a key into results, the run record,
traces, logs or CLI output. A secret shorter than :data:`MIN_LENGTH` characters
is not redacted (it would blank out ordinary words) and is reported as suspect.
"""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger("hush.secrets")

MIN_LENGTH = 8
MASK = "***"

_secrets: tuple[str, ...] = ()
_warned: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None, *, what: str = "a secret") -> None:
    """Redact ``value`` from now on; a value too short to redact safely is warned about."""
    global _secrets
    if not value:
        return
    if len(value) < MIN_LENGTH:
        with _lock:
            if value in _warned:
                return
            _warned.add(value)
        logger.warning(
            "%s is only %d character(s) long; that does not look like a real key, and it is "
            "not redacted from messages",
            what,
            len(value),
        )
        return
    with _lock:
        if value not in _secrets:
            _secrets = tuple(sorted({*_secrets, value}, key=len, reverse=True))


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text
