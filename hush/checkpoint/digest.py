"""The content digest of a node's (or map item's) inputs: the key of a saved result.

Every value is written as a tagged, length-prefixed byte string, and the
digest is a hash of those bytes, so two values get the same digest only when
they are the same value of the same type:

* ``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``, ``bytes`` and
  ``bytearray`` each have their own tag (``True`` is not ``1``, ``1`` is not
  ``1.0``, ``b"ab"`` is not ``"ab"``); floats are compared by their bits, so
  ``-0.0`` is not ``0.0``, and every NaN is the same NaN;
* a ``list`` is not a ``tuple``; a ``dict`` is its pairs sorted by key (key
  types kept: ``{1: x}`` is not ``{"1": x}``); a ``set`` or ``frozenset`` is
  its sorted elements;
* classes and named functions are their module and qualified name; a lambda or
  local function is its code, defaults and the values it closes over;
* any other object (exceptions, enums, dataclasses, pydantic models, dates,
  subclasses of the types above) is its type and the full state ``pickle``
  would save for it (``__reduce_ex__``): an exception is its type, its
  ``args`` and its attributes.

A value with no such form is refused with :class:`UndigestableError` (it does
not pickle, holds a local class, or nests deeper than the recursion limit, as
a cycle does); the engine then does not checkpoint that node or item. Equal
values in any process, under any hash seed and in any dict insertion order
get equal digests.
"""

from __future__ import annotations

import collections
import hashlib
import struct
import types
from collections.abc import Callable, Iterable
from typing import Any

from hush.checkpoint.errors import UnstableValueError

_DOUBLE = struct.Struct("<d").pack
_STR_HEADS = tuple(b"s%d:" % n for n in range(256))
_SMALL_DICT = 64
_DICT_HEADS = tuple(b"{%d;" % n for n in range(_SMALL_DICT))
_MAX_KEYS = 4096
_KEYS: dict[str, bytes] = {}


class UndigestableError(UnstableValueError):
    """A value has no digest that is the same for equal values in every process."""


def digest(value: object) -> str:
    """The content digest of ``value`` (32 hex digits); see the module docstring.

    Raises :class:`UndigestableError` for a value with no stable, injective form.
    """
    out: list[bytes] = []
    try:
        _encode(value, out)
    except RecursionError:
        raise UndigestableError(
            f"a {type(value).__name__} nested too deeply (or holding itself) cannot be digested"
        ) from None
    return hashlib.blake2b(b"".join(out), digest_size=16).hexdigest()


def digest_after(head: str) -> Callable[[object], str]:
    """``digest((head, value))`` as a function of ``value``, with ``head`` hashed once (a map
    item's key: its node's shared inputs' digest, then the item's own inputs)."""
    start: list[bytes] = []
    _encode((head, None), start)
    base = hashlib.blake2b(b"".join(start[:-1]), digest_size=16)

    def after(value: object) -> str:
        out: list[bytes] = []
        try:
            if type(value) is dict:
                _mapping(value, out)
            else:
                _encode(value, out)
        except RecursionError:
            raise UndigestableError(
                f"a {type(value).__name__} nested too deeply (or holding itself) cannot be digested"
            ) from None
        hasher = base.copy()
        hasher.update(b"".join(out))
        return hasher.hexdigest()

    return after


def _encode(obj: Any, out: list[bytes]) -> None:
    kind = type(obj)
    if kind is str:
        try:
            data = obj.encode()
        except UnicodeEncodeError:  # lone surrogates
            data = obj.encode("utf-8", "surrogatepass")
        size = len(data)
        out.append(_STR_HEADS[size] if size < 256 else b"s%d:" % size)
        out.append(data)
    elif kind is int:
        out.append(b"i%x;" % obj)  # hexadecimal has no digit limit
    elif kind is dict:
        _mapping(obj, out)
    elif kind is list:
        out.append(b"[%d;" % len(obj))
        _sequence(obj, out)
    elif kind is tuple:
        out.append(b"(%d;" % len(obj))
        _sequence(obj, out)
    elif kind is float:
        out.append(b"f" + _DOUBLE(obj) if obj == obj else b"n")
    elif obj is None:
        out.append(b"N")
    elif kind is bool:
        out.append(b"T" if obj else b"F")
    else:
        _ENCODERS.get(kind, _reduced)(obj, out)


def _sequence(items: list[Any] | tuple[Any, ...], out: list[bytes]) -> None:
    for item in items:
        if type(item) is str:
            try:
                data = item.encode()
            except UnicodeEncodeError:
                data = item.encode("utf-8", "surrogatepass")
            size = len(data)
            out.append(_STR_HEADS[size] if size < 256 else b"s%d:" % size)
            out.append(data)
        else:
            _encode(item, out)


def _bytes(obj: bytes | bytearray, out: list[bytes]) -> None:
    out.append(b"%s%d:" % (b"b" if type(obj) is bytes else b"B", len(obj)))
    out.append(bytes(obj))


def _complex(obj: complex, out: list[bytes]) -> None:
    out.append(b"c")
    _encode(obj.real, out)
    _encode(obj.imag, out)


def _alone(obj: object) -> bytes:
    out: list[bytes] = []
    _encode(obj, out)
    return b"".join(out)


