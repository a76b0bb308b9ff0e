"""Stable digests of a run's graph description (the fingerprint) and of a function's code.

Both are equal across processes and hash seeds for equal values. The digest of
a node's inputs (the content key of a saved result) is :mod:`hush.checkpoint.digest`.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import inspect
import json
import logging
import math
import pickle
import types
from collections.abc import Callable, Mapping, Set
from typing import Any

from hush.checkpoint.errors import UnstableValueError

logger = logging.getLogger("hush.checkpoint")

_Json = None | bool | int | float | str | list["_Json"] | dict[str, "_Json"]


def code_identity(fn: Callable[..., Any]) -> list[Any]:
    """What identifies a function for a fingerprint: its qualified name and a digest of its code.

    The code digest covers the bytecode, constants (nested functions included),
    names and default values, not line numbers or comments. Values a closure
    captures are not covered (they are often live state: counters, clients,
    caches), nor is the code of functions it calls. A decorated function
    (``functools.wraps``, ``functools.cache``) is identified by the function it
    wraps. ``functools.partial`` adds its arguments; a bound method adds its object's type; a callable
    object is identified by its class's ``__call__``.
    """
    if isinstance(fn, functools.partial):
        return ["partial", code_identity(fn.func), _canonical([fn.args, fn.keywords])]
    wrapped = getattr(fn, "__wrapped__", None)
    if wrapped is not None and callable(wrapped) and wrapped is not fn:
        return ["wraps", _type_name(fn), code_identity(wrapped)]
    if isinstance(fn, types.MethodType):
        return ["method", _type_name(fn.__self__), code_identity(fn.__func__)]
    code = getattr(fn, "__code__", None)
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"
    if isinstance(code, types.CodeType):
        defaults = [_default(v) for v in getattr(fn, "__defaults__", None) or ()]
        kwdefaults = {
            k: _default(v) for k, v in (getattr(fn, "__kwdefaults__", None) or {}).items()
        }
        return ["function", name, _code_digest(code), defaults, kwdefaults]
    call = vars(type(fn)).get("__call__") if not isinstance(fn, type) else None
    if inspect.isfunction(call):
        return ["callable", _type_name(fn), code_identity(call)]
    return ["named", name]


def _default(value: object) -> _Json:
    try:
        return _canonical(value, strict=True)
    except UnstableValueError:
        return ["\x00type", _type_name(value)]


def _code_digest(code: types.CodeType) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(code.co_code)
    h.update(repr((code.co_names, code.co_varnames, code.co_freevars, code.co_argcount)).encode())
    h.update(repr(code.co_kwonlyargcount).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            h.update(_code_digest(const).encode())
        else:
            h.update(_dumps(_canonical(const)).encode())
    return h.hexdigest()


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


def _canonical(obj: object, active: set[int] | None = None, *, strict: bool = False) -> _Json:
    """Encode ``obj`` as JSON data; non-JSON values become tagged lists.

    With ``strict``, a value whose only encoding is a repr holding a memory
    address raises :class:`UnstableValueError` instead of being logged.
    """
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else ["\x00float", repr(obj)]
    active = set() if active is None else active
    if id(obj) in active:
        return ["\x00cycle", _type_name(obj)]
    active.add(id(obj))
    try:
        return _container(obj, active, strict)
    finally:
        active.discard(id(obj))


def _container(obj: object, active: set[int], strict: bool) -> _Json:
    def enc(value: object) -> _Json:
        return _canonical(value, active, strict=strict)

    if isinstance(obj, Mapping):
        if all(isinstance(key, str) for key in obj):
            return {key: enc(value) for key, value in obj.items()}
        pairs = sorted(
            ((enc(key), enc(value)) for key, value in obj.items()),
            key=lambda pair: _dumps(pair[0]),
        )
        return ["\x00map", [[key, value] for key, value in pairs]]
    if isinstance(obj, list | tuple):
        return [enc(item) for item in obj]
    if isinstance(obj, Set):
        return ["\x00set", sorted((enc(item) for item in obj), key=_dumps)]
    if isinstance(obj, bytes | bytearray | memoryview):
        return ["\x00bytes", bytes(obj).hex()]
    if isinstance(obj, enum.Enum):
        return ["\x00enum", _type_name(obj), enc(obj.value)]
    if isinstance(obj, type | types.FunctionType | types.BuiltinFunctionType | types.MethodType):
        return ["\x00named", f"{obj.__module__}.{obj.__qualname__}"]
    model_dump = getattr(obj, "model_dump", None)
    if callable(model_dump):
        return ["\x00model", _type_name(obj), enc(model_dump())]
    if dataclasses.is_dataclass(obj):
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        return ["\x00dataclass", _type_name(obj), enc(fields)]
    if isinstance(getattr(obj, "__dict__", None), dict) and not isinstance(obj, types.ModuleType):
        return ["\x00object", _type_name(obj), enc(vars(obj))]
    return _fallback(obj, strict)


def _fallback(obj: object, strict: bool = False) -> _Json:
    try:
        digest = hashlib.sha256(pickle.dumps(obj, protocol=5)).hexdigest()
    except Exception:
        text = repr(obj)
        if " at 0x" in text:
            if strict:
                raise UnstableValueError(
                    f"{_type_name(obj)} has no stable encoding (it does not pickle and its "
                    f"repr is {text!r})"
                ) from None
            logger.warning(
                "fingerprint: %s has no stable encoding (repr %r); a checkpoint of this run "
                "will not match on resume",
                _type_name(obj),
                text,
            )
        return ["\x00repr", _type_name(obj), text]
    return ["\x00pickle", _type_name(obj), digest]
