"""The resource file: where it is found, how it is read, and how an entry becomes a resource.

The file is found through ``HUSH_CONFIG`` (a file, or a directory holding one), else
the first ``resources.yaml``/``resources.yml`` in the working directory or its
parents. ``${VAR}`` and ``${VAR:-default}`` are substituted when a resource is used
(``$${`` writes a literal ``${``), so a variable that one resource needs does not
have to be set to use another.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hush.core.redaction import register_secret
from hush.providers.errors import ResourceError
from hush.providers.resource_models import (
    CATEGORIES,
    CATEGORY_ALIASES,
    LLMResource,
    Resource,
)

__all__ = [
    "CODE_SOURCE",
    "CONFIG_ENV",
    "CONFIG_FILENAMES",
    "find_file",
    "read_file",
    "register_secrets",
    "validate",
]

logger = logging.getLogger("hush.providers.resources")

CONFIG_ENV = "HUSH_CONFIG"
"""Environment variable naming the resource file (or a directory holding one)."""

CONFIG_FILENAMES = ("resources.yaml", "resources.yml")
"""File names looked for in the working directory and its parents."""

CODE_SOURCE = "registered in code"
"""Where a resource registered in code comes from (for error messages)."""

_ENV_PATTERN = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def find_file(explicit: Path | None, discover: bool, searched: list[Path]) -> Path | None:
    """The resource file: ``explicit``, else (with ``discover``) ``$HUSH_CONFIG``, else the
    first one in the working directory or its parents; every place looked at is appended
    to ``searched``."""
    if explicit is not None:
        return _candidate(explicit, "path given", searched)
    if not discover:
        return None
    env = os.environ.get(CONFIG_ENV)
    if env:
        return _candidate(Path(env).expanduser(), f"${CONFIG_ENV}", searched)
    for directory in (Path.cwd(), *Path.cwd().parents):
        for name in CONFIG_FILENAMES:
            path = directory / name
            searched.append(path)
            if path.is_file():
                return path
    return None


def _candidate(path: Path, origin: str, searched: list[Path]) -> Path:
    if path.is_dir():
        for name in CONFIG_FILENAMES:
            searched.append(path / name)
            if (path / name).is_file():
                return path / name
        raise ResourceError(
            f"{origin} points to the directory {path}, which holds no "
            f"{' or '.join(CONFIG_FILENAMES)}"
        )
    searched.append(path)
    if not path.is_file():
        raise ResourceError(f"{origin} points to {path}, which does not exist")
    return path


def read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ResourceError(f"{path}: cannot read resource file: {exc.strerror}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ResourceError(f"{path}: invalid YAML: {_yaml_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ResourceError(
            f"{path}: expected a mapping of 'category:name' keys to settings at the top level, "
            f"got {type(data).__name__}"
        )
    entries: dict[str, Any] = {}
    for key, value in data.items():
        category, sep, name = str(key).partition(":")
        category = CATEGORY_ALIASES.get(category, category)
        if not sep or not name:
            raise ResourceError(
                f"{path}: key '{key}' must be 'category:name' with category one of "
                f"{', '.join(CATEGORIES)} (e.g. 'llm:gpt-4o-mini')"
            )
        if category not in CATEGORIES:
            logger.warning(
                "%s: '%s' is ignored: hush knows the categories %s",
                path,
                key,
                ", ".join(CATEGORIES),
            )
            continue
        if not isinstance(value, dict):
            raise ResourceError(
                f"{path}: {key}: expected a mapping of settings, got {type(value).__name__}"
            )
        entries[f"{category}:{name}"] = value
    return entries


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        return f"{exc.problem} at {where}" + (f" ({exc.context})" if exc.context else "")
    return str(exc)


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML loader that rejects a key written twice in one mapping."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def validate(key: str, settings: Mapping[str, Any], source: str) -> Resource:
    model = CATEGORIES[key.partition(":")[0]]
    data = _substitute(dict(settings), key, source, field=None)
    try:
        resource: Resource = model.model_validate(data, context={"resource": key})
    except ValidationError as exc:
        problems = "; ".join(
            f"field '{'.'.join(str(p) for p in err['loc']) or '(entry)'}': {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False)
        )
        raise ResourceError(f"{source}: {key}: {problems}") from None
    register_secrets(key, resource)
    return resource


def register_secrets(key: str, resource: Resource) -> None:
    """Make the resource's secrets redacted from every text hush keeps."""
    if isinstance(resource, LLMResource):
        if resource.api_key is not None:
            register_secret(resource.api_key.get_secret_value(), what=f"{key}: api_key")
        for name, value in resource.headers.items():
            register_secret(value.get_secret_value(), what=f"{key}: header {name}")
    else:
        register_secret(resource.secret_key.get_secret_value(), what=f"{key}: secret_key")


def _substitute(value: Any, key: str, source: str, field: str | None) -> Any:
    """Replace ``${VAR}``/``${VAR:-default}`` in every string inside ``value``."""
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            name, default = match.group(1), match.group(2)
            found = os.environ.get(name)
            if found is not None and (found or default is None):
                return found
            if default is not None:
                return default
            raise ResourceError(
                f"{source}: {key}: environment variable '{name}' is not set "
                f"(needed by field '{field}')"
            )

        return _ENV_PATTERN.sub(replace, value)
    if isinstance(value, dict):
        return {k: _substitute(v, key, source, field or str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, key, source, field) for v in value]
    return value
