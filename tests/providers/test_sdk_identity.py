"""The headers a plain request sends in the SDK's name come from the installed SDK."""

from __future__ import annotations

import importlib.metadata
import platform

from hush.providers.plain_chat import _sdk_identity, sdk_version


def test_the_version_read_from_the_metadata_header_is_the_installed_sdks() -> None:
    assert sdk_version() == importlib.metadata.version("openai")


def test_the_identity_names_the_sdk_version_and_this_platform() -> None:
    identity = _sdk_identity()
    assert identity["User-Agent"] == f"AsyncOpenAI/Python {importlib.metadata.version('openai')}"
    assert identity["X-Stainless-Runtime-Version"] == platform.python_version()
    if platform.system() == "Linux":
        assert identity["X-Stainless-OS"] == "Linux"
