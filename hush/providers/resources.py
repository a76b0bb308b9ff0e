"""Resource configuration: the process-wide registry of resources by ``category:name`` key.

A resource file maps ``category:name`` keys to settings::

    llm:gpt-4o-mini:
      base_url: https://api.openai.com/v1
      api_key: ${OPENAI_API_KEY}
      model: gpt-4o-mini
      rpm: 5000

How the file is found and read is :mod:`hush.providers.resource_file`; the settings
of each category are the models of :mod:`hush.providers.resource_models` (re-exported
here). Secrets are ``SecretStr`` and never shown.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from hush.providers.errors import ResourceError
from hush.providers.resource_file import (
    CODE_SOURCE,
    CONFIG_ENV,
    CONFIG_FILENAMES,
    find_file,
    read_file,
    register_secrets,
    validate,
)
from hush.providers.resource_models import (
    CATEGORIES,
    CATEGORY_ALIASES,
    EmbeddingResource,
    LangfuseResource,
    LLMResource,
    RerankResource,
    Resource,
    normalize_key,
)

__all__ = [
    "CATEGORIES",
    "CATEGORY_ALIASES",
    "CONFIG_ENV",
    "CONFIG_FILENAMES",
    "EmbeddingResource",
    "LLMResource",
    "LangfuseResource",
    "RerankResource",
    "Resource",
    "ResourceRegistry",
    "get_registry",
    "normalize_key",
]

logger = logging.getLogger(__name__)

_R = TypeVar("_R", LLMResource, LangfuseResource)


class ResourceRegistry:
    """Resources by ``category:name`` key, from a YAML file and from code.

    The file is read lazily on first use (and again on :meth:`reload`). Entries
    registered in code take precedence over the file and survive a reload.
    """

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, discover: bool = True
    ) -> None:
        """Read ``path`` if given, else (with ``discover``) find the file as described above;
        ``discover=False`` without a path makes a registry for code registrations only."""
        self._explicit = Path(path) if path is not None else None
        self._discovering = discover
        self._lock = threading.RLock()
        self._loaded = False
        self._raw: dict[str, Any] = {}
        self._resolved: dict[str, Resource] = {}
        self._registered: dict[str, Resource] = {}
        self._source: Path | None = None
        self._searched: list[Path] = []

    @property
    def source(self) -> Path | None:
        """The file the entries were read from, or ``None``."""
        self._ensure_loaded()
        return self._source

    @property
    def searched_paths(self) -> list[Path]:
        """Every place looked at for a resource file, in order."""
        self._ensure_loaded()
        return list(self._searched)

    # ---- loading -------------------------------------------------------------------

    def reload(self) -> None:
        """Find and read the resource file again (code registrations are kept)."""
        with self._lock:
            self._loaded = False
            self._ensure_loaded()

    def _ensure_loaded(self) -> None:
        with self._lock:
            if self._loaded:
                return
            self._searched = []
            self._source = find_file(self._explicit, self._discovering, self._searched)
            raw = read_file(self._source) if self._source is not None else {}
            self._raw = raw
            self._resolved = {}
            self._loaded = True
            if self._source is not None:
                logger.debug("loaded %d resources from %s", len(raw), self._source)

    # ---- registration --------------------------------------------------------------

    def register(self, key: str, config: Resource | Mapping[str, Any]) -> Resource:
        """Add or replace a resource; a mapping is validated (and ``${VAR}`` substituted) now."""
        key = normalize_key(key)
        category = key.partition(":")[0]
        model = CATEGORIES[category]
        if isinstance(config, BaseModel):
            if not isinstance(config, model):
                raise ResourceError(
                    f"{key}: expected a {model.__name__} for category '{category}', "
                    f"got {type(config).__name__}"
                )
            resource: Resource = config
        elif isinstance(config, Mapping):
            resource = validate(key, config, CODE_SOURCE)
        else:
            raise ResourceError(
                f"{key}: a resource is a {model.__name__} or a mapping, got {type(config).__name__}"
            )
        register_secrets(key, resource)
        with self._lock:
            self._registered[key] = resource
        return resource

    def unregister(self, key: str) -> None:
        """Forget a resource registered in code (a no-op for unknown keys)."""
        with self._lock:
            self._registered.pop(normalize_key(key), None)

    # ---- lookup --------------------------------------------------------------------

    def keys(self) -> list[str]:
        """Every known key, sorted."""
        self._ensure_loaded()
        with self._lock:
            return sorted({*self._raw, *self._registered})

    def has(self, key: str) -> bool:
        """Whether ``key`` names a known resource (without validating it)."""
        return normalize_key(key) in self.keys()

    def get(self, key: str) -> Resource:
        """The validated resource for ``key`` (``"name"`` alone means ``"llm:name"``)."""
        key = normalize_key(key)
        self._ensure_loaded()
        with self._lock:
            if key in self._registered:
                return self._registered[key]
            if key in self._resolved:
                return self._resolved[key]
            if key not in self._raw:
                raise ResourceError(self._unknown_message(key))
            source = str(self._source) if self._source is not None else CODE_SOURCE
            resource = validate(key, self._raw[key], source)
            self._resolved[key] = resource
            return resource

    def get_llm(self, key: str) -> LLMResource:
        """The :class:`LLMResource` for ``key`` (``"gpt-4o-mini"`` means ``"llm:gpt-4o-mini"``)."""
        return self._typed(normalize_key(key), LLMResource)

    def get_embedding(self, key: str) -> EmbeddingResource:
        """The :class:`EmbeddingResource` for ``key`` (``"name"`` means ``"embedding:name"``)."""
        resource = self._typed(normalize_key(key, "embedding"), LLMResource)
        if not isinstance(resource, EmbeddingResource):
            raise ResourceError(f"{normalize_key(key, 'embedding')} is not an embedding resource")
        return resource

    def get_rerank(self, key: str) -> RerankResource:
        """The :class:`RerankResource` for ``key`` (``"name"`` means ``"rerank:name"``)."""
        resource = self._typed(normalize_key(key, "rerank"), LLMResource)
        if not isinstance(resource, RerankResource):
            raise ResourceError(f"{normalize_key(key, 'rerank')} is not a rerank resource")
        return resource

    def get_langfuse(self, name: str = "default") -> LangfuseResource:
        """The :class:`LangfuseResource` for ``name`` (``"default"`` means ``"langfuse:default"``)."""
        return self._typed(normalize_key(name, "langfuse"), LangfuseResource)

    def _typed(self, key: str, model: type[_R]) -> _R:
        resource = self.get(key)
        if not isinstance(resource, model):
            raise ResourceError(f"{key} is a {type(resource).__name__}, not a {model.__name__}")
        return resource

    def _unknown_message(self, key: str) -> str:
        known = ", ".join(sorted({*self._raw, *self._registered})) or "none"
        looked = ", ".join(str(p) for p in self._searched) or "nowhere"
        loaded = f"read {self._source}" if self._source is not None else "no resource file found"
        return (
            f"unknown resource '{key}'. Known resources: {known}. "
            f"Looked for a resource file (${CONFIG_ENV}, then the working directory and its "
            f"parents) in: {looked}; {loaded}. Add '{key}' to resources.yaml or register it "
            f"with get_registry().register(...)."
        )

    def __repr__(self) -> str:
        source = str(self._source) if self._source is not None else None
        return (
            f"ResourceRegistry(source={source!r}, keys={sorted({*self._raw, *self._registered})})"
        )


_registry: ResourceRegistry | None = None
_registry_lock = threading.Lock()


def get_registry() -> ResourceRegistry:
    """The process-wide registry (created on first use, file read lazily)."""
    global _registry
    with _registry_lock:
        if _registry is None:
            _registry = ResourceRegistry()
        return _registry
