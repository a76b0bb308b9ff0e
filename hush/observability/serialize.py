"""Turn arbitrary span inputs, outputs and errors into bounded JSON-safe values.

Tracing must never fail because of what a node returned, so conversion never
raises: unknown objects become their ``repr``, huge values are cut to a size
limit, cycles and very deep nesting are cut off.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from json import encoder as json_encoder
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from hush.core.redaction import redact

if TYPE_CHECKING:
    from hush.core.errors import NodeError

DEFAULT_MAX_CHARS = 32_000
"""Default size limit, in characters of JSON, of one input, output or metadata value."""

MAX_ITEMS = 1_000
"""Items kept from one list or mapping; the rest is summarized."""

MAX_DEPTH = 32
"""Nesting kept before a value is replaced by its ``repr``."""

_PLAIN_CHARS = 2 * MAX_ITEMS
"""Below this many characters of JSON, no container holds ``MAX_ITEMS`` items."""


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not a JSON type")


def json_encoder_for(
    default: Callable[[Any], Any] = _refuse, *, allow_nan: bool = False
) -> Callable[[Any], str]:
    """A reusable ``value -> JSON text`` (no ASCII escaping, ``", "``/``": "``): the C encoder
    made once, where ``json.dumps`` builds one per call. Without a ``default`` it raises
    ``TypeError`` on other types; a cycle raises ``RecursionError``, NaN ``ValueError``
    (unless ``allow_nan``)."""
    make = getattr(json_encoder, "c_make_encoder", None)
    if make is None:
        return json.JSONEncoder(ensure_ascii=False, allow_nan=allow_nan, default=default).encode
    chunks = make(
        None, default, json_encoder.encode_basestring, None, ": ", ", ", False, False, allow_nan
    )

    def encode(value: Any) -> str:
        return "".join(chunks(value, 0))

    return encode


_plain = json_encoder_for()
"""JSON text of a value made only of JSON types (one encoder shared by every call)."""

_USAGE_NAMES = {
    "prompt_tokens": "input",
    "input_tokens": "input",
    "completion_tokens": "output",
    "output_tokens": "output",
    "total_tokens": "total",
}


def to_jsonable(value: Any, *, max_chars: int = DEFAULT_MAX_CHARS) -> Any:
    """Return ``value`` as JSON-safe data whose JSON text is at most about ``max_chars``.

    Values that would encode to more than ``max_chars`` characters become a
    truncated JSON string ending with a ``[truncated N chars]`` marker.
    """
    return encoded(value, max_chars=max_chars)[0]


def encoded(value: Any, *, max_chars: int = DEFAULT_MAX_CHARS) -> tuple[Any, str]:
    """:func:`to_jsonable` of ``value`` and its JSON text, encoded once. A value of JSON types
    that fits is returned as is (no copy)."""
    if not isinstance(value, str):
        text = flat_json(value, max_chars) if type(value) is dict else None
        if text is None:
            text = _plain_json(value, max_chars)
        if text is not None:
            return value, text
    data, text = _encoded(value, max_chars)
    if data is text:
        return data, _plain(data)
    if len(text) > max_chars:
        data = _truncate(text, max_chars)
        return data, _plain(data)
    return data, text


def to_json_text(value: Any, *, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """``value`` as JSON text bounded like :func:`to_jsonable`; a string is returned as is."""
    if isinstance(value, str):
        return _truncate(value, max_chars)
    text = flat_json(value, max_chars) if type(value) is dict else None
    if text is None:
        text = _plain_json(value, max_chars)
    if text is None:
        data, text = _encoded(value, max_chars)
        return text if data is text else _truncate(text, max_chars)
    return text


_FLAT_KEYS = 8
"""Keys of a dict short enough to check in one pass (an item's inputs or outputs)."""


def flat_json(value: dict[Any, Any], max_chars: int) -> str | None:
    """The JSON text of a dict of a few string keys and scalar values that fits (``None``
    otherwise): kept whole by :func:`_convert`, so encoded with no other check. A map item's
    inputs and outputs, a node's, are most often one."""
    if len(value) > _FLAT_KEYS:
        return None
    for key, item in value.items():
        if type(key) is not str or type(item) not in _SCALARS:
            return None
    try:
        text = _plain(value)
    except ValueError:  # NaN or an infinity: _convert writes those as text
        return None
    return text if len(text) <= max_chars else None


def error_message(error: BaseException, *, max_chars: int = 2_000) -> str:
    """``"TypeName: message"`` for an exception, bounded to ``max_chars``.

    A private wrapper class (name starting with ``_``) contributes only its
    message, which is expected to name the wrapped error already.
    """
    try:
        text = redact(str(error))
    except Exception:
        text = ""
    name = type(error).__name__
    if name.startswith("_") and text:
        return _truncate(text, max_chars)
    return _truncate(f"{name}: {text}" if text else name, max_chars)


def describe_error(error: NodeError | BaseException) -> str:
    """``"TypeName: message"`` for a node's error or an exception, bounded."""
    if isinstance(error, BaseException):
        return error_message(error)
    return _truncate(f"{error.type}: {error.message}" if error.message else error.type, 2_000)


def usage_details(usage: Mapping[str, Any] | None) -> dict[str, int] | None:
    """Map OpenAI-style token usage to Langfuse's ``{"input", "output", "total"}``.

    Other integer counters are kept under their own names; a missing total is
    the sum of input and output.
    """
    details = {
        _USAGE_NAMES.get(key, key): value
        for key, value in (usage or {}).items()
        if isinstance(value, int) and not isinstance(value, bool)
    }
    if "total" not in details and ("input" in details or "output" in details):
        details["total"] = details.get("input", 0) + details.get("output", 0)
    return details or None


def _plain_json(value: Any, max_chars: int, depth: int = 0) -> str | None:
    """The JSON text of a value made only of JSON types that needs no cutting (``None``
    otherwise): the common case, encoded at C speed and not copied. ``depth``: where
    :func:`_convert` would meet it (the head of a long list is checked so, then kept whole)."""
    if _over_limit(value):
        return None
    try:
        text = _plain(value)
    except (TypeError, ValueError, RecursionError):
        return None
    if len(text) <= min(max_chars, _PLAIN_CHARS) and depth == 0:
        return text
    if isinstance(value, list | tuple) and text.count("[") + text.count("{") == 1:
        flat = len(value) <= MAX_ITEMS  # no container inside: only its own length counts
        return text if flat and len(text) <= max_chars else None
    if len(text) <= max_chars and _uncut(value, depth):
        return text
    return None


_CONTAINERS = (dict, list, tuple)


def _over_limit(value: Any) -> bool:
    """Whether a list or mapping, or one of the few values of one, holds over
    :data:`MAX_ITEMS` items (a map's inputs and results): known to need cutting without
    encoding it first."""
    if isinstance(value, dict):
        items: Any = value.values()
    elif isinstance(value, _CONTAINERS):
        items = value
    else:
        return False
    size = len(items)
    if size > MAX_ITEMS:
        return True
    if size > 8:
        return False
    for item in items:  # noqa: SIM110 - a loop: cheaper than a generator for a few items
        if isinstance(item, _CONTAINERS) and len(item) > MAX_ITEMS:
            return True
    return False


_SCALARS = frozenset((str, int, float, bool, type(None)))
"""Types a plain value's leaves have (no container to check under them)."""


def _uncut(value: Any, depth: int) -> bool:
    """Whether :func:`_convert` would keep every container of plain ``value`` whole (none
    longer than :data:`MAX_ITEMS`, none deeper than :data:`MAX_DEPTH`). Written as loops, a
    flat mapping inside a list checked in place: a map's results (a thousand small dicts)
    are checked in a fraction of a millisecond, not two."""
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                return False
        items: Any = value.values()
    elif isinstance(value, list | tuple):
        items = value
    else:
        return True
    if depth >= MAX_DEPTH or len(items) > MAX_ITEMS:
        return False
    inner = depth + 1
    for item in items:
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind is dict and inner < MAX_DEPTH and len(item) <= MAX_ITEMS:
            for key, leaf in item.items():
                if type(key) is not str and not isinstance(key, str):
                    return False
                if type(leaf) not in _SCALARS and not _uncut(leaf, inner + 1):
                    return False
        elif isinstance(item, _CONTAINERS) and not _uncut(item, inner):
            return False
    return True


def _encoded(value: Any, max_chars: int) -> tuple[Any, str]:
    """``value`` converted, and its JSON text (a string result, already bounded, is its own
    text)."""
    try:
        data = _convert(value, max_chars, 0, set())
        return data, data if isinstance(data, str) else _plain(data)
    except Exception:
        text = _safe_repr(value)
        return text, text


def _convert(value: Any, max_chars: int, depth: int, seen: set[int]) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return _truncate(value, max_chars)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, enum.Enum):
        return _convert(value.value, max_chars, depth + 1, seen)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal | PurePath | dt.timedelta):
        return str(value)
    if isinstance(value, BaseException):
        return error_message(value, max_chars=max_chars)
    if depth >= MAX_DEPTH or id(value) in seen:
        return _truncate(_safe_repr(value), max_chars)
    seen.add(id(value))
    try:
        return _convert_container(value, max_chars, depth + 1, seen)
    finally:
        seen.discard(id(value))


