"""``ParserNode``: typed fields out of a model's text (JSON, XML, YAML, regex, key: value)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hush.core.errors import GraphDefinitionError
from hush.core.nodes.base import BaseNode
from hush.core.parsing import FORMATS, FieldSpec, ParseError, parse_field, parse_text
from hush.core.policies import RetryPolicy

if TYPE_CHECKING:
    from hush.core.call import NodeCall

_FORMAT_NAMES = (*FORMATS, "regex")


class ParserNode(BaseNode):
    """Parses ``inputs["text"]`` and outputs one key per field of ``extract``.

    ``format`` is ``"json"``, ``"xml"``, ``"yaml"``, ``"key_value"`` (``key: value``
    or ``key = value`` lines, keys matched ignoring case) or ``"regex"`` (with
    ``pattern``; fields are its named groups, or ``"1"``, ``"2"``, ...). A
    Markdown code fence around the text is stripped; JSON may have prose
    around it. Each ``extract`` entry is a dotted path (``"meta.source"``,
    ``"items.0"``) with an optional type (``"score: float"``; ``str``,
    ``int``, ``float``, ``bool``, ``list``, ``dict``); its output key is the
    path's last segment. Text that cannot be parsed, a missing field or a value
    of the wrong type fails the item with a :class:`~hush.core.parsing.ParseError`
    giving the line, column and a snippet of the text.
    """

    kind = "parser"

    def __init__(
        self,
        name: str,
        *,
        format: str = "json",
        inputs: Mapping[str, Any],
        extract: Sequence[str],
        pattern: str | re.Pattern[str] | None = None,
        outputs: Mapping[str, Any] | None = None,
        retry: int | RetryPolicy | dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        where = f"ParserNode '{name}'"
        if format not in _FORMAT_NAMES:
            raise GraphDefinitionError(
                f"{where}: format {format!r} is not one of {', '.join(_FORMAT_NAMES)}"
            )
        self.format = format
        self.pattern = _compile(where, format, pattern)
        self.fields = _fields(where, extract)
        if self.pattern is not None:
            groups = {*self.pattern.groupindex, *map(str, range(1, self.pattern.groups + 1))}
            for field in self.fields:
                if field.path[0] not in groups:
                    raise GraphDefinitionError(
                        f"{where}: extract {field.spec!r} names no group of the pattern "
                        f"(groups: {', '.join(sorted(groups)) or 'none'})"
                    )
        super().__init__(name, inputs=inputs, outputs=outputs, retry=retry, timeout=timeout)
        if "text" not in self.inputs:
            raise GraphDefinitionError(f"{where}: inputs need 'text'")

    def output_keys(self) -> frozenset[str] | None:
        """One key per extracted field."""
        return frozenset({*(f.name for f in self.fields), "error"})

    def describe_options(self) -> dict[str, Any]:
        """The format, pattern and fields (they change the outputs)."""
        return {
            "format": self.format,
            "pattern": None if self.pattern is None else self.pattern.pattern,
            "extract": [f.spec for f in self.fields],
        }

    async def run(self, inputs: dict[str, Any], call: NodeCall) -> Mapping[str, Any] | None:
        """Parse the text and pull out each field."""
        text = inputs["text"]
        if not isinstance(text, str):
            raise ParseError(
                f"ParserNode '{self.name}': text must be a string, got {type(text).__name__}"
            )
        try:
            document = parse_text(self.format, text, self.pattern)
            return {field.name: field.find(document) for field in self.fields}
        except ParseError as exc:
            raise ParseError(f"ParserNode '{self.name}': {exc}") from None


def _compile(
    where: str, format: str, pattern: str | re.Pattern[str] | None
) -> re.Pattern[str] | None:
    if format != "regex":
        if pattern is not None:
            raise GraphDefinitionError(f"{where}: pattern is only for format 'regex'")
        return None
    if isinstance(pattern, re.Pattern):
        return pattern
    if not isinstance(pattern, str) or not pattern:
        raise GraphDefinitionError(f"{where}: format 'regex' needs a pattern (a regex string)")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise GraphDefinitionError(f"{where}: pattern {pattern!r} is not a regex: {exc}") from None


def _fields(where: str, extract: Any) -> list[FieldSpec]:
    if isinstance(extract, str) or not isinstance(extract, Sequence) or not extract:
        raise GraphDefinitionError(
            f"{where}: extract must be a non-empty list of fields like ['label', 'score: float']"
        )
    fields: list[FieldSpec] = []
    seen: dict[str, str] = {}
    for spec in extract:
        try:
            field = parse_field(spec)
        except ValueError as exc:
            raise GraphDefinitionError(f"{where}: {exc}") from None
        if field.name == "error":
            raise GraphDefinitionError(
                f"{where}: extract {spec!r} would output 'error', which every node has"
            )
        if field.name in seen:
            raise GraphDefinitionError(
                f"{where}: extract {seen[field.name]!r} and {spec!r} both output {field.name!r}"
            )
        seen[field.name] = spec
        fields.append(field)
    return fields
