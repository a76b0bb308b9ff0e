"""Parsing a model's text as JSON, YAML, XML, ``key: value`` lines or a regex match.

Every parser takes the text the node received and returns a document (dicts,
lists and scalars); a failure is a :class:`ParseError` pointing into that text.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import yaml

from hush.core.parsing.errors import ParseError

_FENCE = re.compile(r"```[ \t]*[\w+.-]*[ \t]*\r?\n(.*?)(?:```|\Z)", re.DOTALL)
_XML_DECL = re.compile(r"\s*<\?xml[^>]*\?>")
_XML_ROOT = "hush-root"
_KEY_VALUE = re.compile(
    r"^[ \t]*(?:[-*•][ \t]+)?[*_`]*(?P<key>[^\W\d][\w .-]*?)[*_`]*[ \t]*[:=][ \t]*(?P<value>.*?)[ \t]*$",
    re.MULTILINE,
)


def strip_fences(text: str) -> tuple[str, int]:
    """The content of the first Markdown code fence (or the text) and where it starts."""
    match = _FENCE.search(text)
    if match is None:
        return text, 0
    return match.group(1), match.start(1)


def _json(text: str, body: str, offset: int) -> Any:
    try:
        return json.loads(body)
    except json.JSONDecodeError as first:
        error = first
    start = min((i for i in (body.find("{"), body.find("[")) if i >= 0), default=-1)
    if start >= 0:
        try:
            return json.JSONDecoder().raw_decode(body, start)[0]
        except json.JSONDecodeError as exc:
            error = exc
    raise ParseError(f"cannot parse JSON: {error.msg}", text, offset + error.pos)


def _yaml(text: str, body: str, offset: int) -> Any:
    try:
        return yaml.safe_load(body)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = exc.problem or exc.context or "invalid YAML"
        raise ParseError(
            f"cannot parse YAML: {reason}", text, offset + mark.index if mark else None
        ) from None
    except yaml.YAMLError as exc:
        raise ParseError(f"cannot parse YAML: {exc}", text, offset) from None


def _xml(text: str, body: str, offset: int) -> Any:
    decl = _XML_DECL.match(body)
    if decl is not None:
        offset += decl.end()
        body = body[decl.end() :]
    opening = f"<{_XML_ROOT}>"
    wrapped = f"{opening}{body}</{_XML_ROOT}>"
    try:
        root = ET.fromstring(wrapped)
    except ET.ParseError as exc:
        line, column = exc.position
        lines = wrapped.split("\n")
        at = sum(len(x) + 1 for x in lines[: line - 1]) + column - len(opening)
        reason = str(exc).split(":")[0]
        raise ParseError(
            f"cannot parse XML: {reason}", text, offset + max(0, min(at, len(body)))
        ) from None
    document = _element(root)
    if not isinstance(document, dict):
        raise ParseError("cannot parse XML: the text has no elements", text, offset)
    tops = [value for key, value in document.items() if not key.startswith("@")]
    if len(tops) == 1 and isinstance(tops[0], dict):
        return {**tops[0], **document}
    return document


def _element(element: ET.Element) -> Any:
    """An element as a dict of its children (repeated tags as lists) or its text."""
    children = list(element)
    if not children and not element.attrib:
        return (element.text or "").strip()
    out: dict[str, Any] = {f"@{k}": v for k, v in element.attrib.items()}
    for child in children:
        value = _element(child)
        if child.tag in out:
            previous = out[child.tag]
            out[child.tag] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[child.tag] = value
    if not children and (element.text or "").strip():
        out["#text"] = (element.text or "").strip()
    return out


class KeyValues(dict[str, Any]):
    """``key: value`` pairs, looked up ignoring case, spaces, ``-`` and ``_``."""

    @staticmethod
    def norm(key: object) -> str:
        """The form keys are stored and looked up in."""
        return re.sub(r"[\s_-]+", "_", str(key).strip().lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(self.norm(key))

    def __getitem__(self, key: str) -> Any:
        return super().__getitem__(self.norm(key))


def _key_value(text: str, body: str, offset: int) -> Any:
    pairs = KeyValues()
    for match in _KEY_VALUE.finditer(body):
        key = KeyValues.norm(match.group("key"))
        if key not in pairs:
            value = match.group("value").strip().strip("*_`").strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            dict.__setitem__(pairs, key, value)
    if not pairs:
        raise ParseError("cannot parse key_value: no 'key: value' line", text, offset)
    return pairs


def parse_regex(pattern: re.Pattern[str], text: str) -> dict[str, Any]:
    """The first match's named groups (and numbered ones as ``"1"``, ``"2"``, ...)."""
    match = pattern.search(text)
    if match is None:
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise ParseError(f"cannot parse: pattern {pattern.pattern!r} does not match {shown!r}")
    groups: dict[str, Any] = {str(i): g for i, g in enumerate(match.groups(), 1)}
    groups.update(match.groupdict())
    return groups


FORMATS: dict[str, Callable[[str, str, int], Any]] = {
    "json": _json,
    "yaml": _yaml,
    "xml": _xml,
    "key_value": _key_value,
}
"""The formats parsed after stripping code fences (``regex`` matches the raw text)."""


def parse_text(format: str, text: str, pattern: re.Pattern[str] | None = None) -> Any:
    """Parse ``text`` in ``format`` (``"regex"`` needs ``pattern``)."""
    if format == "regex":
        if pattern is None:
            raise ValueError("format 'regex' needs a pattern")
        return parse_regex(pattern, text)
    body, offset = strip_fences(text)
    return FORMATS[format](text, body, offset)
