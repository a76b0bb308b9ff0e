"""Minimal valid instances of JSON schemas (for structured-output and tool-call replies)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

_DEEP = 4
"""Past this nesting depth optional branches are cut (``null``, fewest items)."""

_LIMIT = 32
"""Past this depth recursion stops outright."""

_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "duration": "P1D",
    "email": "user@example.com",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def instance_of(schema: Any, name: str = "value") -> Any:
    """Return a small JSON value valid for ``schema`` (``$defs``/``$ref``, anyOf, enums, ...).

    Objects get their required properties only; ``pattern`` is not honoured.
    """
    return _Builder(schema if isinstance(schema, Mapping) else {}).build(schema, name, 0)


class _Builder:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root

    def resolve(self, ref: str) -> Any:
        node: Any = self.root
        if ref.startswith("#"):
            for part in ref.lstrip("#").split("/"):
                if part:
                    node = node.get(part.replace("~1", "/").replace("~0", "~"), {})
            return node
        return {}

    def build(self, schema: Any, name: str, depth: int) -> Any:
        if schema is True or not isinstance(schema, Mapping):
            return name
        if depth > _LIMIT:
            return None
        if "$ref" in schema:
            target = self.resolve(str(schema["$ref"]))
            extra = {k: v for k, v in schema.items() if k != "$ref"}
            merged = {**target, **extra} if isinstance(target, Mapping) else extra
            return self.build(merged, name, depth + 1)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return schema["enum"][0]
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if options:
                return self.build(self.choose(options, depth), name, depth + 1)
        if schema.get("allOf"):
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                merged = _merge(merged, self.expand(part))
            return self.build(merged, name, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kinds = [k for k in kind if k != "null"]
            kind = kinds[0] if kinds else "null"
        if kind is None:
            if "properties" in schema or "required" in schema:
                kind = "object"
            elif "items" in schema or "prefixItems" in schema:
                kind = "array"
            else:
                return name
        if kind == "object":
            return self.obj(schema, depth)
        if kind == "array":
            return self.array(schema, name, depth)
        if kind == "string":
            return _string(schema, name)
        if kind in ("integer", "number"):
            return _number(schema, kind == "integer")
        if kind == "boolean":
            return True
        return None

    def expand(self, schema: Any) -> Mapping[str, Any]:
        while isinstance(schema, Mapping) and "$ref" in schema:
            schema = self.resolve(str(schema["$ref"]))
        return schema if isinstance(schema, Mapping) else {}

    def choose(self, options: list[Any], depth: int) -> Any:
        def is_null(option: Any) -> bool:
            return isinstance(option, Mapping) and self.expand(option).get("type") == "null"

        if depth >= _DEEP:
            for option in options:
                if is_null(option):
                    return option
        for option in options:
            if not is_null(option):
                return option
        return options[0]

    def obj(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        properties: Mapping[str, Any] = schema.get("properties") or {}
        return {
            key: self.build(properties.get(key, {}), key, depth + 1)
            for key in schema.get("required") or ()
        }

    def array(self, schema: Mapping[str, Any], name: str, depth: int) -> list[Any]:
        prefix = list(schema.get("prefixItems") or ())
        low = int(schema.get("minItems", 0))
        count = max(low, len(prefix)) if depth >= _DEEP else max(low, len(prefix), 1)
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        items = schema.get("items", {})
        return [
            self.build(prefix[i] if i < len(prefix) else items, name, depth + 1)
            for i in range(count)
        ]


def _merge(left: Mapping[str, Any], right: Mapping[str, Any]) -> dict[str, Any]:
    merged = {**left, **right}
    merged["properties"] = {**(left.get("properties") or {}), **(right.get("properties") or {})}
    merged["required"] = [*(left.get("required") or ()), *(right.get("required") or ())]
    return merged


def _string(schema: Mapping[str, Any], name: str) -> str:
    text = _FORMATS.get(str(schema.get("format", "")), name or "value")
    low = int(schema.get("minLength", 0))
    if len(text) < low:
        text += "x" * (low - len(text))
    if "maxLength" in schema:
        text = text[: int(schema["maxLength"])]
    return text


def _bound(schema: Mapping[str, Any], upper: bool) -> tuple[float | None, bool]:
    """The tighter of ``minimum``/``exclusiveMinimum`` (or the maxima) and whether it is open."""
    value = schema.get("maximum" if upper else "minimum")
    extra = schema.get("exclusiveMaximum" if upper else "exclusiveMinimum")
    if isinstance(extra, bool):
        return value, extra and value is not None
    if isinstance(extra, int | float):
        tighter = value is None or (extra <= value if upper else extra >= value)
        if tighter:
            return extra, True
    return value, False


def _number(schema: Mapping[str, Any], integer: bool) -> int | float:
    low, low_open = _bound(schema, upper=False)
    high, high_open = _bound(schema, upper=True)

    def fits(value: float) -> bool:
        above = low is None or value > low or (value == low and not low_open)
        below = high is None or value < high or (value == high and not high_open)
        return above and below

    candidates: list[float] = [0]
    if low is not None:
        candidates += [low, math.floor(low) + 1]
    if high is not None:
        candidates += [high, math.ceil(high) - 1]
    if low is not None and high is not None:
        candidates.append((low + high) / 2)
    multiple = schema.get("multipleOf")
    for candidate in candidates:
        value = math.ceil(candidate) if integer else candidate
        if multiple:
            value = math.ceil(value / multiple) * multiple
        if fits(value):
            return int(value) if integer else float(value)
    return int(candidates[-1]) if integer else float(candidates[-1])
