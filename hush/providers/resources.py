"""Resource configuration: ``resources.yaml`` discovery, validation and the process-wide registry.

A resource file maps ``category:name`` keys to settings::

    llm:gpt-4o-mini:
      base_url: https://api.openai.com/v1
      api_key: ${OPENAI_API_KEY}
      model: gpt-4o-mini
      rpm: 5000

The file is found through ``HUSH_CONFIG`` (a file, or a directory holding one), else
the first ``resources.yaml``/``resources.yml`` in the working directory or its
parents. ``${VAR}`` and ``${VAR:-default}`` are substituted when a resource is used
(``$${`` writes a literal ``${``), so a variable that one resource needs does not
have to be set to use another. Secrets are ``SecretStr`` and never shown.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    SecretStr,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from hush.core.redaction import register_secret
from hush.providers.errors import ResourceError

__all__ = [
    "CONFIG_ENV",
    "CONFIG_FILENAMES",
    "EmbeddingResource",
    "LLMResource",
    "LangfuseResource",
    "RerankResource",
    "Resource",
    "ResourceRegistry",
    "get_registry",
]

logger = logging.getLogger(__name__)

CONFIG_ENV = "HUSH_CONFIG"
"""Environment variable naming the resource file (or a directory holding one)."""

CONFIG_FILENAMES = ("resources.yaml", "resources.yml")
"""File names looked for in the working directory and its parents."""

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
"""A finite number above zero (``.inf`` and ``.nan`` are refused)."""
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
"""A finite number, zero or more."""

_stripped_warned: set[tuple[str, str]] = set()
_stripped_lock = threading.Lock()


def _strip_credential(value: Any, info: ValidationInfo) -> Any:
    """A key without the spaces or line break pasted around it, warned about once per
    resource and field (never showing the key)."""
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not isinstance(raw, str) or raw == raw.strip():
        return value
    context = info.context if isinstance(info.context, Mapping) else {}
    where = str(context.get("resource") or (info.config or {}).get("title") or "a resource")
    field = "a value in headers" if info.field_name == "headers" else str(info.field_name)
    with _stripped_lock:
        first = (where, field) not in _stripped_warned
        _stripped_warned.add((where, field))
    if first:
        logger.warning(
            "%s: %s has spaces or a line break around it (pasted with the key?); they were removed",
            where,
            field,
        )
    return raw.strip()


Credential = Annotated[SecretStr, BeforeValidator(_strip_credential)]
"""A secret, stripped of surrounding whitespace on load."""


class LLMResource(BaseModel):
    """An OpenAI-compatible chat endpoint and the limits it is used under."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_type: Literal["openai", "azure"] = "openai"
    """``openai`` for any OpenAI-compatible server (OpenAI, vLLM, Ollama, ...); ``azure``
    for Azure OpenAI (``base_url`` is the Azure endpoint, ``model`` the deployment)."""
    base_url: str = "https://api.openai.com/v1"
    api_key: Credential | None = None
    """``None`` sends no real key (a placeholder), never one taken from the environment."""
    model: str = Field(min_length=1)
    api_version: str | None = None
    """Required for ``azure``."""
    rpm: PositiveInt | None = None
    """Requests per minute; unset means learned from the server (headers, 429s)."""
    tpm: PositiveInt | None = None
    """Tokens per minute (prompt + ``max_tokens``); unset means learned from the server."""
    max_concurrency: PositiveInt | None = None
    """Requests in flight at once (also the connection pool size); unset means 256."""
    timeout: PositiveFloat = 60.0
    """Seconds allowed for one attempt."""
    max_retries: NonNegativeInt = 6
    """Retries after the first attempt, for 429, 5xx, timeouts, connection errors and
    malformed replies."""
    backoff_base: PositiveFloat = 0.5
    """First retry delay in seconds (doubling, with jitter) when the server gives no
    ``Retry-After``."""
    backoff_max: PositiveFloat = 30.0
    """Longest retry delay in seconds when the server gives no ``Retry-After``."""
    max_retry_wait: PositiveFloat = 120.0
    """Longest ``Retry-After`` (or pause) honoured, in seconds. A server asking for more
    (a spent daily quota) fails that call at once, and calls to the resource fail at
    once until then; the run can be resumed later."""
    headers: dict[str, Credential] = Field(default_factory=dict)
    """Extra HTTP headers sent with every request (values are treated as secrets)."""
    rate_limit_headers: bool = True
    """Learn limits and remaining budget from ``x-ratelimit-*`` response headers."""
    input_cost_per_mtok: NonNegativeFloat | None = None
    """USD per million prompt tokens (with ``output_cost_per_mtok``; unset: the price table's,
    if it knows the model at this endpoint, else calls cost ``None``)."""
    output_cost_per_mtok: NonNegativeFloat | None = None
    """USD per million completion tokens."""
    cached_input_cost_per_mtok: NonNegativeFloat | None = None
    """USD per million prompt tokens served from the provider's prompt cache (default: the
    input price)."""
    service_tier: str | None = None
    """Sent as ``service_tier`` with every call (for instance ``flex``: batch prices,
    synchronous, slower); a call's own ``service_tier`` parameter wins."""
    service_tier_fallback: bool = False
    """When the provider answers a call sent at a ``service_tier`` with a 429 saying that
    tier's capacity is unavailable, send it again at once without ``service_tier`` (the
    standard tier, at its price)."""
    batch_fallback: Literal["fail", "sync"] = "fail"
    """Batch API: when a batch fails or expires, fail its calls or send them synchronously."""
    batch_window: PositiveFloat = 2.0
    """Batch API (``LLMNode(batch=True)``): seconds without a new call before the collected
    calls are submitted."""
    batch_poll_interval: PositiveFloat = 30.0
    """Batch API: first seconds between polls of a batch (growing with its age)."""
    batch_input_cost_per_mtok: NonNegativeFloat | None = None
    """Batch API price per million prompt tokens (unset: half the input price)."""
    batch_output_cost_per_mtok: NonNegativeFloat | None = None
    """Batch API price per million completion tokens (unset: half the output price)."""

    @model_validator(mode="after")
    def _azure_needs_version(self) -> LLMResource:
        if self.api_type == "azure" and not self.api_version:
            raise ValueError("api_version is required when api_type is 'azure'")
        return self

    @model_validator(mode="after")
    def _prices_come_in_pairs(self) -> LLMResource:
        given = [self.input_cost_per_mtok is not None, self.output_cost_per_mtok is not None]
        if any(given) and not all(given):
            raise ValueError("set both input_cost_per_mtok and output_cost_per_mtok, or neither")
        if self.cached_input_cost_per_mtok is not None and not all(given):
            raise ValueError(
                "cached_input_cost_per_mtok needs input_cost_per_mtok and output_cost_per_mtok"
            )
        return self


