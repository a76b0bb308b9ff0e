"""Generation parameters of a batch: ``--param KEY=VALUE`` and ``--params FILE.json``.

Names are checked against the chat completions API (the installed ``openai`` SDK's
request fields, as for ``LLMNode``) before anything is sent; a misspelling gets the
closest name. Values are JSON when they parse as JSON (``0``, ``0.7``, ``true``,
``["\\n"]``), text otherwise.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hush.batch.errors import BatchUsageError
from hush.providers.params import generation_params, is_generation_param

_NOT_HERE = {
    "response_format": "use --schema FILE.json or --schema module:Model for structured answers",
    "n": "a batch writes one answer per row",
    "tools": "a batch writes text (or --schema) answers, not tool calls",
    "tool_choice": "a batch writes text (or --schema) answers, not tool calls",
    "functions": "a batch writes text (or --schema) answers, not tool calls",
    "function_call": "a batch writes text (or --schema) answers, not tool calls",
    "parallel_tool_calls": "a batch writes text (or --schema) answers, not tool calls",
}


def load_params(
    pairs: Iterable[str] = (), file: str | Path | None = None, **given: Any
) -> dict[str, Any]:
    """The parameters of ``--params FILE`` (first), then ``--param KEY=VALUE`` pairs, then
    ``given`` (options such as ``max_tokens``); later ones win. Raises
    :class:`BatchUsageError` for anything the chat API does not accept."""
    params: dict[str, Any] = {}
    if file is not None:
        params.update(_read_file(Path(file)))
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BatchUsageError(f"--param {pair!r}: write KEY=VALUE (e.g. temperature=0)")
        params[key.strip()] = _value(value)
    params.update({k: v for k, v in given.items() if v is not None})
    check_params(params)
    return params


def check_params(params: Mapping[str, Any]) -> None:
    """Every name must be a chat API parameter a batch can send."""
    for name in params:
        if name in _NOT_HERE:
            raise BatchUsageError(f"--param {name} is not accepted: {_NOT_HERE[name]}")
        if is_generation_param(name):
            continue
        accepted = generation_params() - _NOT_HERE.keys()
        close = difflib.get_close_matches(name, sorted(accepted), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise BatchUsageError(
            f"unknown --param {name}{hint} (the chat API's parameters: temperature, max_tokens, "
            "top_p, frequency_penalty, presence_penalty, seed, stop, ...; provider-specific "
            "fields go in extra_body)"
        )


def model_config(model: str, params: Mapping[str, Any]) -> str:
    """The ``model_config`` column: the model and the parameters sent, as JSON."""
    return json.dumps({"model": model, **params}, ensure_ascii=False, sort_keys=False)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _read_file(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BatchUsageError(f"--params {path}: cannot read it ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise BatchUsageError(f"--params {path}: not JSON ({exc})") from None
    if not isinstance(loaded, dict):
        raise BatchUsageError(
            f"--params {path}: must hold a JSON object of parameters, not {type(loaded).__name__}"
        )
    return loaded
