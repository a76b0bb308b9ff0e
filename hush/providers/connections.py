"""The pooled HTTP client of a resource, and the OpenAI SDK client over it.

Each client is sized to the resource's in-flight cap, keeps connections alive for
:data:`KEEPALIVE_SECONDS`, and marks each request whose response started (so a reply cut
later is not taken for an unreachable server, see :mod:`hush.providers.failures`). The SDK
client's own retries are off: the request loop of :mod:`hush.providers.attempts` owns them.
The SDK is imported by the first :func:`make_openai` (it takes most of a second).
Who owns and closes these clients: :mod:`hush.providers.client_scope`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx2

from hush.providers.failures import mark_responded
from hush.providers.limiter import DEFAULT_MAX_IN_FLIGHT
from hush.providers.resources import LLMResource
from hush.providers.tls import DeferredTLS

if TYPE_CHECKING:
    import openai

__all__ = ["NO_API_KEY", "make_http", "make_openai"]

NO_API_KEY = "no-key"
"""Sent when a resource has no ``api_key`` (local servers ignore it)."""
KEEPALIVE_SECONDS = 120.0


def make_http(resource: LLMResource, headers: dict[str, str] | None = None) -> httpx2.AsyncClient:
    """A pooled HTTP client for ``resource`` (``headers`` sent with every request); its CA
    certificates are loaded at its first TLS handshake (:class:`DeferredTLS`)."""
    size = resource.max_in_flight or DEFAULT_MAX_IN_FLIGHT
    return httpx2.AsyncClient(
        limits=httpx2.Limits(
            max_connections=size,
            max_keepalive_connections=size,
            keepalive_expiry=KEEPALIVE_SECONDS,
        ),
        timeout=httpx2.Timeout(resource.timeout),
        headers=headers,
        follow_redirects=True,
        verify=DeferredTLS(),
        event_hooks={"response": [mark_responded]},
    )


def make_openai(
    resource: LLMResource, http_client: httpx2.AsyncClient | None = None
) -> openai.AsyncOpenAI:
    """The SDK client of one resource (chat, embeddings) over ``http_client`` (default: a
    pooled HTTP client of its own), no SDK retries, Azure when ``api_type`` says so."""
    import openai

    http_client = http_client if http_client is not None else make_http(resource)
    api_key = resource.api_key.get_secret_value() if resource.api_key is not None else NO_API_KEY
    headers = {name: value.get_secret_value() for name, value in resource.headers.items()}
    if resource.api_type == "azure":
        return openai.AsyncAzureOpenAI(
            azure_endpoint=resource.base_url,
            api_version=resource.api_version,
            api_key=api_key,
            max_retries=0,
            timeout=resource.timeout,
            default_headers=headers,
            http_client=http_client,
        )
    return openai.AsyncOpenAI(
        base_url=resource.base_url,
        api_key=api_key,
        max_retries=0,
        timeout=resource.timeout,
        default_headers=headers,
        http_client=http_client,
    )