class LangfuseResource(BaseModel):
    """Langfuse credentials (``langfuse:default`` is the tracer's default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    public_key: Annotated[str, BeforeValidator(_strip_credential), Field(min_length=1)]
    secret_key: Credential
    host: str = "https://cloud.langfuse.com"


class _InputPriced(LLMResource):
    """A resource billed for input tokens only: ``input_cost_per_mtok`` alone is its price."""

    @model_validator(mode="before")
    @classmethod
    def _output_price_is_zero(cls, data: Any) -> Any:
        if (
            isinstance(data, Mapping)
            and data.get("input_cost_per_mtok") is not None
            and data.get("output_cost_per_mtok") is None
        ):
            return {**data, "output_cost_per_mtok": 0.0}
        return data


class EmbeddingResource(_InputPriced):
    """An OpenAI-compatible ``/embeddings`` endpoint (OpenAI, vLLM, TEI, Ollama), with the
    same limits, retries and prices (per million input tokens) as an LLM resource."""

    batch_size: PositiveInt = 64
    """Texts sent in one request."""


class RerankResource(_InputPriced):
    """A rerank endpoint (Jina, Cohere v2, TEI, vLLM): requests go to ``{base_url}/rerank``."""

    base_url: str = Field(min_length=1)


Resource = LLMResource | LangfuseResource

CATEGORIES: dict[str, type[LLMResource] | type[LangfuseResource]] = {
    "llm": LLMResource,
    "langfuse": LangfuseResource,
    "embedding": EmbeddingResource,
    "rerank": RerankResource,
}
"""Known key categories and the model validating each."""

CATEGORY_ALIASES = {"reranking": "rerank", "embeddings": "embedding"}
"""Other spellings of a category (upstream Hush writes ``reranking:``)."""

_R = TypeVar("_R", LLMResource, LangfuseResource)

_ENV_PATTERN = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_CODE_SOURCE = "registered in code"


def normalize_key(key: str, default_category: str = "llm") -> str:
    """``"gpt-4o-mini"`` → ``"llm:gpt-4o-mini"``; a key with a known category is kept."""
    category, sep, name = key.partition(":")
    category = CATEGORY_ALIASES.get(category, category)
    if sep and category in CATEGORIES and name:
        return f"{category}:{name}"
    return f"{default_category}:{key}"


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
            self._source = self._discover()
            raw = _read_file(self._source) if self._source is not None else {}
            self._raw = raw
            self._resolved = {}
            self._loaded = True
            if self._source is not None:
                logger.debug("loaded %d resources from %s", len(raw), self._source)

    def _discover(self) -> Path | None:
        self._searched = []
        if self._explicit is not None:
            return self._candidate(self._explicit, origin="path given")
        if not self._discovering:
            return None
        env = os.environ.get(CONFIG_ENV)
        if env:
            return self._candidate(Path(env).expanduser(), origin=f"${CONFIG_ENV}")
        for directory in (Path.cwd(), *Path.cwd().parents):
            for name in CONFIG_FILENAMES:
                path = directory / name
                self._searched.append(path)
                if path.is_file():
                    return path
        return None

    def _candidate(self, path: Path, origin: str) -> Path:
        if path.is_dir():
            for name in CONFIG_FILENAMES:
                self._searched.append(path / name)
                if (path / name).is_file():
                    return path / name
            raise ResourceError(
                f"{origin} points to the directory {path}, which holds no "
                f"{' or '.join(CONFIG_FILENAMES)}"
            )
        self._searched.append(path)
        if not path.is_file():
            raise ResourceError(f"{origin} points to {path}, which does not exist")
        return path

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
            resource = _validate(key, config, _CODE_SOURCE)
        else:
            raise ResourceError(
                f"{key}: a resource is a {model.__name__} or a mapping, got {type(config).__name__}"
            )
        _register_secrets(key, resource)
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
            source = str(self._source) if self._source is not None else _CODE_SOURCE
            resource = _validate(key, self._raw[key], source)
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


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ResourceError(f"{path}: cannot read resource file: {exc.strerror}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ResourceError(f"{path}: invalid YAML: {_yaml_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ResourceError(
            f"{path}: expected a mapping of 'category:name' keys to settings at the top level, "
            f"got {type(data).__name__}"
        )
    entries: dict[str, Any] = {}
    for key, value in data.items():
        category, sep, name = str(key).partition(":")
        category = CATEGORY_ALIASES.get(category, category)
        if not sep or not name:
            raise ResourceError(
                f"{path}: key '{key}' must be 'category:name' with category one of "
                f"{', '.join(CATEGORIES)} (e.g. 'llm:gpt-4o-mini')"
            )
        if category not in CATEGORIES:
            logger.warning(
                "%s: '%s' is ignored: hush knows the categories %s",
                path,
                key,
                ", ".join(CATEGORIES),
            )
            continue
        if not isinstance(value, dict):
            raise ResourceError(
                f"{path}: {key}: expected a mapping of settings, got {type(value).__name__}"
            )
        entries[f"{category}:{name}"] = value
    return entries


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        return f"{exc.problem} at {where}" + (f" ({exc.context})" if exc.context else "")
    return str(exc)


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML loader that rejects a key written twice in one mapping."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def _validate(key: str, settings: Mapping[str, Any], source: str) -> Resource:
    model = CATEGORIES[key.partition(":")[0]]
    data = _substitute(dict(settings), key, source, field=None)
    try:
        resource: Resource = model.model_validate(data, context={"resource": key})
    except ValidationError as exc:
        problems = "; ".join(
            f"field '{'.'.join(str(p) for p in err['loc']) or '(entry)'}': {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False)
        )
        raise ResourceError(f"{source}: {key}: {problems}") from None
    _register_secrets(key, resource)
    return resource


def _register_secrets(key: str, resource: Resource) -> None:
    """Make the resource's secrets redacted from every text hush keeps."""
    if isinstance(resource, LLMResource):
        if resource.api_key is not None:
            register_secret(resource.api_key.get_secret_value(), what=f"{key}: api_key")
        for name, value in resource.headers.items():
            register_secret(value.get_secret_value(), what=f"{key}: header {name}")
    else:
        register_secret(resource.secret_key.get_secret_value(), what=f"{key}: secret_key")


def _substitute(value: Any, key: str, source: str, field: str | None) -> Any:
    """Replace ``${VAR}``/``${VAR:-default}`` in every string inside ``value``."""
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            name, default = match.group(1), match.group(2)
            found = os.environ.get(name)
            if found is not None and (found or default is None):
                return found
            if default is not None:
                return default
            raise ResourceError(
                f"{source}: {key}: environment variable '{name}' is not set "
                f"(needed by field '{field}')"
            )

        return _ENV_PATTERN.sub(replace, value)
    if isinstance(value, dict):
        return {k: _substitute(v, key, source, field or str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, key, source, field) for v in value]
    return value


_registry: ResourceRegistry | None = None
_registry_lock = threading.Lock()


def get_registry() -> ResourceRegistry:
    """The process-wide registry (created on first use, file read lazily)."""
    global _registry
    with _registry_lock:
        if _registry is None:
            _registry = ResourceRegistry()
        return _registry
