"""Where LangfuseTracer finds its keys (arguments, the ``langfuse:default`` resource, the
environment), and the secrets in a tracer's headers, redacted from every message."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hush.core.redaction import register_secret

logger = logging.getLogger(__name__)

RESOURCE_KEY = "langfuse:default"
DEFAULT_HOST = "https://cloud.langfuse.com"


class MissingCredentialsError(ValueError):
    """No Langfuse public and secret key were found."""


@dataclass(frozen=True)
class LangfuseCredentials:
    """A Langfuse key pair and server; ``source`` says where the keys came from."""

    public_key: str
    secret_key: str = field(repr=False)
    host: str
    source: str


def resolve_credentials(
    public_key: str | None = None, secret_key: str | None = None, host: str | None = None
) -> LangfuseCredentials:
    """Find keys in the arguments, else the ``langfuse:default`` resource, else ``LANGFUSE_*``.

    The keys of a pair always come from the same place. The host is the
    argument, else the host stored with the keys, else ``LANGFUSE_BASE_URL`` /
    ``LANGFUSE_HOST``, else Langfuse Cloud. Raises :class:`MissingCredentialsError`,
    naming every place looked at, when no source holds both keys.
    """
    env = os.environ.get
    found: tuple[str | None, str | None, str | None, str]
    if public_key or secret_key:
        if not (public_key and secret_key):
            given, missing = ("public", "secret") if public_key else ("secret", "public")
            raise MissingCredentialsError(
                f"LangfuseTracer got {given}_key but no {missing}_key; pass both keys "
                "(or neither, to use the langfuse:default resource or LANGFUSE_* variables)"
            )
        found = (public_key, secret_key, None, "arguments")
    else:
        found = _resource() or (
            env("LANGFUSE_PUBLIC_KEY"),
            env("LANGFUSE_SECRET_KEY"),
            None,
            "environment",
        )
    pk, sk, stored_host, source = found
    if not (pk and sk):
        unset = [n for n in ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY") if not env(n)]
        raise MissingCredentialsError(
            "LangfuseTracer found no Langfuse keys. Looked at: the public_key/secret_key "
            f"arguments (not given), the {RESOURCE_KEY!r} resource (not registered), and the "
            f"environment ({', '.join(unset)} not set)."
        )
    chosen = host or stored_host or env("LANGFUSE_BASE_URL") or env("LANGFUSE_HOST")
    return LangfuseCredentials(pk, sk, (chosen or DEFAULT_HOST).rstrip("/"), source)


def _resource() -> tuple[str, str, str | None, str] | None:
    """The keys of the ``langfuse:default`` resource, or ``None`` if it is not available."""
    try:
        from hush.providers.resources import get_registry

        registry = get_registry()
        if not registry.has(RESOURCE_KEY):
            return None
        config: Any = registry.get(RESOURCE_KEY)
        public_key = getattr(config, "public_key", None)
        secret: Any = getattr(config, "secret_key", None)
        secret_key = secret.get_secret_value() if hasattr(secret, "get_secret_value") else secret
        host = getattr(config, "host", None)
    except Exception:
        logger.warning(
            "could not read the %s resource; ignoring it",
            RESOURCE_KEY,
            exc_info=True,
        )
        return None
    if not (public_key and secret_key):
        logger.warning(
            "the %s resource has no public_key/secret_key; ignoring it",
            RESOURCE_KEY,
        )
        return None
    return str(public_key), str(secret_key), str(host) if host else None, f"resource {RESOURCE_KEY}"


_SECRET_HEADER = re.compile(r"auth|key|token|secret|password|team", re.IGNORECASE)


def register_header_secrets(headers: Mapping[str, str] | None, *, what: str) -> None:
    """Redact the values of secret-looking ``headers`` (and their token after a scheme such as
    ``Bearer``) from every text hush keeps or logs."""
    for name, value in (headers or {}).items():
        if _SECRET_HEADER.search(name) and "public" not in name.lower():
            register_secret(value, what=f"{what} {name}")
            scheme, _, token = value.partition(" ")
            if token and scheme.isalpha():
                register_secret(token, what=f"{what} {name}")
