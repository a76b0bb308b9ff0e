"""Field specs (``"meta.source"``, ``"score: float"``): where a value is and what type it has."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hush.core.parsing.errors import ParseError

_TRUE = frozenset({"true", "yes", "y", "on", "1"})
_FALSE = frozenset({"false", "no", "n", "off", "0"})


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One extracted field: its dotted ``path``, output ``name`` and optional ``type``."""

    spec: str
    path: tuple[str, ...]
    type: str | None

    @property
    def name(self) -> str:
        """The output key: the path's last segment."""
        return self.path[-1]

    def find(self, document: Any) -> Any:
        """The value at this path in ``document``, converted to the declared type."""
        value = lookup(document, self.path)
        return self.convert(value)

    def convert(self, value: Any) -> Any:
        """``value`` as the declared type (unchanged when none is declared)."""
        if self.type is None:
            return value
        try:
            return _CONVERTERS[self.type](value)
        except (TypeError, ValueError) as exc:
            shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
            raise ParseError(
                f"field '{self.spec}': cannot convert {shown} to {self.type}: {exc}"
            ) from None


def parse_field(spec: Any) -> FieldSpec:
    """Read ``"path"`` or ``"path: type"``; a bad spec raises ``ValueError`` saying why."""
    if not isinstance(spec, str):
        raise ValueError(f"extract entries are strings like 'score: float', got {spec!r}")
    path_text, sep, type_text = spec.partition(":")
    kind = type_text.strip() if sep else None
    if sep and kind not in _CONVERTERS:
        raise ValueError(
            f"extract {spec!r}: unknown type {kind!r} (use one of {', '.join(_CONVERTERS)})"
        )
    path = tuple(part.strip() for part in path_text.split("."))
    if not all(path):
        raise ValueError(f"extract {spec!r}: a path is dot-separated non-empty names")
    return FieldSpec(spec=spec, path=path, type=kind)


def lookup(document: Any, path: tuple[str, ...]) -> Any:
    """Follow ``path`` through dicts (and list indices); a key may itself contain dots."""
    value = document
    for i, part in enumerate(path):
        if isinstance(value, Mapping):
            if part in value:
                value = value[part]
                continue
            rest = ".".join(path[i:])
            if rest in value:
                return value[rest]
            have = ", ".join(repr(k) for k in list(value)[:20]) or "none"
            where = "the top level" if i == 0 else f"'{'.'.join(path[:i])}'"
            raise ParseError(f"field '{'.'.join(path)}' not found: {where} has keys {have}")
        if isinstance(value, list) and part.lstrip("-").isdigit():
            index = int(part)
            if -len(value) <= index < len(value):
                value = value[index]
                continue
            raise ParseError(
                f"field '{'.'.join(path)}': index {index} is out of range "
                f"(the list has {len(value)} items)"
            )
        where = "the document" if i == 0 else f"'{'.'.join(path[:i])}'"
        raise ParseError(
            f"field '{'.'.join(path)}' not found: {where} is a {type(value).__name__}, not a dict"
        )
    return value


def _to_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise TypeError(f"a {type(value).__name__} is not text (declare it as list or dict)")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("a bool is not a number")
    if isinstance(value, int):
        return value
    number = float(value.strip()) if isinstance(value, str) else float(value)
    if not number.is_integer():
        raise ValueError("not a whole number")
    return int(number)


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("a bool is not a number")
    if isinstance(value, str):
        return float(value.strip())
    if isinstance(value, int | float):
        return float(value)
    raise TypeError(f"a {type(value).__name__} is not a number")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower() if isinstance(value, str | int) else None
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError("use true/false, yes/no or 1/0")


def _to_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            loaded = json.loads(text)
            if isinstance(loaded, list):
                return loaded
        return [part.strip() for part in text.split(",") if part.strip()]
    raise TypeError(f"a {type(value).__name__} is not a list")


def _to_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        loaded = json.loads(value)
        if isinstance(loaded, dict):
            return loaded
    raise TypeError(f"a {type(value).__name__} is not a dict")


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "str": _to_str,
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "list": _to_list,
    "dict": _to_dict,
}
