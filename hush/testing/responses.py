"""The ways the local server answers besides a plain reply: an OpenAI error, a stream,
a connection dropped or cut mid-body, and the careless server's echoed credentials."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from hush.testing.faults import error_body
from hush.testing.records import RequestRecord

MALFORMED = b'{"id": "chatcmpl-malformed", "object": "chat.completion", "choices": [{"index": 0, '
"""A reply body cut off in the middle of its JSON."""


def error(
    record: RequestRecord,
    status: int,
    message: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An OpenAI-style error answer; ``record`` notes its status."""
    record.status = status
    return web.Response(
        status=status,
        body=error_body(status, message, code),
        content_type="application/json",
        headers=headers,
    )


def set_retry_after(headers: dict[str, str], seconds: float) -> None:
    """``retry-after`` (seconds) and ``retry-after-ms`` (rounded up, ignoring float noise
    below a thousandth of a millisecond), at least a millisecond."""
    seconds = max(0.001, seconds)
    headers["retry-after"] = f"{seconds:.3f}"
    headers["retry-after-ms"] = str(max(1, int(seconds * 1000 + 0.999)))


async def stream(
    request: web.Request,
    record: RequestRecord,
    events: list[bytes],
    headers: dict[str, str],
    chunk_delay: float,
    *,
    cut: bool = False,
) -> web.StreamResponse:
    """Send ``events``; with ``cut``, close the connection after them without ending."""
    headers["Content-Type"] = "text/event-stream; charset=utf-8"
    headers["Cache-Control"] = "no-cache"
    response = web.StreamResponse(status=200, headers=headers)
    record.status = 200
    await response.prepare(request)
    if chunk_delay > 0:
        for event in events:
            await response.write(event)
            await asyncio.sleep(chunk_delay)
    else:
        await response.write(b"".join(events))
    if cut:
        return drop(request)
    await response.write_eof()
    return response


def drop(request: web.Request) -> web.Response:
    """Close the connection without answering (the returned response is never sent)."""
    transport = request.transport
    if transport is not None:
        transport.close()
    return web.Response(status=204)


async def cut_body(
    request: web.Request, payload: bytes, headers: dict[str, str]
) -> web.StreamResponse:
    """Announce ``payload``, send half of it and close the connection."""
    response = web.StreamResponse(status=200, headers=headers)
    response.content_type = "application/json"
    response.content_length = len(payload)
    await response.prepare(request)
    await response.write(payload[: len(payload) // 2])
    return drop(request)


def echo_credentials(request: web.Request, response: web.Response) -> web.Response:
    """Quote the request's credentials in the error message, as a careless proxy would."""
    quoted = "; ".join(
        f"{name}: {value}"
        for name, value in request.headers.items()
        if name.lower() in ("authorization", "api-key") or name.lower().startswith("x-")
    )
    try:
        body = json.loads(response.body) if isinstance(response.body, bytes) else {}
        body["error"]["message"] += f" (request headers: {quoted})"
        payload = json.dumps(body).encode()
    except (ValueError, KeyError, TypeError):
        payload = f"error; request headers: {quoted}".encode()
    return web.Response(
        status=response.status,
        body=payload,
        content_type="application/json",
        headers={
            k: v
            for k, v in response.headers.items()
            if k.lower() != "content-length" and k.lower() != "content-type"
        },
    )
