"""resources.yaml discovery, env substitution, validation errors and secrets."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from hush.providers.errors import ResourceError
from hush.providers.resources import (
    LangfuseResource,
    LLMResource,
    ResourceRegistry,
    get_registry,
)

GOOD = """\
llm:gpt-4o-mini:
  base_url: https://api.openai.com/v1
  api_key: ${HUSH_TEST_KEY}
  model: gpt-4o-mini
  rpm: ${HUSH_TEST_RPM:-5000}
  tpm: 2000000
  max_in_flight: 64
llm:local:
  base_url: http://127.0.0.1:8000/v1
  model: llama3:8b
langfuse:default:
  public_key: pk-lf-1
  secret_key: ${HUSH_TEST_LF_SECRET:-sk-lf-default}
  host: http://localhost:3000
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HUSH_CONFIG", "HUSH_TEST_KEY", "HUSH_TEST_RPM", "HUSH_TEST_LF_SECRET"):
        monkeypatch.delenv(name, raising=False)


def write(path: Path, text: str = GOOD) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_hush_config_env_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path / "conf" / "my-resources.yaml")
    monkeypatch.setenv("HUSH_CONFIG", str(config))
    monkeypatch.setenv("HUSH_TEST_KEY", "sk-abc")
    registry = ResourceRegistry()
    llm = registry.get_llm("gpt-4o-mini")
    assert registry.source == config
    assert llm.model == "gpt-4o-mini"
    assert llm.rpm == 5000
    assert llm.tpm == 2_000_000
    assert llm.max_in_flight == 64
    assert llm.api_key is not None and llm.api_key.get_secret_value() == "sk-abc"


def test_hush_config_may_be_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "resources.yml")
    monkeypatch.setenv("HUSH_CONFIG", str(tmp_path))
    assert ResourceRegistry().get_llm("local").model == "llama3:8b"


def test_hush_config_pointing_nowhere_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUSH_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(ResourceError, match=r"HUSH_CONFIG points to .*missing\.yaml"):
        ResourceRegistry().keys()


def test_found_in_a_parent_of_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path / "resources.yaml")
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    registry = ResourceRegistry()
    assert registry.has("llm:local")
    assert registry.source == config
    assert registry.searched_paths[0] == nested / "resources.yaml"
    assert config in registry.searched_paths


def test_nearest_file_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "resources.yaml")
    near = write(tmp_path / "sub" / "resources.yaml", "llm:near:\n  model: m\n")
    monkeypatch.chdir(tmp_path / "sub")
    registry = ResourceRegistry()
    assert registry.source == near
    assert registry.keys() == ["llm:near"]


def test_key_without_category_means_llm(tmp_path: Path) -> None:
    registry = ResourceRegistry(write(tmp_path / "resources.yaml"))
    assert registry.get_llm("local") is registry.get("llm:local")
    assert registry.get_llm("llm:local").model == "llama3:8b"
    assert registry.has("local") and registry.has("llm:local")
    assert not registry.has("nope")


def test_langfuse_resource(tmp_path: Path) -> None:
    registry = ResourceRegistry(write(tmp_path / "resources.yaml"))
    langfuse = registry.get_langfuse()
    assert isinstance(langfuse, LangfuseResource)
    assert langfuse.public_key == "pk-lf-1"
    assert langfuse.secret_key.get_secret_value() == "sk-lf-default"
    assert registry.get("langfuse:default") is langfuse
    with pytest.raises(ResourceError, match="not a LLMResource"):
        registry.get_llm("langfuse:default")


def test_env_default_and_escape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUSH_TEST_RPM", "42")
    monkeypatch.setenv("HUSH_TEST_KEY", "k")
    path = write(
        tmp_path / "resources.yaml",
        GOOD + "llm:escaped:\n  model: 'literal-$${NOT_A_VAR}'\n",
    )
    registry = ResourceRegistry(path)
    assert registry.get_llm("gpt-4o-mini").rpm == 42
    assert registry.get_llm("escaped").model == "literal-${NOT_A_VAR}"


