"""What the ``hush`` command reads and prints: graph files, inputs files, results as JSON."""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import sys
import traceback
import types
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from hush.cli.errors import UserError
from hush.core.engine import Hush
from hush.core.errors import GraphBuildError
from hush.core.nodes.base import BaseNode
from hush.core.nodes.graph.graph_node import GraphNode
from hush.core.state import RunRecord


def load_graph(target: str) -> GraphNode:
    """Load ``FILE.py:name`` (a GraphNode, a Hush engine, or a function returning one); without
    ``:name``, the file's one root graph or engine."""
    file, _, attr = target.partition(":")
    path = Path(file)
    module = _import(path)
    if not attr:
        obj: Any = _only_graph(module, file)
    elif not hasattr(module, attr):
        raise UserError(f"{file} has no attribute '{attr}'", _pick(module, file))
    else:
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
        raise UserError(f"{target} is {_a(obj)}, not a graph", _pick(module, file))
    if obj.parent is not None:
        raise UserError(
            f"{target} is the graph '{obj.name}' inside another graph", _pick(module, file)
        )
    try:
        obj.build()
    except GraphBuildError as exc:
        raise UserError(str(exc)) from None
    return obj


def _import(path: Path) -> types.ModuleType:
    """Import the user's file as a module of its own (its folder importable, like a script)."""
    if path.is_dir():
        raise UserError(f"{path} is a directory", "give FILE.py:GRAPH, a Python file in it")
    if not path.is_file():
        raise UserError(f"no such file: {path}", "give FILE.py:GRAPH, a Python file and a name")
    if path.suffix != ".py":
        raise UserError(f"{path} is not a Python file", "give FILE.py:GRAPH, a .py file")
    spec = importlib.util.spec_from_file_location(f"hush_user_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise UserError(f"cannot import {path}", "give FILE.py:GRAPH, a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except SystemExit as exc:
        where = _where(exc, path).rstrip(": ") or "import"
        raise UserError(
            f"importing {path} exited (status {exc.code}) at {where}",
            "code that runs the script belongs under: if __name__ == '__main__':",
        ) from exc
    except SyntaxError as exc:
        raise UserError(
            f"{path.name}:{exc.lineno}: SyntaxError: {exc.msg}", "fix the file and run again"
        ) from exc
    except Exception as exc:
        raise UserError(
            f"importing {path} failed: {_where(exc, path)}{type(exc).__name__}: {exc}",
            "run with 'hush --debug ...' to see the traceback",
        ) from exc
    return module


def _only_graph(module: types.ModuleType, file: str) -> GraphNode | Hush:
    """The one root graph (or engine) ``module`` defines; else a UserError listing what it
    defines."""
    found = _defined(module)
    roots = found["graphs"] + found["engines"]
    if len(roots) == 1:
        obj: GraphNode | Hush = getattr(module, roots[0])
        return obj
    if roots:
        raise UserError(
            f"{file} defines {len(roots)} graphs: {_names(roots)}",
            f"name the one to run: {file}:{roots[0]}",
        )
    listed = "; ".join(f"{kind}: {_names(names)}" for kind, names in found.items() if names)
    raise UserError(
        f"{file} defines no root graph ({listed or 'nothing hush can run'})", _pick(module, file)
    )


def _defined(module: types.ModuleType) -> dict[str, list[str]]:
    """Module-level names by kind: root ``graphs``, ``engines``, ``nodes`` inside a graph,
    and ``functions`` defined in the file (a function returning a graph can be run)."""
    found: dict[str, list[str]] = {"graphs": [], "engines": [], "nodes": [], "functions": []}
    engine_graphs = {id(v.graph) for v in vars(module).values() if isinstance(v, Hush)}
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if isinstance(value, GraphNode) and value.parent is None:
            if id(value) not in engine_graphs:
                found["graphs"].append(name)
        elif isinstance(value, Hush):
            found["engines"].append(name)
        elif isinstance(value, BaseNode):
            found["nodes"].append(name)
        elif inspect.isfunction(value) and value.__module__ == module.__name__:
            found["functions"].append(name)
    return found


def _pick(module: types.ModuleType, file: str) -> str:
    """How to name what to run, with a name the file defines when there is one."""
    found = _defined(module)
    builders = [f for f in found["functions"] if _callable_bare(getattr(module, f))]
    ranked = sorted((_builder_rank(getattr(module, f)), f) for f in builders)
    functions = [f for rank, f in ranked if rank < 2]
    runnable = found["graphs"] + found["engines"] + functions
    example = f"{file}:{runnable[0]}" if runnable else f"{file}:NAME"
    return f"name a GraphNode, a Hush engine or a function returning one: {example}"


def _callable_bare(fn: Any) -> bool:
    """Whether ``fn`` is a plain function callable without arguments (as ``hush run``
    calls it)."""
    if inspect.iscoroutinefunction(fn):
        return False
    try:
        inspect.signature(fn).bind()
    except (TypeError, ValueError):
        return False
    return True


def _builder_rank(fn: Any) -> int:
    """0: annotated to return a graph or engine, 1: named like a builder, 2: anything else."""
    returns = str(inspect.signature(fn).return_annotation)
    if "GraphNode" in returns or "Hush" in returns:
        return 0
    return 1 if any(w in fn.__name__.lower() for w in ("graph", "build", "make", "pipeline")) else 2


def _names(names: list[str], most: int = 8) -> str:
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def _a(obj: object) -> str:
    kind = type(obj).__name__
    return f"an {kind}" if kind[:1].lower() in "aeiou" else f"a {kind}"


def _where(exc: BaseException, path: Path) -> str:
    """``file.py:LINE: `` of the last frame of ``exc`` inside the user's file."""
    line = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if Path(frame.f_code.co_filename).resolve() == path.resolve():
            line = lineno
    return f"{path.name}:{line}: " if line is not None else ""


def check_writable(path: Path, option: str) -> None:
    """Refuse, before anything runs, an output ``path`` that could not be written: a
    directory, a read-only file, or a folder (the nearest that exists) that is not one or
    is not writable."""
    if path.is_dir():
        raise UserError(f"{option} {path} is a directory", "give a file name, like out.json")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"cannot write {option} {path}: {folder} is not a directory")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"cannot write {option} {path}: permission denied")


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
