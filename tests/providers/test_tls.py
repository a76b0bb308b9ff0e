"""A resource's pool loads its CA certificates at its first TLS handshake, not when made.

The local server sits behind a real TLS front (a certificate from a test CA made by
``trustme``); the client trusts what ``httpx2`` trusts by default, read through
``SSL_CERT_FILE`` as ``httpx2`` reads it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import trustme

from hush.providers.clients import complete, get_client
from hush.providers.errors import LLMCallError
from hush.providers.resources import LLMResource, ResourceRegistry
from hush.providers.tls import DeferredTLS
from hush.testing import MockLLMServer

Register = Callable[..., LLMResource]


class TLSFront:
    """Terminates TLS for ``localhost`` and pipes the bytes to the local server."""

    def __init__(self, ca: trustme.CA, target_port: int) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost").configure_cert(self.context)
        self.context.set_alpn_protocols(["http/1.1"])
        self.target_port = target_port
        self.protocols: list[str | None] = []
        self.port = 0

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls = writer.get_extra_info("ssl_object")
        self.protocols.append(tls.selected_alpn_protocol() if tls is not None else None)
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port
        )
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
        )

    async def __aenter__(self) -> TLSFront:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", 0, ssl=self.context, ssl_handshake_timeout=5
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def front(ca: trustme.CA, server: MockLLMServer) -> AsyncIterator[TLSFront]:
    async with TLSFront(ca, server.port) as running:
        yield running


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _pool_context(key: str, registry: ResourceRegistry) -> DeferredTLS:
    transport = get_client(key, registry=registry)._http._transport
    context = transport._pool._ssl_context  # type: ignore[attr-defined]
    assert isinstance(context, DeferredTLS)
    return context


async def test_a_plain_http_resource_never_loads_certificates(
    registry: ResourceRegistry, register: Register
) -> None:
    register("local")
    result = await complete("llm:local", _user("hi"), registry=registry)
    assert result.content
    assert _pool_context("llm:local", registry)._real is None


async def test_an_https_resource_is_verified_at_its_first_handshake(
    registry: ResourceRegistry,
    register: Register,
    front: TLSFront,
    ca: trustme.CA,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The certificates load at the first handshake (as ``httpx2``'s default context would
    load them: ``SSL_CERT_FILE`` is honoured), and the pool's ALPN reaches the server."""
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    register("tls", base_url=f"https://localhost:{front.port}/v1")
    assert _pool_context("llm:tls", registry)._real is None
    first = await complete("llm:tls", _user("one"), registry=registry)
    second = await complete("llm:tls", _user("two"), registry=registry)
    assert first.content and second.content
    assert _pool_context("llm:tls", registry)._real is not None
    assert front.protocols and set(front.protocols) == {"http/1.1"}


async def test_an_untrusted_certificate_is_still_refused(
    registry: ResourceRegistry, register: Register, front: TLSFront, server: MockLLMServer
) -> None:
    register("untrusted", base_url=f"https://localhost:{front.port}/v1", max_retries=0)
    with pytest.raises(LLMCallError, match=r"(?i)certificate"):
        await complete("llm:untrusted", _user("hi"), registry=registry)
    assert server.total_requests == 0
