"""Pulling typed fields out of a model's text: formats, field specs and parse errors."""

from hush.core.parsing.errors import ParseError
from hush.core.parsing.fields import FieldSpec, parse_field
from hush.core.parsing.formats import FORMATS, parse_text, strip_fences

__all__ = ["FORMATS", "FieldSpec", "ParseError", "parse_field", "parse_text", "strip_fences"]
