"""Where LangfuseTracer finds its keys: arguments, the ``langfuse:default`` resource, the environment."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

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
    public_key: str | None = None,
    secret_key: str | None = None,
    host: str | None = None,
) -> LangfuseCredentials:
    """Find keys in the arguments, else the ``langfuse:default`` resource, else ``LANGFUSE_*``.

    The keys of a pair always come from the same place. The host is the
    argument, else the host stored with the keys, else ``LANGFUSE_BASE_URL`` /
    ``LANGFUSE_HOST``, else Langfuse Cloud.

    Raises:
        MissingCredentialsError: no source holds both keys; the message names
            every place that was looked at.
    """
    if public_key or secret_key:
        if not (public_key and secret_key):
            given, missing = (
                ("public_key", "secret_key") if public_key else ("secret_key", "public_key")
            )
            raise MissingCredentialsError(
                f"LangfuseTracer got {given} but no {missing}; pass both keys "
                "(or neither, to use the langfuse:default resource or LANGFUSE_* variables)"
            )
        return LangfuseCredentials(public_key, secret_key, _host(host, None), "arguments")

    resource = _resource()
    if resource is not None:
        pk, sk, resource_host = resource
        return LangfuseCredentials(pk, sk, _host(host, resource_host), f"resource {RESOURCE_KEY}")

    env_pk = os.environ.get("LANGFUSE_PUBLIC_KEY")
    env_sk = os.environ.get("LANGFUSE_SECRET_KEY")
    if env_pk and env_sk:
        return LangfuseCredentials(env_pk, env_sk, _host(host, None), "environment")

    missing_env = [
        name
        for name, value in (("LANGFUSE_PUBLIC_KEY", env_pk), ("LANGFUSE_SECRET_KEY", env_sk))
        if not value
    ]
    raise MissingCredentialsError(
        "LangfuseTracer found no Langfuse keys. Looked at: the public_key/secret_key "
        f"arguments (not given), the {RESOURCE_KEY!r} resource (not registered), and the "
        f"environment ({', '.join(missing_env)} not set)."
    )


def _host(explicit: str | None, stored: str | None) -> str:
    host = (
        explicit
        or stored
        or os.environ.get("LANGFUSE_BASE_URL")
        or os.environ.get("LANGFUSE_HOST")
        or DEFAULT_HOST
    )
    return host.rstrip("/")


def _resource() -> tuple[str, str, str | None] | None:
    """The keys of the ``langfuse:default`` resource, or ``None`` if it is not available."""
    try:
        from hush.providers.resources import get_registry
    except ImportError:
        return None
    try:
        registry = get_registry()
        if not registry.has(RESOURCE_KEY):
            return None
        config: Any = registry.get(RESOURCE_KEY)
        public_key = getattr(config, "public_key", None)
        secret: Any = getattr(config, "secret_key", None)
        secret_key = secret.get_secret_value() if hasattr(secret, "get_secret_value") else secret
        host = getattr(config, "host", None)
    except Exception:
        logger.warning("could not read the %s resource; ignoring it", RESOURCE_KEY, exc_info=True)
        return None
    if not (public_key and secret_key):
        logger.warning("the %s resource has no public_key/secret_key; ignoring it", RESOURCE_KEY)
        return None
    return str(public_key), str(secret_key), str(host) if host else None
