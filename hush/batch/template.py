"""The prompt of a batch: ``{column}`` placeholders over a row's columns.

Column names are whatever the sheet's header says (``{Tên khách hàng}``,
``{Order ID}``); ``{{`` and ``}}`` are literal braces. A placeholder naming no
column is an error before anything is sent.
"""

from __future__ import annotations

import difflib
import string
from collections.abc import Sequence
from pathlib import Path

from hush.batch.errors import TemplateError

_formatter = string.Formatter()


def load_template(text: str, *, what: str) -> str:
    """``text`` itself, or the contents of the file it names as ``@path``."""
    if not text.startswith("@"):
        return text
    path = Path(text[1:]).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"{what} @{path}: cannot read it ({exc.strerror})") from None


def placeholders(template: str, *, what: str) -> list[str]:
    """The column names a template uses, in order of first use."""
    try:
        parsed = list(_formatter.parse(template))
    except ValueError as exc:
        raise TemplateError(
            f"{what} is malformed ({exc}); write {{{{ and }}}} for literal braces"
        ) from None
    names: dict[str, None] = {}
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if spec or conversion:
            raise TemplateError(
                f"{what}: placeholder {{{field}:{spec}}} has a format; use {{{field}}} alone"
            )
        if not field:
            raise TemplateError(f"{what}: '{{}}' names no column; write {{column name}}")
        names[field] = None
    return list(names)


def check_columns(names: Sequence[str], columns: Sequence[str], *, what: str) -> None:
    """Every placeholder must name a column."""
    missing = [n for n in names if n not in columns]
    if missing:
        listed = ", ".join(f"{{{n}}}" for n in missing)
        known = ", ".join(columns) or "none"
        guesses = [g for n in missing for g in _close(n, columns)]
        hint = f"; did you mean {', '.join(f'{{{g}}}' for g in guesses)}?" if guesses else ""
        raise TemplateError(
            f"{what} uses {listed}, but the input has no such column (its columns: {known}){hint}"
        )


def _close(name: str, columns: Sequence[str]) -> list[str]:
    folded = {c.strip().casefold(): c for c in columns}
    if name.strip().casefold() in folded:
        return [folded[name.strip().casefold()]]
    return difflib.get_close_matches(name, list(columns), n=1, cutoff=0.75)


def with_aliases(template: str, aliases: dict[str, str]) -> str:
    """The template with each column placeholder renamed to its plain-name alias."""
    out = []
    for literal, field, _, _ in _formatter.parse(template):
        out.append(literal.replace("{", "{{").replace("}", "}}"))
        if field is not None:
            out.append("{" + aliases[field] + "}")
    return "".join(out)
