"""Structured answers (``--schema``): a JSON Schema file or a pydantic model.

The schema is sent as a strict ``json_schema`` response format (every object
closed and every property required, as strict mode needs); each top-level
property becomes an output column (nested values as JSON text). A reply is
parsed and validated here: a JSON Schema with ``jsonschema``, a model with
pydantic.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hush.batch.errors import BatchUsageError


class SchemaMismatch(ValueError):
    """A reply that is not JSON or does not validate against the schema."""


@dataclass(frozen=True)
class AnswerSchema:
    """What ``--schema`` names: the JSON Schema sent, its columns and its validator."""

    name: str
    schema: dict[str, Any]
    columns: list[str]
    validate: Callable[[Any], dict[str, Any]]
    """Return the validated object (plain JSON values) or raise :class:`SchemaMismatch`."""

    def response_format(self) -> dict[str, Any]:
        """The strict ``json_schema`` response format of one answer."""
        return json_schema_format(self.name, self.schema)

    def parse(self, text: Any) -> dict[str, Any]:
        """The reply ``text`` parsed and validated; raises :class:`SchemaMismatch`."""
        if not isinstance(text, str):
            raise SchemaMismatch("the reply has no text")
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SchemaMismatch(f"the reply is not JSON ({exc.msg} at {exc.pos})") from None
        return self.validate(value)

    def cells(self, value: Mapping[str, Any]) -> dict[str, Any]:
        """One cell per column: text, numbers and booleans as they are, the rest as JSON."""
        return {column: _cell(value.get(column)) for column in self.columns}


def json_schema_format(name: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """A strict ``json_schema`` response format."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def load_schema(spec: str) -> AnswerSchema:
    """The schema ``spec`` names: a ``.json`` file, or ``module:Model`` (a pydantic model)."""
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".json" or path.is_file():
        return _from_file(path)
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise BatchUsageError(
            f"--schema {spec}: name a JSON Schema file (schema.json) or a pydantic model "
            "(module:Model)"
        )
    return _from_model(spec, module, attr)


def strict(schema: Any) -> Any:
    """``schema`` with every object closed and all its properties required (strict mode)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if isinstance(out.get("properties"), dict):
        out.setdefault("additionalProperties", False)
        out["required"] = list(out["properties"])
    return out


def _from_file(path: Path) -> AnswerSchema:
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BatchUsageError(f"--schema {path}: cannot read it ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise BatchUsageError(f"--schema {path}: not JSON ({exc})") from None
    columns = _columns(str(path), schema)
    try:
        import jsonschema
    except ImportError:
        raise BatchUsageError(
            f"--schema {path}: checking replies against a JSON Schema needs jsonschema "
            "(pip install jsonschema)"
        ) from None
    sent = strict(schema)
    try:
        validator = jsonschema.validators.validator_for(sent)(sent)
        validator.check_schema(sent)
    except jsonschema.SchemaError as exc:
        raise BatchUsageError(f"--schema {path}: not a valid JSON Schema ({exc.message})") from None

    def validate(value: Any) -> dict[str, Any]:
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "the answer"
            raise SchemaMismatch(f"{where}: {error.message}")
        return dict(value)

    name = _name(str(schema.get("title") or path.stem))
    return AnswerSchema(name, sent, columns, validate)


def _from_model(spec: str, module: str, attr: str) -> AnswerSchema:
    from pydantic import BaseModel, ValidationError

    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        model = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise BatchUsageError(f"--schema {spec}: cannot import it ({exc})") from None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise BatchUsageError(f"--schema {spec}: {attr} is not a pydantic model")
    schema = model.model_json_schema()
    columns = _columns(spec, schema)

    def validate(value: Any) -> dict[str, Any]:
        try:
            return model.model_validate(value).model_dump(mode="json")
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "the answer"
            raise SchemaMismatch(f"{where}: {first['msg']}") from None

    return AnswerSchema(_name(model.__name__), strict(schema), columns, validate)


def _columns(spec: str, schema: Any) -> list[str]:
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict) or schema.get("type", "object") != "object":
        raise BatchUsageError(
            f"--schema {spec}: the answer must be an object with properties (one column each)"
        )
    if not properties:
        raise BatchUsageError(f"--schema {spec}: the object has no properties")
    return [str(name) for name in properties]


def _name(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_-" else "_" for c in text)[:64]
    return cleaned or "answer"


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, ensure_ascii=False)
