"""A plain chat completion sent over the resource's ``httpx2`` pool without the ``openai`` SDK.

Importing the SDK takes most of a second (its types), which a ``hush batch`` spends
before its first request. A plain request (no streaming, no pydantic
``response_format``, not Azure, no service-tier fallback to arrange) is sent here
instead, byte for byte as the SDK's ``chat.completions.with_raw_response.create``
sends it (the same URL, query, headers and JSON body; a test compares them), and its
reply is read as the SDK reads it: an error status raises
:class:`~hush.providers.failures.HTTPFailure` with the server's message and code (which
:func:`~hush.providers.failures.classify` treats as it treats the SDK's
``APIStatusError``), a body that is not JSON raises the same ``ValueError``, and the
reply's fields are read through :class:`Reply` (a missing field reads ``None``, as an
unset field of the SDK's lenient model does).
"""

from __future__ import annotations

import datetime
import functools
import importlib.metadata
import json
import os
import platform
import sys
from collections.abc import Mapping
from typing import Any

import httpx2
import pydantic

from hush.providers.failures import HTTPFailure, http_timeout
from hush.providers.params import KNOWN_PARAMS
from hush.providers.resources import LLMResource

__all__ = ["Reply", "is_plain", "send"]

_SDK_ONLY = frozenset({"extra_body", "extra_headers", "extra_query", "timeout"})
_BODY_ORDER = [
    "model",
    "service_tier",
    "messages",
    *sorted((KNOWN_PARAMS | {"stream_options"}) - _SDK_ONLY - {"service_tier"}),
]
"""The order ``openai`` 3.60's ``chat.completions.create`` writes the body's fields in:
these three, then the rest by name (from the one list of parameter names)."""


def is_plain(resource: LLMResource, body: Mapping[str, Any]) -> bool:
    """Whether a non-streamed request with no pydantic ``response_format`` can go here."""
    if resource.api_type != "openai" or not resource.plain_requests:
        return False
    tier = body.get("service_tier")
    return not resource.service_tier_fallback or tier in (None, "auto", "default")


async def send(
    http: httpx2.AsyncClient, resource: LLMResource, body: Mapping[str, Any], seconds: float
) -> tuple[Reply, httpx2.Headers]:
    """POST ``body`` (the SDK's ``create`` keywords) to the resource's chat completions."""
    payload = {k: body[k] for k in _BODY_ORDER if k in body}
    payload.update({k: v for k, v in body.items() if k not in _SDK_ONLY and k not in payload})
    payload.update(body.get("extra_body") or {})
    headers = _client_headers(resource)
    headers.update(_merge(body.get("extra_headers") or {}))
    headers["x-stainless-raw-response"] = "true"
    headers["x-stainless-retry-count"] = "0"
    limits = http_timeout(seconds)
    headers["x-stainless-read-timeout"] = str(limits.read)
    response = await http.post(
        resource.base_url.rstrip("/") + "/chat/completions",
        content=json.dumps(
            payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_json
        ),
        headers=headers,
        params=body.get("extra_query") or None,
        timeout=limits,
    )
    if response.is_error:
        await response.aread()
        raise _failure(response)
    data = response.json()
    return Reply.of(data), response.headers


class Reply:
    """Attribute access over a JSON reply: ``reply.choices[0].message.content``; a missing
    field is ``None``."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    @staticmethod
    def of(value: Any) -> Any:
        """``value`` with its objects (at any depth) readable by attribute."""
        if isinstance(value, Mapping):
            return Reply(value)
        if isinstance(value, list):
            return [Reply.of(item) for item in value]
        return value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return Reply.of(self._data.get(name))

    def model_dump(self, **_: Any) -> dict[str, Any]:
        """The object as JSON data without its ``None`` fields (as the SDK's
        ``model_dump(mode="json", exclude_none=True)``)."""
        return {k: _without_none(v) for k, v in self._data.items() if v is not None}


def _json(value: Any) -> Any:
    """What the SDK's JSON encoder makes of a value ``json`` does not know."""
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(exclude_unset=True, mode="json", by_alias=True)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _without_none(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(item) for item in value]
    return value


def _failure(response: httpx2.Response) -> HTTPFailure:
    """An error status as the SDK reads it: the body's ``error`` object, its message and code."""
    try:
        parsed: Any = response.json()
    except ValueError:
        parsed = response.text
    error = parsed.get("error", parsed) if isinstance(parsed, Mapping) else parsed
    code = error.get("code") if isinstance(error, Mapping) else None
    if isinstance(error, Mapping) and isinstance(error.get("message"), str):
        message = str(error["message"])
    elif isinstance(error, str) and error.strip():
        message = error.strip()[:500]
    else:
        text = response.text.strip()
        message = text[:500] or f"Error code: {response.status_code} - {error}"
    return HTTPFailure(
        response.status_code, response.headers, message, code if isinstance(code, str) else None
    )


def _merge(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers merged case-insensitively as the SDK merges them: names lower-cased, a later
    value replacing an earlier one in its place."""
    merged: dict[str, str] = {}
    for name, value in headers.items():
        merged[name.lower()] = value
    return merged


def _client_headers(resource: LLMResource) -> dict[str, str]:
    """What ``AsyncOpenAI`` sends with every request of this resource, in its order."""
    api_key = resource.api_key.get_secret_value() if resource.api_key is not None else "no-key"
    custom = {name: value.get_secret_value() for name, value in resource.headers.items()}
    headers = _merge(
        {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "Content-Type": "application/json",
            **_sdk_identity(),
        }
    )
    headers.update(_merge(custom))
    headers["x-stainless-async"] = "async:asyncio"
    for name, variable in (
        ("openai-organization", "OPENAI_ORG_ID"),
        ("openai-project", "OPENAI_PROJECT_ID"),
    ):
        value = os.environ.get(variable)
        if value is not None:
            headers[name] = value
    headers.update(_merge(custom))
    return headers


@functools.cache
def _sdk_identity() -> dict[str, str]:
    """The SDK's ``User-Agent`` and platform headers (read from its package metadata)."""
    version = sdk_version()
    machine = platform.machine().lower()
    arch = {"arm64": "arm64", "aarch64": "arm64", "arm": "arm", "x86_64": "x64"}.get(machine)
    if arch is None:
        arch = "x32" if sys.maxsize <= 2**32 else (f"other:{machine}" if machine else "unknown")
    system = platform.system().lower()
    name = {
        "darwin": "MacOS",
        "windows": "Windows",
        "freebsd": "FreeBSD",
        "openbsd": "OpenBSD",
        "linux": "Linux",
    }
    if system not in name:  # platform.platform() may run ``uname -p``: only when it is sent
        name[system] = f"Other:{platform.platform().lower()}"
    return {
        "User-Agent": f"AsyncOpenAI/Python {version}",
        "X-Stainless-Lang": "python",
        "X-Stainless-Package-Version": version,
        "X-Stainless-OS": name[system],
        "X-Stainless-Arch": arch,
        "X-Stainless-Runtime": platform.python_implementation(),
        "X-Stainless-Runtime-Version": platform.python_version(),
    }


def sdk_version() -> str:
    """The installed ``openai``'s version, read from the header of its ``METADATA`` (what
    ``importlib.metadata.version`` returns, without parsing the whole file as a mail
    message: a few ms, before the first request)."""
    text = importlib.metadata.distribution("openai").read_text("METADATA") or ""
    for line in text.splitlines():
        if not line:
            break
        if line.startswith("Version:"):
            return line.partition(":")[2].strip()
    return importlib.metadata.version("openai")
