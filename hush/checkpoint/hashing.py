"""A stable fingerprint of a run's graph description and inputs."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import logging
import math
import pickle
import types
from collections.abc import Mapping, Set

logger = logging.getLogger("hush.checkpoint")

_Json = None | bool | int | float | str | list["_Json"] | dict[str, "_Json"]


def fingerprint(*parts: object) -> str:
    """Return a sha256 hex digest of ``parts`` that is stable across processes.

    Values are encoded as canonical JSON (mapping keys sorted, sets sorted,
    pydantic models and dataclasses by their fields); anything else falls back
    to its pickle, then to its ``repr``. A part whose only encoding is a
    ``repr`` holding a memory address changes on every run, so a warning is
    logged: resuming such a run would never match.
    """
    text = json.dumps(
        _canonical(list(parts)),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _dumps(value: _Json) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _type_name(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _canonical(obj: object, active: set[int] | None = None) -> _Json:
    """Encode ``obj`` as JSON data; non-JSON values become tagged lists."""
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else ["\x00float", repr(obj)]
    active = set() if active is None else active
    if id(obj) in active:
        return ["\x00cycle", _type_name(obj)]
    active.add(id(obj))
    try:
        return _container(obj, active)
    finally:
        active.discard(id(obj))


def _container(obj: object, active: set[int]) -> _Json:
    if isinstance(obj, Mapping):
        if all(isinstance(key, str) for key in obj):
            return {key: _canonical(value, active) for key, value in obj.items()}
        pairs = sorted(
            ((_canonical(key, active), _canonical(value, active)) for key, value in obj.items()),
            key=lambda pair: _dumps(pair[0]),
        )
        return ["\x00map", [[key, value] for key, value in pairs]]
    if isinstance(obj, list | tuple):
        return [_canonical(item, active) for item in obj]
    if isinstance(obj, Set):
        return ["\x00set", sorted((_canonical(item, active) for item in obj), key=_dumps)]
    if isinstance(obj, bytes | bytearray | memoryview):
        return ["\x00bytes", bytes(obj).hex()]
    if isinstance(obj, enum.Enum):
        return ["\x00enum", _type_name(obj), _canonical(obj.value, active)]
    if isinstance(obj, type | types.FunctionType | types.BuiltinFunctionType | types.MethodType):
        return ["\x00named", f"{obj.__module__}.{obj.__qualname__}"]
    model_dump = getattr(obj, "model_dump", None)
    if callable(model_dump):
        return ["\x00model", _type_name(obj), _canonical(model_dump(), active)]
    if dataclasses.is_dataclass(obj):
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        return ["\x00dataclass", _type_name(obj), _canonical(fields, active)]
    if isinstance(getattr(obj, "__dict__", None), dict) and not isinstance(obj, types.ModuleType):
        return ["\x00object", _type_name(obj), _canonical(vars(obj), active)]
    return _fallback(obj)


def _fallback(obj: object) -> _Json:
    try:
        digest = hashlib.sha256(pickle.dumps(obj, protocol=5)).hexdigest()
    except Exception:
        text = repr(obj)
        if " at 0x" in text:
            logger.warning(
                "fingerprint: %s has no stable encoding (repr %r); a checkpoint of this run "
                "will not match on resume",
                _type_name(obj),
                text,
            )
        return ["\x00repr", _type_name(obj), text]
    return ["\x00pickle", _type_name(obj), digest]
