"""OTLP/protobuf encoding of finished spans, written straight to the wire format.

OpenTelemetry's encoder builds one protobuf message object per span, attribute and
value before serialising them: about 100 µs per span of nine attributes, on a thread
that shares the GIL with the event loop. This writes the same bytes directly (the
``ExportTraceServiceRequest`` of ``opentelemetry/proto/collector/trace/v1``), several
times faster; ``tests/observability/test_otlp_wire.py`` checks that the library's
decoder reads back what OpenTelemetry's own encoder writes. Spans are grouped by
resource (the provider's object: no hashing of its attributes per span) and
instrumentation scope, as OpenTelemetry's encoder does. :func:`span_fields` writes a span
from its fields alone (no ``ReadableSpan``) and :class:`Request` wraps such spans, for
the spans a private provider skips its processors for (:mod:`~hush.observability.wire_batches`).
Each key is encoded once and kept, with the short string values of keys that repeat (the
run's fields, kinds, statuses), integers and booleans; a span's fixed fields (ids, kind,
times, an unset status, its flags) are written with their tags known in advance. A string
that is not valid Unicode (a lone surrogate) is written escaped, an integer beyond int64 as
its digits, so that one value never spoils a request.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, Status, StatusCode

_KINDS = {
    SpanKind.INTERNAL: 1,
    SpanKind.SERVER: 2,
    SpanKind.CLIENT: 3,
    SpanKind.PRODUCER: 4,
    SpanKind.CONSUMER: 5,
}
_STATUS = {StatusCode.UNSET: 0, StatusCode.OK: 1, StatusCode.ERROR: 2}
_UNSET = Status(StatusCode.UNSET)
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200
_double, _fixed64, _fixed32 = (
    struct.Struct("<d").pack,
    struct.Struct("<Q").pack,
    struct.Struct("<I").pack,
)


def _varint(value: int) -> bytes:
    if 0 <= value < _SMALL:
        return _SMALL_VARINTS[value]
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = 1 << 14
_SMALL_VARINTS = [
    bytes((n,)) if n < 0x80 else bytes((n & 0x7F | 0x80, n >> 7)) for n in range(_SMALL)
]
_TAGS = [bytes((number << 3 | 2,)) for number in range(16)]


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (numbers below 16)."""
    size = len(payload)
    return _TAGS[number] + (_SMALL_VARINTS[size] if size < _SMALL else _varint(size)) + payload


