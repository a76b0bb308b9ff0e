"""Estimate a chat request's tokens before it is sent, for the tokens-per-minute limiter.

The estimate is corrected afterwards by the ``usage`` the server returns, so it only
has to be close. ``tiktoken`` is used when it is installed *and* its encoding loads
(it downloads encodings on first use): it is loaded once per process in a
background thread, and nothing waits for it. Until it is ready, or without it,
text counts one token per :data:`CHARS_PER_TOKEN` characters (rounded up), which is
close for English and generous for code; every message adds
:data:`MESSAGE_OVERHEAD` tokens and the reply priming :data:`REPLY_OVERHEAD`, as in
OpenAI's own accounting. Like OpenAI's limiter, a request also counts its
``max_tokens`` (or :data:`DEFAULT_COMPLETION_TOKENS` when it sets none).
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_COMPLETION_TOKENS",
    "count_text_tokens",
    "estimate_prompt_tokens",
    "estimate_request_tokens",
    "tokenizer_name",
]

logger = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4
REPLY_OVERHEAD = 3
IMAGE_TOKENS = 85
"""Flat charge for an image part (OpenAI's low-detail cost)."""
DEFAULT_COMPLETION_TOKENS = 256
"""Reply tokens reserved when a request sets no ``max_tokens``; refunded on ``usage``."""
TIKTOKEN_ENCODING = "o200k_base"


_encoder: Callable[[str], int] | None = None
_loading: threading.Thread | None = None
_loading_lock = threading.Lock()


def _tiktoken_encoder() -> Callable[[str], int] | None:
    """tiktoken's encoder once it has loaded; ``None`` until then (or if it cannot load).

    The first call starts loading it in a daemon thread and returns at once, so no
    caller (the event loop least of all) ever waits for it; estimates use the
    character count until it is ready.
    """
    global _loading
    if _encoder is None and _loading is None:
        with _loading_lock:
            if _loading is None:
                _loading = threading.Thread(target=_load, name="hush-tiktoken-load", daemon=True)
                _loading.start()
    return _encoder


def _load() -> None:
    global _encoder
    try:
        import tiktoken
    except ImportError:
        logger.debug("tiktoken not installed; estimating %d chars per token", CHARS_PER_TOKEN)
        return
    try:
        encoding = tiktoken.get_encoding(TIKTOKEN_ENCODING)
    except Exception as exc:
        logger.debug("tiktoken encoding %s unavailable (%s); estimating", TIKTOKEN_ENCODING, exc)
        return
    _encoder = lambda text: len(encoding.encode(text, disallowed_special=()))  # noqa: E731


def tokenizer_name() -> str:
    """``"tiktoken:o200k_base"`` when tiktoken is used, else ``"estimate"``."""
    return f"tiktoken:{TIKTOKEN_ENCODING}" if _tiktoken_encoder() is not None else "estimate"


def count_text_tokens(text: str) -> int:
    """Tokens in ``text`` (tiktoken when available, else ``ceil(len / 4)``)."""
    if not text:
        return 0
    encoder = _tiktoken_encoder()
    if encoder is not None:
        return encoder(text)
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _content_tokens(content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return count_text_tokens(content)
    if isinstance(content, Iterable) and not isinstance(content, bytes | Mapping):
        total = 0
        for part in content:
            if isinstance(part, Mapping) and part.get("type") in ("image_url", "input_image"):
                total += IMAGE_TOKENS
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                total += count_text_tokens(part["text"])
            else:
                total += _json_tokens(part)
        return total
    return _json_tokens(content)


def _json_tokens(value: Any) -> int:
    return count_text_tokens(json.dumps(value, default=str, ensure_ascii=False))


def estimate_prompt_tokens(
    messages: Sequence[Mapping[str, Any]], *, tools: Sequence[Any] | None = None
) -> int:
    """Tokens the messages (and tool definitions) add to the prompt."""
    total = REPLY_OVERHEAD
    for message in messages:
        total += MESSAGE_OVERHEAD + _content_tokens(message.get("content"))
        name = message.get("name")
        if isinstance(name, str):
            total += count_text_tokens(name)
        if message.get("tool_calls"):
            total += _json_tokens(message["tool_calls"])
    if tools:
        total += _json_tokens(list(tools))
    return total


def estimate_request_tokens(
    messages: Sequence[Mapping[str, Any]],
    *,
    max_tokens: int | None = None,
    tools: Sequence[Any] | None = None,
) -> int:
    """Tokens a request counts against a TPM limit: prompt plus reply allowance."""
    reply = DEFAULT_COMPLETION_TOKENS if max_tokens is None else max(0, max_tokens)
    return estimate_prompt_tokens(messages, tools=tools) + reply