def _mapping(obj: dict[Any, Any], out: list[bytes]) -> None:
    """A dict: its pairs sorted by key (string keys by their order, others by encoding).
    Integer values are written here, not through :func:`_encode` (a map item's inputs are
    often a dict of one key and a number, keyed thousands of times a second)."""
    size = len(obj)
    out.append(_DICT_HEADS[size] if size < _SMALL_DICT else b"{%d;" % size)
    keys: Iterable[Any] = obj
    if size > 1:
        try:
            keys = sorted(obj)
        except TypeError:  # keys of several types
            _pairs(obj.items(), out, ordered=False)
            return
    mark = len(out)
    for key in keys:
        if type(key) is not str:
            del out[mark:]
            _pairs(obj.items(), out, ordered=False)
            return
        out.append(_KEYS.get(key) or _key(key))
        value = obj[key]
        if type(value) is int:
            out.append(b"i%x;" % value)
        else:
            _encode(value, out)


def _key(key: str) -> bytes:
    """A dict's string key, encoded (and kept: the same few keys recur in every item)."""
    out: list[bytes] = []
    _encode(key, out)
    encoded = b"".join(out)
    if len(_KEYS) < _MAX_KEYS:
        _KEYS[key] = encoded
    return encoded


def _pairs(items: Any, out: list[bytes], *, ordered: bool) -> None:
    encoded = [_alone(key) + _alone(value) for key, value in items]
    for pair in encoded if ordered else sorted(encoded):
        out.append(pair)


def _set(obj: set[Any] | frozenset[Any], out: list[bytes]) -> None:
    out.append(b"%s%d;" % (b"<" if type(obj) is set else b">", len(obj)))
    out.extend(sorted(_alone(item) for item in obj))


def _named(obj: Any, out: list[bytes]) -> None:
    """A class, builtin or module-level function: by its module and qualified name."""
    module = getattr(obj, "__module__", None) or ""
    qualname = str(getattr(obj, "__qualname__", None) or getattr(obj, "__name__", ""))
    if "<locals>" in qualname or "<lambda>" in qualname:
        if isinstance(obj, types.FunctionType):
            _function(obj, out)
            return
        raise UndigestableError(
            f"{module}.{qualname} is defined inside a function, so it cannot be named "
            "the same way in another process; define it at module level"
        )
    name = f"{module}.{qualname}".encode("utf-8", "surrogatepass")
    out.append(b"g%d:" % len(name))
    out.append(name)


def _function(fn: types.FunctionType, out: list[bytes]) -> None:
    """A lambda or local function: its code, defaults and the values it closes over."""
    out.append(b"L")
    _code(fn.__code__, out)
    _encode(fn.__defaults__, out)
    _encode(fn.__kwdefaults__, out)
    cells = fn.__closure__ or ()
    out.append(b"(%d;" % len(cells))
    for cell in cells:
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            out.append(b"E")
        else:
            _encode(value, out)


def _code(code: types.CodeType, out: list[bytes]) -> None:
    out.append(b"C%d:" % len(code.co_code))
    out.append(code.co_code)
    _encode((code.co_names, code.co_varnames, code.co_freevars, code.co_argcount), out)
    _encode((code.co_kwonlyargcount, code.co_qualname, code.co_flags), out)
    out.append(b"(%d;" % len(code.co_consts))
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _code(const, out)
        else:
            _encode(const, out)


def _method(obj: types.MethodType, out: list[bytes]) -> None:
    out.append(b"M")
    _encode(obj.__self__, out)
    _encode(obj.__func__, out)


def _reduced(obj: object, out: list[bytes]) -> None:
    """Any other object: its type and the state ``pickle`` would save."""
    if isinstance(obj, type):
        _named(obj, out)
        return
    try:
        reduced = obj.__reduce_ex__(4)
    except Exception as exc:
        raise UndigestableError(
            f"a {_type_name(obj)} cannot be digested: it does not pickle ({exc})"
        ) from None
    if isinstance(reduced, str):  # a module-level singleton, named
        name = f"{type(obj).__module__}.{reduced}".encode("utf-8", "surrogatepass")
        out.append(b"G%d:" % len(name))
        out.append(name)
        return
    if not isinstance(reduced, tuple) or not 2 <= len(reduced) <= 6:
        raise UndigestableError(
            f"a {_type_name(obj)} cannot be digested: its __reduce_ex__ returned {reduced!r}"
        )
    func, args, state, listitems, dictitems = (*reduced[:5], None, None, None)[:5]
    out.append(b"R")
    _named(type(obj), out)
    _encode(func, out)
    _encode(args, out)
    _encode(state, out)
    _encode(None if listitems is None else list(listitems), out)
    if dictitems is None:
        out.append(b"N")
    else:
        pairs = list(dictitems)
        out.append(b"{%d;" % len(pairs))
        _pairs(pairs, out, ordered=isinstance(obj, collections.OrderedDict))


def _type_name(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _refused(obj: object, out: list[bytes]) -> None:
    raise UndigestableError(
        f"a {_type_name(obj)} cannot be digested (its content can change while it is held); "
        "pass bytes instead"
    )


_ENCODERS: dict[type, Callable[[Any, list[bytes]], None]] = {
    bytes: _bytes,
    bytearray: _bytes,
    complex: _complex,
    set: _set,
    frozenset: _set,
    type: _named,
    types.FunctionType: _named,
    types.BuiltinFunctionType: _named,
    types.MethodType: _method,
    memoryview: _refused,
}