def _utf8(text: str) -> bytes:
    """``text`` as UTF-8; a lone surrogate (a file name decoded with ``surrogateescape``) is
    written as its escape (``\\udcff``), so that the request stays valid protobuf."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


def _text(number: int, text: str) -> bytes:
    return _field(number, _utf8(text)) if text else b""


_INT64 = range(-(2**63), 2**63)


def _value(value: Any) -> bytes:
    """An ``AnyValue``."""
    if isinstance(value, str):
        return _field(1, _utf8(value))
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        # Beyond int64 (OTLP's integer), the exact value as text rather than a wrapped one.
        return b"\x18" + _varint(value) if value in _INT64 else _field(1, _utf8(str(value)))
    if isinstance(value, float):
        return b"\x21" + _double(value)
    if isinstance(value, bytes):
        return _field(7, value)
    if isinstance(value, Sequence):
        return _field(5, b"".join(_field(1, _value(v)) for v in value))
    if isinstance(value, Mapping):
        return _field(6, _attributes(1, value))
    return _field(1, _utf8(str(value)))


_REPEATED_MAX_CHARS = 256
"""String values up to this long are kept encoded with their key while few differ: most (the
run's fields, kinds, statuses, types) are the same on every span of a run."""
_VALUES_PER_KEY = 64
"""Distinct values kept encoded for one key; a key with more (an input, a path) is known to
vary and its values are no longer kept."""
_KEPT_MAX = 16_384
"""Encoded attributes kept in all (at most a few MB); the tables start over beyond."""


class _Key:
    """An attribute key as encoded (``head``), and the string values met with it, encoded
    with it, while few differ (``None`` once more did: a key whose values vary)."""

    __slots__ = ("head", "texts")

    def __init__(self, key: str) -> None:
        self.head = _text(1, key)
        self.texts: dict[str, bytes] | None = {}


_keys: dict[int, dict[str, _Key]] = {}
_scalars: dict[tuple[int, str, type, Any], bytes] = {}
"""Attributes of an integer or boolean value, encoded (the type tells ``True`` from ``1``)."""
_kept = [0]
"""Keys and values kept encoded in both tables (bounded by :data:`_KEPT_MAX`)."""


def _keep() -> bool:
    """Count one more encoded entry kept; ``False`` (and the tables emptied) when full."""
    if _kept[0] >= _KEPT_MAX:
        _kept[0] = 0
        _keys.clear()
        _scalars.clear()
        return False
    _kept[0] += 1
    return True


def _attribute(number: int, key: str, value: Any) -> bytes:
    """A ``KeyValue`` field numbered ``number``."""
    return _field(number, _text(1, str(key)) + _field(2, _value(value)))


def _string_attribute(tag: bytes, head: bytes, value: str) -> bytes:
    """A ``KeyValue`` field (``tag``) of encoded key ``head`` and a string value."""
    data = _utf8(value)
    size = len(data)
    inner = b"\x0a" + (_SMALL_VARINTS[size] if size < _SMALL else _varint(size)) + data
    size = len(inner)
    pair = head + b"\x12" + (_SMALL_VARINTS[size] if size < _SMALL else _varint(size)) + inner
    size = len(pair)
    return tag + (_SMALL_VARINTS[size] if size < _SMALL else _varint(size)) + pair


def _attributes(number: int, attributes: Mapping[str, Any] | None) -> bytes:
    """Repeated ``KeyValue`` fields numbered ``number``."""
    if not attributes:
        return b""
    keys = _keys.get(number)
    if keys is None:
        keys = _keys[number] = {}
    tag = _TAGS[number]
    out = []
    for key, value in attributes.items():
        kind = type(value)
        if type(key) is not str:
            out.append(_attribute(number, key, value))
        elif kind is str:
            known = keys.get(key)
            if known is None:
                known = _Key(key)
                if _keep():
                    keys[key] = known
            texts = known.texts
            if texts is None or len(value) > _REPEATED_MAX_CHARS:
                out.append(_string_attribute(tag, known.head, value))
                continue
            encoded = texts.get(value)
            if encoded is None:
                encoded = _string_attribute(tag, known.head, value)
                if len(texts) >= _VALUES_PER_KEY:
                    known.texts = None
                elif _keep():
                    texts[value] = encoded
            out.append(encoded)
        elif kind is int or kind is bool:
            scalar = (number, key, kind, value)
            encoded = _scalars.get(scalar)
            if encoded is None:
                encoded = _attribute(number, key, value)
                if _keep():
                    _scalars[scalar] = encoded
            out.append(encoded)
        else:
            out.append(_attribute(number, key, value))
    return b"".join(out)


def _count(number: int, count: int | None) -> bytes:
    return _varint(number << 3) + _varint(count) if count else b""


_KIND_FIELDS = {kind: b"\x30" + bytes((number,)) for kind, number in _KINDS.items()}
_TIMES = struct.Struct("<BQBQ").pack
"""Start and end times (fields 7 and 8, fixed64) at once."""
_UNSET_STATUS = b"\x7a\x00"
"""An empty ``Status`` (field 15): unset, no message."""
_FLAGS = {
    remote: b"\x85\x01" + _fixed32(_HAS_IS_REMOTE | (_IS_REMOTE if remote else 0))
    for remote in (False, True)
}


_INTERNAL = SpanKind.INTERNAL
_INTERNAL_FIELD = _KIND_FIELDS[_INTERNAL]
_PLAIN_TAIL = _UNSET_STATUS + _FLAGS[False]
"""What ends a span with no events nor links, an unset status and a local parent."""


def span_fields(
    ids: tuple[int, int, int | None],
    name: str,
    kind: SpanKind,
    times: tuple[int, int],
    attributes: Mapping[str, Any],
    events: Sequence[Any] = (),
    links: Sequence[Any] = (),
    status: Status | None = None,
) -> bytes:
    """One ``Span`` message from its fields: ``ids`` are the trace, span and parent (or
    ``None``: a root) ids, the parent local; ``events`` and ``links`` are OpenTelemetry's
    ``Event`` and ``Link`` (a ``BoundedList`` counts what it dropped), ``attributes`` a
    mapping (a ``BoundedAttributes`` too); no ``status`` is an unset one."""
    trace_id, span_id, parent_id = ids
    head = b"\x0a\x10" + trace_id.to_bytes(16, "big") + b"\x12\x08" + span_id.to_bytes(8, "big")
    if parent_id is not None:
        head += b"\x22\x08" + parent_id.to_bytes(8, "big")
    out = [
        head,
        _text(5, name),
        _INTERNAL_FIELD if kind is _INTERNAL else _KIND_FIELDS[kind],
        _TIMES(0x39, times[0], 0x41, times[1]),
        _attributes(9, attributes),
    ]
    if type(attributes) is not dict:
        out.append(_count(10, getattr(attributes, "dropped", 0)))
    if status is None and not events and type(links) is tuple and not links:
        out.append(_PLAIN_TAIL)
    else:
        dropped = (getattr(events, "dropped", 0), getattr(links, "dropped", 0))
        _tail(out, (events, links), dropped, status or _UNSET, False)
    return b"".join(out)


def _tail(
    out: list[bytes],
    events_links: tuple[Sequence[Any], Sequence[Any]],
    dropped: tuple[int, int],
    status: Status | None,
    remote_parent: bool,
) -> None:
    """A span's events and links (and how many of each were dropped), status and flags
    (fields 11 to 16), appended to ``out``."""
    events, links = events_links
    for event in events:
        body = b"\x09" + _fixed64(event.timestamp) + _text(2, event.name)
        body += _attributes(3, event.attributes) + _count(4, event.dropped_attributes)
        out.append(_field(11, body))
    out.append(_count(12, dropped[0]))
    for link in links:
        linked = link.context
        body = _field(1, linked.trace_id.to_bytes(16, "big"))
        body += _field(2, linked.span_id.to_bytes(8, "big"))
        body += _attributes(4, link.attributes) + _count(5, link.dropped_attributes)
        link_flags = _HAS_IS_REMOTE | (_IS_REMOTE if linked.is_remote else 0)
        out.append(_field(13, body + b"\x35" + _fixed32(link_flags)))
    out.append(_count(14, dropped[1]))
    code = 0 if status is None else _STATUS[status.status_code]
    if status is not None and (code or status.description):
        message = _text(2, status.description or "")
        out.append(_field(15, message + (b"\x18" + _varint(code) if code else b"")))
    else:
        out.append(_UNSET_STATUS)
    out.append(_FLAGS[remote_parent])


def _span(span: ReadableSpan) -> bytes:
    context = span.get_span_context()
    assert context is not None
    parent = span.parent
    out = [
        b"\x0a\x10" + context.trace_id.to_bytes(16, "big"),
        b"\x12\x08" + context.span_id.to_bytes(8, "big"),
    ]
    if context.trace_state:
        out.append(_text(3, ",".join(f"{k}={v}" for k, v in context.trace_state.items())))
    if parent is not None:
        out.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    out += (
        _text(5, span.name),
        _KIND_FIELDS[span.kind],
        _TIMES(0x39, span.start_time or 0, 0x41, span.end_time or 0),
        _attributes(9, span.attributes),
        _count(10, span.dropped_attributes),
    )
    dropped = (span.dropped_events, span.dropped_links)
    remote = parent is not None and parent.is_remote
    _tail(out, (span.events, span.links), dropped, span.status, remote)
    return b"".join(out)


def encode_request(spans: Sequence[ReadableSpan]) -> bytes:
    """The ``ExportTraceServiceRequest`` carrying ``spans``, serialised."""
    groups: dict[int, tuple[Any, dict[Any, list[bytes]]]] = {}
    for span in spans:
        resource = span.resource
        _, scopes = groups.setdefault(id(resource), (resource, {}))
        scopes.setdefault(span.instrumentation_scope, []).append(_field(2, _span(span)))
    out = []
    for resource, scopes in groups.values():
        body = _field(1, _attributes(1, resource.attributes))
        for scope, encoded in scopes.items():
            head = _field(1, b"")
            tail = b""
            if scope is not None:
                head = _field(
                    1,
                    _text(1, scope.name)
                    + _text(2, scope.version or "")
                    + _attributes(3, scope.attributes),
                )
                tail = _text(3, scope.schema_url or "")
            body += _field(2, head + b"".join(encoded) + tail)
        body += _text(3, resource.schema_url or "")
        out.append(_field(1, body))
    return b"".join(out)


class Request:
    """``ExportTraceServiceRequest`` s of spans that share one resource and scope, from spans
    already encoded (:func:`span_fields`) and framed (:meth:`frame`)."""

    def __init__(self, resource: Any, scope: Any) -> None:
        self._resource = _field(1, _attributes(1, resource.attributes))
        self._resource_tail = _text(3, resource.schema_url or "")
        self._scope = _field(
            1,
            _text(1, scope.name) + _text(2, scope.version or "") + _attributes(3, scope.attributes),
        )
        self._scope_tail = _text(3, scope.schema_url or "")

    @staticmethod
    def frame(span: bytes) -> bytes:
        """A ``Span`` message as one of a ``ScopeSpans`` ' spans."""
        return _field(2, span)

    def of(self, framed: Sequence[bytes]) -> bytes:
        """The request carrying ``framed`` spans."""
        scope_spans = _field(2, self._scope + b"".join(framed) + self._scope_tail)
        return _field(1, self._resource + scope_spans + self._resource_tail)
