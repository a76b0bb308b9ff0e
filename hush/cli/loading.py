"""What the ``hush`` command reads and prints: graph files, inputs files, results as JSON."""

from __future__ import annotations

import importlib.util
import json
import sys
import traceback
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from hush.cli.errors import UserError
from hush.core.engine import Hush
from hush.core.errors import GraphBuildError
from hush.core.nodes.graph.graph_node import GraphNode
from hush.core.state import RunRecord


def load_graph(target: str) -> GraphNode:
    """Load ``FILE.py:name`` (a GraphNode, a Hush engine, or a function returning one)."""
    file, _, attr = target.partition(":")
    path = Path(file)
    if not path.is_file():
        raise UserError(
            f"no such file: {file}", "give FILE.py:GRAPH, a Python file and a name in it"
        )
    spec = importlib.util.spec_from_file_location(f"hush_user_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise UserError(f"cannot import {file}", "is it a Python file?")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise UserError(
            f"importing {file} failed: {_where(exc, path)}{type(exc).__name__}: {exc}",
            "run with 'hush --debug ...' to see the traceback",
        ) from exc
    if not attr:
        found = [v for v in vars(module).values() if isinstance(v, GraphNode) and v.parent is None]
        if len(found) != 1:
            raise UserError(
                f"{file} has {len(found)} root graphs", f"name the one to run: {file}:NAME"
            )
        obj: Any = found[0]
    else:
        if not hasattr(module, attr):
            raise UserError(
                f"{file} has no attribute '{attr}'", f"use {file}:NAME with a graph in it"
            )
        obj = getattr(module, attr)
    if callable(obj) and not isinstance(obj, GraphNode | Hush):
        try:
            obj = obj()
        except Exception as exc:
            raise UserError(
                f"calling {target} failed: {_where(exc, path)}{type(exc).__name__}: {exc}",
                "run with 'hush --debug ...' to see the traceback",
            ) from exc
    if isinstance(obj, Hush):
        return obj.graph
    if not isinstance(obj, GraphNode):
        raise UserError(f"{target} is a {type(obj).__name__}, not a GraphNode")
    try:
        obj.build()
    except GraphBuildError as exc:
        raise UserError(str(exc)) from None
    return obj


def _where(exc: BaseException, path: Path) -> str:
    """``file.py:LINE: `` of the last frame of ``exc`` inside the user's file."""
    line = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if Path(frame.f_code.co_filename).resolve() == path.resolve():
            line = lineno
    return f"{path.name}:{line}: " if line is not None else ""


def load_inputs(path: Path | None) -> dict[str, Any]:
    """The run's inputs: a JSON object read from ``path`` (none: empty)."""
    if path is None:
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read the inputs file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"the inputs file {path} is not valid JSON: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}"
        ) from None
    if not isinstance(data, dict):
        raise UserError(
            f"the inputs file {path} holds a JSON {type(data).__name__}",
            'it must hold an object of run inputs, like {"rows": [...]}',
        )
    return data


def to_jsonable(value: Any) -> Any:
    """Turn a run result into JSON-friendly data (errors, pydantic models, sets...)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [to_jsonable(v) for v in value]
    if isinstance(value, RunRecord):
        return to_jsonable(value.to_dict())
    if is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(asdict(value))
    if hasattr(value, "model_dump"):
        return to_jsonable(value.model_dump())
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)
