"""Where LangfuseTracer finds its keys."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator

import pytest
from pydantic import BaseModel, SecretStr

from hush.observability.credentials import MissingCredentialsError, resolve_credentials
from hush.observability.langfuse import LangfuseTracer

ENV = ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "LANGFUSE_HOST", "LANGFUSE_BASE_URL")


class LangfuseResource(BaseModel):
    public_key: str
    secret_key: SecretStr
    host: str | None = None


class FakeRegistry:
    def __init__(self, resources: dict[str, BaseModel]) -> None:
        self.resources = resources

    def has(self, key: str) -> bool:
        return key in self.resources

    def get(self, key: str) -> BaseModel:
        return self.resources[key]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    use_registry(monkeypatch, {})
    yield


def use_registry(monkeypatch: pytest.MonkeyPatch, resources: dict[str, BaseModel]) -> None:
    module = types.ModuleType("hush.providers.resources")
    registry = FakeRegistry(resources)
    module.get_registry = lambda: registry  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "hush.providers.resources", module)


def test_arguments_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-env")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-env")
    found = resolve_credentials("pk-arg", "sk-arg", "http://localhost:3000/")
    assert (found.public_key, found.secret_key, found.host) == (
        "pk-arg",
        "sk-arg",
        "http://localhost:3000",
    )
    assert found.source == "arguments"
    assert "sk-arg" not in repr(found)


def test_resource_before_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-env")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-env")
    resource = LangfuseResource(
        public_key="pk-res", secret_key=SecretStr("sk-res"), host="https://lf.internal"
    )
    use_registry(monkeypatch, {"langfuse:default": resource})
    found = resolve_credentials()
    assert (found.public_key, found.secret_key, found.host) == (
        "pk-res",
        "sk-res",
        "https://lf.internal",
    )
    assert found.source == "resource langfuse:default"


def test_environment_and_host_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-env")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-env")
    monkeypatch.setenv("LANGFUSE_HOST", "http://host-var")
    assert resolve_credentials().host == "http://host-var"
    monkeypatch.setenv("LANGFUSE_BASE_URL", "http://base-url-var")
    found = resolve_credentials()
    assert (found.public_key, found.host, found.source) == (
        "pk-env",
        "http://base-url-var",
        "environment",
    )
    monkeypatch.delenv("LANGFUSE_BASE_URL")
    monkeypatch.delenv("LANGFUSE_HOST")
    assert resolve_credentials().host == "https://cloud.langfuse.com"


def test_missing_keys_name_every_place_looked_at(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-env")
    with pytest.raises(MissingCredentialsError) as caught:
        LangfuseTracer()
    message = str(caught.value)
    assert "public_key/secret_key arguments" in message
    assert "'langfuse:default' resource" in message
    assert "LANGFUSE_SECRET_KEY not set" in message
    assert "LANGFUSE_PUBLIC_KEY" not in message.split("environment")[-1]


def test_half_a_key_pair_is_an_error() -> None:
    with pytest.raises(MissingCredentialsError, match="got public_key but no secret_key"):
        resolve_credentials("pk-only")


def test_without_a_resources_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hush.providers.resources", None)
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-env")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-env")
    assert resolve_credentials().source == "environment"


def test_broken_registry_is_ignored(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    module = types.ModuleType("hush.providers.resources")

    def get_registry() -> None:
        raise RuntimeError("config file unreadable")

    module.get_registry = get_registry  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "hush.providers.resources", module)
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-env")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-env")
    assert resolve_credentials().source == "environment"
    assert "could not read the langfuse:default resource" in caplog.text
