"""The TLS settings of a resource's HTTP pool, made at its first TLS handshake.

``httpx2`` builds its default SSL context when a client is made, and loading the CA
certificates into it takes ~25 ms of CPU: a quarter of what ``hush batch`` may spend
before its first request, and all of it wasted on a plain-HTTP resource (a local
server). :class:`DeferredTLS` is the context the pool is given instead: at its first
handshake it asks ``httpcore2`` for the same default context and hands every handshake
to it, with the ALPN protocols the pool set on this one.
"""

from __future__ import annotations

import ssl
import threading
from typing import Any

__all__ = ["DeferredTLS"]


class DeferredTLS(ssl.SSLContext):
    """An SSL context that becomes ``httpcore2.default_ssl_context()`` at first use.

    Only the pool of :func:`hush.providers.connections.make_http` holds one; it sets the
    ALPN protocols (passed on) and wraps connections (handed to the real context).
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> DeferredTLS:
        context = super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)
        context._lock = threading.Lock()
        context._real = None
        context._alpn = None
        return context

    _lock: threading.Lock
    _real: ssl.SSLContext | None
    _alpn: list[str] | None

    def real(self) -> ssl.SSLContext:
        """The default context, made (and its certificates loaded) on the first call."""
        real = self._real
        if real is None:
            with self._lock:
                real = self._real
                if real is None:
                    import httpcore2

                    real = httpcore2.default_ssl_context()
                    self._real = real
        if self._alpn is not None:
            real.set_alpn_protocols(self._alpn)
        return real

    def set_alpn_protocols(self, alpn_protocols: Any) -> None:
        self._alpn = list(alpn_protocols)
        super().set_alpn_protocols(self._alpn)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        return self.real().wrap_bio(*args, **kwargs)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        return self.real().wrap_socket(*args, **kwargs)
