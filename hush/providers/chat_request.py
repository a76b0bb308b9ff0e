"""Request building for chat completions: the body, its token estimate and its cache key.

:func:`build` turns a call's messages, parameters, ``response_format`` and tools into
the SDK's keyword arguments for one resource: known SDK parameters as they are, the
others in ``extra_body``, the resource's ``service_tier`` unless the call set one, and
a pydantic ``response_format`` kept as the model to parse the reply into.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic

from hush.providers.attempts import Estimate
from hush.providers.cache import request_key
from hush.providers.params import is_sdk_keyword
from hush.providers.resources import LLMResource
from hush.providers.tokens import DEFAULT_COMPLETION_TOKENS, estimate_prompt_tokens

__all__ = ["ChatRequest", "build", "charged_tokens"]

ResponseFormat = type[pydantic.BaseModel] | Mapping[str, Any] | None

_RESERVED_PARAMS = frozenset({"messages", "stream"})


@dataclass(slots=True)
class ChatRequest:
    """One chat completion as the SDK is asked for it."""

    body: dict[str, Any]
    model_type: type[pydantic.BaseModel] | None
    """The pydantic model the reply is parsed into, when ``response_format`` is one."""

    def estimate(self) -> Estimate:
        """The prompt's tokens and the reply's allowance, before sending."""
        body = self.body
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        cap = max_tokens if isinstance(max_tokens, int) else None
        prompt = estimate_prompt_tokens(body["messages"], tools=body.get("tools"))
        reply = DEFAULT_COMPLETION_TOKENS if cap is None else max(0, cap)
        return Estimate(prompt, cap, prompt + reply)

    def cache_key(self) -> str:
        """The response-cache key of this request (see :func:`hush.providers.cache.request_key`)."""
        return request_key(self.body)


def build(
    resource: LLMResource,
    messages: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any] | None,
    response_format: ResponseFormat,
    tools: Sequence[Mapping[str, Any]] | None,
) -> ChatRequest:
    """The request for ``resource``; ``response_format`` may also come in ``params``."""
    params = dict(params or {})
    reserved = _RESERVED_PARAMS & params.keys()
    if reserved:
        raise TypeError(f"complete() does not take {', '.join(sorted(reserved))} in params")
    if response_format is None:
        response_format = params.pop("response_format", None)
    else:
        params.pop("response_format", None)
    if tools is not None:
        params["tools"] = list(tools)
    body: dict[str, Any] = {"model": resource.model}
    extra_body: dict[str, Any] = dict(params.pop("extra_body", None) or {})
    for name, value in params.items():
        if is_sdk_keyword(name):
            body[name] = value
        else:
            extra_body[name] = value
    if resource.service_tier is not None:
        body.setdefault("service_tier", resource.service_tier)
    if extra_body:
        body["extra_body"] = extra_body
    body["messages"] = [dict(m) for m in messages]
    model_type: type[pydantic.BaseModel] | None = None
    if isinstance(response_format, type) and issubclass(response_format, pydantic.BaseModel):
        model_type = response_format
        body["response_format"] = response_format
    elif response_format is not None:
        body["response_format"] = dict(response_format)
    return ChatRequest(body, model_type)


def charged_tokens(usage: Mapping[str, int], body: Mapping[str, Any]) -> int:
    """Tokens a provider counts against TPM: the prompt plus the larger of the reply and
    its ``max_tokens`` allowance (OpenAI reserves ``max_tokens`` and does not refund it)."""
    cap = body.get("max_completion_tokens", body.get("max_tokens"))
    n = body.get("n")
    allowance = cap * (n if isinstance(n, int) and n > 0 else 1) if isinstance(cap, int) else 0
    return usage["prompt_tokens"] + max(usage["completion_tokens"], allowance)