def _convert_container(value: Any, max_chars: int, depth: int, seen: set[int]) -> Any:
    if isinstance(value, Mapping):
        out = {
            key if isinstance(key, str) else _safe_repr(key): _convert(item, max_chars, depth, seen)
            for _, (key, item) in zip(range(MAX_ITEMS), value.items(), strict=False)
        }
        if len(value) > MAX_ITEMS:
            out["…"] = f"{len(value) - MAX_ITEMS} more keys"
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        head = items[:MAX_ITEMS]
        plain = len(items) > MAX_ITEMS and _plain_json(head, max_chars, depth - 1) is not None
        converted = head if plain else [_convert(item, max_chars, depth, seen) for item in head]
        if len(items) > MAX_ITEMS:
            converted.append(f"… {len(items) - MAX_ITEMS} more items")
        return converted
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        return _convert(dump(mode="json"), max_chars, depth, seen)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return _convert(fields, max_chars, depth, seen)
    return _truncate(_safe_repr(value), max_chars)


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"


def fit(text: str, limit: int) -> str:
    """``text`` cut so that it and its ``[truncated N chars]`` marker hold ``limit`` characters."""
    if len(text) <= limit:
        return text
    marker = f"… [truncated {len(text)} chars]"
    return text[: max(limit - len(marker), 0)] + marker


def _truncate(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    return f"{text[:max_chars]}… [truncated {len(text)} chars]"
