"""Secrets that must never appear in text hush keeps or shows, in any form.

Configured secrets (API keys, secret headers, the Langfuse secret key) are
registered here when their configuration is read; :func:`redact` replaces each
one with ``***`` in the forms a message can carry it: as is, escaped the way
``repr`` of a string or of bytes writes it (``b'Bearer sk-…\\n'``), JSON- or
URL-encoded, HTML-escaped, and inside base64 (a ``Basic`` credential). A
secret cut off at the end of a text (a truncated message) is redacted too.

It is applied where an exception becomes text that is kept (a node's error
message and traceback, trace records), and to every log record of hush's own
loggers (``hush.*``) and of the HTTP libraries hush hands keys to (``openai``,
``httpx``, ``httpcore``): a log record factory rewrites the message, the
formatted traceback and the stack of such a record when they hold a secret, so
every handler, wherever attached, sees the redacted text (a program that installs
its own record factory keeps this by calling the one it replaces, as the logging
documentation asks). A secret shorter than :data:`MIN_LENGTH` characters is not
redacted (it would blank out ordinary words) and is reported as suspect.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import re
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("hush.secrets")

MIN_LENGTH = 8
MASK = "***"
LOGGERS = ("hush", "openai", "httpx", "httpx2", "httpcore", "httpcore2")
"""Loggers (and their children) whose records are redacted."""

_ESCAPES: tuple[Callable[[str], str], ...] = (
    lambda s: s.encode("unicode_escape").decode("ascii"),
    lambda s: repr(s)[1:-1],
    lambda s: repr(s.encode("utf-8"))[2:-1],
    lambda s: json.dumps(s)[1:-1],
    lambda s: json.dumps(s, ensure_ascii=False)[1:-1],
    lambda s: urllib.parse.quote(s, safe=""),
    urllib.parse.quote,
    lambda s: urllib.parse.quote_plus(s, safe=""),
    html.escape,
)
"""Ways a message may write a string: escaped, quoted, URL-encoded."""
_ESCAPE_DEPTH = 2
"""Escapes applied on top of each other (a JSON string holding a ``repr``)."""
_PERCENT = re.compile(r"%([0-9A-F]{2})")

_secrets: tuple[str, ...] = ()
_pattern: re.Pattern[str] | None = None
_warned: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None, *, what: str = "a secret") -> None:
    """Redact ``value`` (and it without surrounding whitespace) from now on; a value too
    short to redact safely is warned about."""
    global _secrets, _pattern
    if not value:
        return
    if len(value.strip()) < MIN_LENGTH:
        with _lock:
            if value in _warned:
                return
            _warned.add(value)
        logger.warning(
            "%s is only %d character(s) long; that does not look like a real key, and it is "
            "not redacted from messages",
            what,
            len(value.strip()),
        )
        return
    with _lock:
        added = {value, value.strip()} - set(_secrets)
        if not added:
            return
        _secrets = tuple(sorted({*_secrets, *added}, key=len, reverse=True))
        forms = {form for secret in _secrets for form in _forms(secret)}
        alternatives = (_regex(form) for form in sorted(forms, key=len, reverse=True))
        _pattern = re.compile("|".join(alternatives))


def redact(text: str) -> str:
    """``text`` with every registered secret, in every form, replaced by ``***``."""
    pattern = _pattern
    if pattern is None:
        return text
    text = pattern.sub(MASK, text)
    return _redact_cut_tail(text)


def _forms(secret: str) -> set[str]:
    """The secret as messages may carry it: escaped (up to two layers) and in base64."""
    forms = {secret}
    for _ in range(_ESCAPE_DEPTH):
        forms |= {escape(form) for form in forms for escape in _ESCAPES}
    forms |= _base64_cores(secret.encode("utf-8"))
    return {form for form in forms if len(form) >= MIN_LENGTH}


def _base64_cores(raw: bytes) -> set[str]:
    """The base64 characters that depend on ``raw`` alone, at each of the three byte
    offsets it can have inside a longer encoded value (standard and URL-safe alphabets)."""
    cores = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode("ascii")
        start = -(-8 * offset // 6)
        end = 8 * (offset + len(raw)) // 6
        core = encoded[start:end]
        cores |= {core, core.replace("+", "-").replace("/", "_")}
    return cores


def _regex(form: str) -> str:
    """``form`` as a pattern; ``%xx`` escapes match in either case."""
    escaped = re.escape(form)
    return _PERCENT.sub(lambda m: f"%(?i:{m.group(1)})", escaped)


def _redact_cut_tail(text: str) -> str:
    """Redact the start of a secret that ends ``text`` (a message cut short), even before a
    trailing ellipsis."""
    body = text.rstrip(".… \n")
    for secret in _secrets:
        head = secret[:MIN_LENGTH]
        at = body.find(head, max(0, len(body) - len(secret) + 1))
        while at != -1:
            if secret.startswith(body[at:]):
                return body[:at] + MASK + text[len(body) :]
            at = body.find(head, at + 1)
    return text


def _redacted_record(record: logging.LogRecord) -> None:
    """Rewrite ``record``'s message, traceback and stack where they hold a secret."""
    try:
        message = record.getMessage()
    except Exception:
        message = str(record.msg)
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        trace = logging.Formatter().formatException(record.exc_info)
        clean = redact(trace)
        if clean != trace:
            record.exc_text = clean
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def _ours(name: str) -> bool:
    return any(name == root or name.startswith(root + ".") for root in LOGGERS)


def _install_record_factory() -> None:
    """Wrap the logging record factory so records of :data:`LOGGERS` are redacted."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "hush_redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if _pattern is not None and _ours(record.name):
            _redacted_record(record)
        return record

    factory.hush_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


_install_record_factory()
