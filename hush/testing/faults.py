"""Injected faults: markers in the last user message, seeded random rates, OpenAI error bodies."""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Literal

from hush.testing.config import MockLLMConfig

Fault = int | Literal["hang", "drop", "malformed", "cut", "cut-early", "stream-error"]
"""An HTTP error status (400-599) or a misbehaviour of the connection or the reply:
``cut`` closes the connection after the first piece of the reply, ``cut-early`` before
any content, ``stream-error`` sends an error event after the first piece of content."""

_MARKER = re.compile(r"\[\[([a-z-]+)(?::([^\]]*))?\]\]")
_KINDS: dict[str, Fault] = {
    "hang": "hang",
    "drop": "drop",
    "malformed": "malformed",
    "cut": "cut",
    "cut-early": "cut-early",
    "stream-error": "stream-error",
}
FLEX_UNAVAILABLE = (
    "Resource Unavailable: flex processing capacity is not available for this request "
    "right now. Retry later or send it without service_tier 'flex'."
)
"""The message of the 429 a ``[[flex-unavailable]]`` request sent at the flex tier gets."""
BROKEN_REPLIES = frozenset({"cut", "cut-early", "stream-error"})
"""Faults that start a reply and break it."""


@dataclass(slots=True)
class Markers:
    """Instructions found in a message: ``[[fail:500]]``, ``[[tool:NAME]]``, ..."""

    fault: Fault | None = None
    times: int | None = None
    sleep: float = 0.0
    tool: str | None = None
    usage: bool = True
    """``False`` with ``[[no-usage]]``: the reply reports no usage (as servers that ignore
    ``stream_options.include_usage`` do)."""
    retry_after: str | None = None
    """``[[retry-after:VALUE]]``: the ``Retry-After`` an injected 429 or 503 sends, as is
    (``inf``, ``nan``, ``-1``: what careless servers send)."""
    flex_unavailable: bool = False
    """``[[flex-unavailable]]``: a request sent with ``service_tier: flex`` gets OpenAI's
    429 "Resource Unavailable" (flex capacity is short); other tiers are answered."""


def parse_fault(spec: str) -> Fault | None:
    """``"500"`` -> 500, ``"hang"`` -> ``"hang"``; ``None`` if not a fault."""
    spec = spec.strip().lower()
    if spec in _KINDS:
        return _KINDS[spec]
    if spec.isdigit() and 400 <= int(spec) <= 599:
        return int(spec)
    return None


def parse_markers(text: str) -> Markers | None:
    """Read the ``[[...]]`` markers of a message (``None`` when it has none).

    ``[[fail:CODE]]``, ``[[hang]]``, ``[[drop]]``, ``[[malformed]]``, ``[[fail-once:F]]``,
    ``[[fail-times:N:F]]`` (F is a status or one of the kinds above), ``[[cut]]``,
    ``[[cut-early]]``, ``[[stream-error]]``, ``[[sleep:SECONDS]]``, ``[[tool:NAME]]``,
    ``[[no-usage]]``, ``[[retry-after:VALUE]]`` and ``[[flex-unavailable]]``. Unknown
    markers are plain text.
    """
    if "[[" not in text:
        return None
    found: Markers | None = None
    for match in _MARKER.finditer(text):
        name, arg = match.group(1), match.group(2) or ""
        markers = found or Markers()
        if name in _KINDS and not arg:
            markers.fault, markers.times = _KINDS[name], None
        elif name in ("fail", "fail-once", "fail-times"):
            times: int | None = None
            if name == "fail-once":
                times = 1
            elif name == "fail-times":
                count, _, arg = arg.partition(":")
                if not count.strip().isdigit():
                    continue
                times = int(count)
            fault = parse_fault(arg)
            if fault is None:
                continue
            markers.fault, markers.times = fault, times
        elif name == "sleep":
            try:
                markers.sleep = max(0.0, float(arg))
            except ValueError:
                continue
        elif name == "tool" and arg.strip():
            markers.tool = arg.strip()
        elif name == "no-usage" and not arg:
            markers.usage = False
        elif name == "retry-after" and arg.strip():
            markers.retry_after = arg.strip()
        elif name == "flex-unavailable" and not arg:
            markers.flex_unavailable = True
        else:
            continue
        found = markers
    return found


class FaultInjector:
    """Decides which fault, if any, a request gets."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._seen: dict[str, int] = {}

    def reset(self, seed: int) -> None:
        """Re-seed the random faults and forget how often messages were seen."""
        self._rng.seed(seed)
        self._seen.clear()

    def decide(self, markers: Markers | None, text: str, config: MockLLMConfig) -> Fault | None:
        """Fault for a request whose last user message is ``text``."""
        if markers is not None and markers.fault is not None:
            if markers.times is None:
                return markers.fault
            seen = self._seen[text] = self._seen.get(text, 0) + 1
            if seen <= markers.times:
                return markers.fault
        rates: tuple[tuple[float, Fault], ...] = (
            (config.error_rate_500, 500),
            (config.error_rate_503, 503),
            (config.hang_rate, "hang"),
            (config.drop_rate, "drop"),
            (config.malformed_rate, "malformed"),
        )
        if not any(rate for rate, _ in rates):
            return None
        draw = self._rng.random()
        for rate, fault in rates:
            if draw < rate:
                return fault
            draw -= rate
        return None


def broken_stream(events: list[bytes], fault: Fault) -> tuple[list[bytes], bool]:
    """The events of a streamed reply broken by ``fault`` (one of :data:`BROKEN_REPLIES`),
    and whether the connection is then closed without ending the stream."""
    if fault == "cut-early":
        return events[:1], True
    if fault == "cut":
        return events[:2], True
    error = {
        "error": {
            "message": "Injected fault: the model server failed mid-reply ([[stream-error]]).",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    return [
        *events[:2],
        b"data: " + json.dumps(error).encode() + b"\n\n",
        b"data: [DONE]\n\n",
    ], False


_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Bad request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("permission_error", "permission_denied", "You are not allowed to use this model."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    408: ("timeout", "timeout", "Request timed out."),
    409: ("conflict", "conflict", "Conflict."),
    422: ("invalid_request_error", "unprocessable_entity", "Unprocessable entity."),
    429: ("rate_limit_exceeded", "rate_limit_exceeded", "Rate limit reached."),
    500: ("server_error", None, "The server had an error while processing your request."),
    502: ("server_error", "bad_gateway", "Bad gateway."),
    503: ("service_unavailable", "service_unavailable", "The engine is currently overloaded."),
    504: ("server_error", "gateway_timeout", "Gateway timeout."),
}


def error_body(status: int, message: str | None = None, code: str | None = None) -> bytes:
    """OpenAI-style ``{"error": {...}}`` body for ``status``."""
    kind, default_code, default_message = _ERRORS.get(
        status,
        ("server_error", None, "Server error.")
        if status >= 500
        else ("invalid_request_error", None, "Request failed."),
    )
    error = {
        "message": message or default_message,
        "type": kind,
        "param": None,
        "code": code or default_code,
    }
    return json.dumps({"error": error}).encode()