def test_missing_env_var_fails_only_the_resource_that_needs_it(tmp_path: Path) -> None:
    path = write(tmp_path / "resources.yaml")
    registry = ResourceRegistry(path)
    assert registry.get_llm("local").model == "llama3:8b"
    with pytest.raises(ResourceError) as caught:
        registry.get_llm("gpt-4o-mini")
    message = str(caught.value)
    assert str(path) in message
    assert "llm:gpt-4o-mini" in message
    assert "HUSH_TEST_KEY" in message
    assert "api_key" in message


def test_bad_yaml_is_one_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path / "resources.yaml", "llm:a:\n  model: [unclosed\n  rpm: 5\n")
    with pytest.raises(ResourceError) as caught:
        ResourceRegistry(path).keys()
    message = str(caught.value)
    assert message.startswith(f"{path}: invalid YAML")
    assert "line " in message
    assert caught.value.__cause__ is None


def test_bad_field_names_file_key_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path / "resources.yaml",
        "llm:a:\n  model: m\n  rpm: lots\n  rpmm: 5\nllm:b:\n  model: fine\n",
    )
    registry = ResourceRegistry(path)
    assert registry.get_llm("b").model == "fine"
    with pytest.raises(ResourceError) as caught:
        registry.get_llm("a")
    message = str(caught.value)
    assert message.startswith(f"{path}: llm:a: ")
    assert "field 'rpm'" in message and "integer" in message
    assert "field 'rpmm'" in message and "Extra inputs" in message
    assert caught.value.__cause__ is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", "expected a mapping"),
        ("gpt-4o-mini:\n  model: m\n", "key 'gpt-4o-mini' must be 'category:name'"),
        ("llm:a: just-a-string\n", "llm:a: expected a mapping of settings"),
        ("llm:a:\n  model: m\nllm:a:\n  model: n\n", "duplicate key 'llm:a'"),
    ],
)
def test_bad_file_shapes(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path / "resources.yaml", text)
    with pytest.raises(ResourceError, match=expected) as caught:
        ResourceRegistry(path).keys()
    assert str(path) in str(caught.value)


def test_azure_needs_api_version() -> None:
    registry = ResourceRegistry()
    with pytest.raises(ResourceError, match="api_version is required"):
        registry.register("llm:az", {"api_type": "azure", "model": "dep", "base_url": "https://x"})


def test_unknown_key_names_key_known_keys_and_search_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "resources.yaml")
    nested = tmp_path / "project"
    nested.mkdir()
    monkeypatch.chdir(nested)
    registry = ResourceRegistry()
    with pytest.raises(ResourceError) as caught:
        registry.get_llm("gpt-5")
    message = str(caught.value)
    assert "unknown resource 'llm:gpt-5'" in message
    assert "llm:gpt-4o-mini, llm:local, langfuse:default" in message or all(
        key in message for key in ("llm:gpt-4o-mini", "llm:local", "langfuse:default")
    )
    assert str(nested / "resources.yaml") in message
    assert str(tmp_path / "resources.yaml") in message
    assert "HUSH_CONFIG" in message


def test_register_unregister_and_precedence(tmp_path: Path) -> None:
    registry = ResourceRegistry(write(tmp_path / "resources.yaml"))
    registry.register("local", {"model": "override", "rpm": "10"})
    assert registry.get_llm("local").model == "override"
    assert registry.get_llm("local").rpm == 10
    registry.register("llm:new", LLMResource(model="x"))
    assert registry.has("new")
    registry.reload()
    assert registry.get_llm("local").model == "override"
    registry.unregister("local")
    registry.unregister("never-registered")
    assert registry.get_llm("local").model == "llama3:8b"
    with pytest.raises(ResourceError, match="rpm"):
        registry.register("llm:bad", {"model": "x", "rpm": -1})
    with pytest.raises(ResourceError, match="expected a LLMResource"):
        registry.register("llm:wrong", LangfuseResource(public_key="p", secret_key=SecretStr("s")))


