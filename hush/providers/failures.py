"""Error mapping: what an exception from the SDK or ``httpx2`` means for one attempt.

:func:`classify` turns what one request raised into an :class:`AttemptFailed`: retryable
or not, the server's ``Retry-After``, and what the limiter's permit is told (a 429, an
unreachable resource, or another failure). Chat completions, embeddings and rerank
share it, so a status means the same everywhere:

- 408/409/429 and 5xx are retried, unless the server says ``x-should-retry: false`` or
  the 429 is an exhausted quota (``insufficient_quota``); a ``Retry-After`` longer than
  the resource's ``max_retry_wait`` fails the call at once; other 4xx fail at once with
  the server's message;
- a timeout waiting for the reply is retried like a 5xx (the request reached the
  server); a connection not made within :data:`CONNECT_SHARE` of the timeout, or refused,
  is "cannot connect" (the breaker counts it), unless the server had started answering;
- a malformed reply body is retried; a reply not matching a pydantic ``response_format``
  is not.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx2

from hush.core.redaction import redact
from hush.providers.headers import parse_retry_after
from hush.providers.resources import LLMResource
from hush.providers.retrying import AttemptFailed

if TYPE_CHECKING:
    import openai
    import pydantic

__all__ = [
    "CONNECT_SHARE",
    "FALLBACK_STATUS",
    "HTTPFailure",
    "MalformedReply",
    "classify",
    "http_timeout",
    "mismatch",
    "server_message",
    "status_failure",
]

RETRYABLE_STATUS = frozenset({408, 409, 429})
CONNECT_SHARE = 0.9
"""Share of a request's timeout within which its connection must be made: a connection
not made by then is a connection failure (for the breaker), not a slow reply."""
FALLBACK_STATUS = frozenset({401, 403, 404, 429})
"""Besides retryable failures, statuses that mean this resource (not the request) is unusable
(a 429 that must not be retried is an exhausted quota)."""
TIER_UNAVAILABLE_CODES = frozenset({"resource_unavailable", "capacity_exceeded"})
"""Error codes saying a service tier (flex) has no capacity now (OpenAI, Groq)."""
RESPONDED = "hush_responded"
"""Set in a request's extensions once its response's headers arrived."""


class HTTPFailure(Exception):
    """An error status from a server reached without the SDK, with its headers and message."""

    def __init__(
        self, status: int, headers: Mapping[str, str], message: str, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers
        self.message = message
        self.code = code


class MalformedReply(ValueError):
    """The reply came but cannot be read."""


def http_timeout(timeout: float) -> httpx2.Timeout:
    """A request timeout whose connection share is :data:`CONNECT_SHARE`."""
    return httpx2.Timeout(timeout, connect=timeout * CONNECT_SHARE)


async def mark_responded(response: httpx2.Response) -> None:
    """Response hook: note on the request that the server answered (a later failure is
    not an outage)."""
    response.request.extensions[RESPONDED] = True


def classify(exc: BaseException, resource: LLMResource, timeout: float) -> AttemptFailed | None:
    """What ``exc``, raised by one request to ``resource``, means; ``None`` when it is not
    a failure of the request (a bug, a cancellation: raised as it is)."""
    if isinstance(exc, AttemptFailed):
        return exc
    openai = sys.modules.get("openai")  # the SDK's errors exist only once it is imported
    if openai is not None and isinstance(exc, openai.APIError):
        if isinstance(exc, openai.APIStatusError):
            return status_failure(
                exc.status_code, exc.response.headers, server_message(exc), exc.code, resource
            )
        if isinstance(exc, openai.APITimeoutError):
            connect = isinstance(exc.__cause__, httpx2.ConnectTimeout)
            return _timeout(resource, timeout, connect)
        if isinstance(exc, openai.APIConnectionError):
            return _cut_or_unreachable(exc, resource)
        if isinstance(exc, openai.APIResponseValidationError):
            return _malformed(exc)
    return _http_failure(exc, resource, timeout)


def _http_failure(
    exc: BaseException, resource: LLMResource, timeout: float
) -> AttemptFailed | None:
    """What ``exc`` means when the SDK did not raise it (see :func:`classify`)."""
    if isinstance(exc, HTTPFailure):
        return status_failure(exc.status, exc.headers, exc.message, exc.code, resource)
    if isinstance(exc, httpx2.TimeoutException | TimeoutError):
        return _timeout(resource, timeout, isinstance(exc, httpx2.ConnectTimeout))
    if isinstance(exc, httpx2.TransportError):
        return _cut_or_unreachable(exc, resource)
    if isinstance(exc, ValueError):
        return _malformed(exc)
    return None


def _timeout(resource: LLMResource, timeout: float, connect: bool) -> AttemptFailed:
    if connect:
        return _unreachable(resource, f"no connection within {timeout * CONNECT_SHARE:g} s")
    return AttemptFailed(f"no reply within {timeout:g}s (timeout)", retryable=True)


def _cut_or_unreachable(exc: Exception, resource: LLMResource) -> AttemptFailed:
    cause = exc.__cause__ or exc
    reason = redact(str(cause) or type(cause).__name__)
    if _responded(exc):
        return AttemptFailed(
            f"the reply was cut after the server started answering: {reason}", retryable=True
        )
    return _unreachable(resource, reason)


def _malformed(exc: Exception) -> AttemptFailed:
    return AttemptFailed(f"malformed reply body: {redact(str(exc))[:200]}", retryable=True)


def status_failure(
    status: int,
    headers: Mapping[str, str],
    message: str,
    code: str | None,
    resource: LLMResource,
) -> AttemptFailed:
    """An error status: retryable (408/409/429, 5xx) unless the server says otherwise or
    asks to wait longer than ``max_retry_wait``."""
    retry_after = parse_retry_after(headers)
    retryable = (
        (status in RETRYABLE_STATUS or status >= 500)
        and headers.get("x-should-retry") != "false"
        and code != "insufficient_quota"
    )
    text = f"HTTP {status}: {redact(message)}"
    rate_limited = status == 429 and retryable
    if retryable and retry_after is not None and retry_after > resource.max_retry_wait:
        retryable = False
        text = (
            f"the server asked to retry after {retry_after:.0f} s, more than "
            f"max_retry_wait ({resource.max_retry_wait:g} s): a spent quota? "
            f"Resume the run later ({text})"
        )
    return AttemptFailed(
        text,
        status_code=status,
        retryable=retryable,
        retry_after=retry_after if retryable else None,
        headers=headers,
        rate_limited=rate_limited,
        asked_wait=retry_after,
    )


def tier_failure(
    body: dict[str, Any], exc: openai.APIStatusError, resource: LLMResource
) -> AttemptFailed | None:
    """When ``exc`` says the service tier ``body`` asked for (flex) lacks capacity now and
    the resource falls back: the tier is dropped from ``body`` and the attempt is retried at
    once on the standard tier. ``None`` otherwise."""
    if not resource.service_tier_fallback or not _tier_unavailable(body, exc):
        return None
    tier = body.pop("service_tier")
    return AttemptFailed(
        f"HTTP {exc.status_code}: {redact(server_message(exc))} (service_tier {tier!r} "
        "unavailable; sent again without it)",
        status_code=exc.status_code,
        retryable=True,
        retry_after=0.0,
        headers=exc.response.headers,
    )


def finish_failure(
    exc: openai.LengthFinishReasonError | openai.ContentFilterFinishReasonError,
    model_type: type[pydantic.BaseModel] | None,
    usage: dict[str, int] | None,
) -> AttemptFailed:
    """A structured reply the SDK could not parse because it was cut or filtered."""
    name = model_type.__name__ if model_type is not None else "the response format"
    import openai

    why = (
        "it was cut off by the token limit"
        if isinstance(exc, openai.LengthFinishReasonError)
        else "the content filter stopped it"
    )
    return AttemptFailed(f"reply did not match {name}: {why}", retryable=False, usage=usage)


def mismatch(model_type: type[pydantic.BaseModel], exc: pydantic.ValidationError) -> str:
    """Why a reply does not match ``model_type``, field by field."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(reply)'}: {err['msg']}"
        for err in exc.errors(include_url=False, include_input=False)
    )
    return f"reply did not match {model_type.__name__}: {problems}"


def server_message(exc: openai.APIStatusError) -> str:
    """The server's own words for an error status."""
    body = exc.body
    if isinstance(body, Mapping) and isinstance(body.get("message"), str):
        return str(body["message"])
    if isinstance(body, str) and body.strip():
        return body.strip()[:500]
    try:
        text = exc.response.text.strip()
    except Exception:
        text = ""
    return text[:500] or exc.message


def _unreachable(resource: LLMResource, reason: str) -> AttemptFailed:
    return AttemptFailed(
        f"cannot connect to {resource.base_url}: {reason}", retryable=True, unreachable=reason
    )


def _responded(exc: BaseException) -> bool:
    """Whether the request that failed with ``exc`` had got its response's headers."""
    try:
        request = exc.request  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):
        return False
    return bool(getattr(request, "extensions", {}).get(RESPONDED))


def _tier_unavailable(body: Mapping[str, Any], exc: openai.APIStatusError) -> bool:
    if body.get("service_tier") in (None, "auto", "default") or exc.status_code not in (429, 498):
        return False
    text = server_message(exc).lower()
    return (
        exc.code in TIER_UNAVAILABLE_CODES or "resource unavailable" in text or "capacity" in text
    )