def test_reload_reads_the_file_again(tmp_path: Path) -> None:
    path = write(tmp_path / "resources.yaml", "llm:a:\n  model: one\n")
    registry = ResourceRegistry(path)
    assert registry.get_llm("a").model == "one"
    write(path, "llm:a:\n  model: two\n")
    assert registry.get_llm("a").model == "one"
    registry.reload()
    assert registry.get_llm("a").model == "two"


def test_get_registry_is_a_singleton() -> None:
    assert get_registry() is get_registry()


def test_secrets_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "sk-live-SECRET-123"
    monkeypatch.setenv("HUSH_TEST_KEY", secret)
    monkeypatch.setenv("HUSH_TEST_LF_SECRET", secret + "-lf")
    registry = ResourceRegistry(write(tmp_path / "resources.yaml"))
    llm = registry.get_llm("gpt-4o-mini")
    langfuse = registry.get_langfuse()
    registry.register("llm:h", {"model": "m", "headers": {"api-key": secret}})
    shown = [
        repr(llm),
        str(llm),
        repr(langfuse),
        str(llm.model_dump()),
        llm.model_dump_json(),
        str(langfuse.model_dump(mode="json")),
        repr(registry.get_llm("h")),
        repr(registry),
    ]
    with pytest.raises(ResourceError) as caught:
        registry.register("llm:bad", {"model": "m", "api_key": secret, "rpm": "many"})
    shown.append(str(caught.value))
    with pytest.raises(ResourceError) as caught:
        registry.register("llm:bad", {"model": "m", "api_key": {"nested": secret}})
    shown.append(str(caught.value))
    shown.append(caplog.text)
    for text in shown:
        assert secret not in text


def test_registry_without_discovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "resources.yaml")
    monkeypatch.chdir(tmp_path)
    registry = ResourceRegistry(discover=False)
    assert registry.keys() == [] and registry.source is None
    with pytest.raises(ResourceError, match=r"Looked for a resource file .* in: nowhere"):
        registry.get_llm("local")


def test_the_old_max_concurrency_key_loads_with_one_warning_naming_resource_and_new_key(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "resources.yaml", "llm:old:\n  model: m\n  max_concurrency: 7\n")
    registry = ResourceRegistry(path)
    with pytest.warns(DeprecationWarning) as caught:
        resource = registry.get_llm("old")
        registry.get_llm("old")
    assert resource.max_in_flight == 7
    (warning,) = caught
    assert "llm:old" in str(warning.message) and "max_in_flight" in str(warning.message)


@pytest.mark.parametrize("category", ["llm", "embedding", "rerank"])
def test_the_old_key_registered_in_code_warns_for_every_category(category: str) -> None:
    registry = ResourceRegistry(discover=False)
    settings = {"model": "m", "base_url": "http://127.0.0.1:9/v1", "max_concurrency": 3}
    with pytest.warns(DeprecationWarning, match=f"{category}:old: 'max_concurrency'"):
        resource = registry.register(f"{category}:old", settings)
    assert isinstance(resource, LLMResource) and resource.max_in_flight == 3


def test_the_old_key_on_a_model_built_in_code_warns_and_reads_back() -> None:
    with pytest.warns(DeprecationWarning, match="LLMResource: 'max_concurrency'.*max_in_flight"):
        resource = LLMResource(model="m", max_concurrency=5)  # type: ignore[call-arg]
    assert resource.max_in_flight == 5
    with pytest.warns(DeprecationWarning, match="read max_in_flight"):
        assert resource.max_concurrency == 5


def test_both_spellings_of_the_in_flight_cap_are_an_error_naming_the_resource(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path / "resources.yaml",
        "llm:both:\n  model: m\n  max_concurrency: 4\n  max_in_flight: 8\n",
    )
    with pytest.raises(ResourceError) as caught:
        ResourceRegistry(path).get_llm("both")
    message = str(caught.value)
    assert message.startswith(f"{path}: llm:both: ")
    assert "max_concurrency and max_in_flight are both given" in message
