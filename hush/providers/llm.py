"""``LLMNode``: one chat completion through a configured resource, with fallback."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from hush.core.errors import GraphDefinitionError, NodeValueError
from hush.core.events import LLMCall
from hush.core.nodes.base import BaseNode
from hush.core.policies import RetryPolicy
from hush.core.redaction import redact
from hush.providers.balance import Balancer, check_weights, pool_keys
from hush.providers.params import check_params

if TYPE_CHECKING:
    from hush.core.call import NodeCall
    from hush.providers.client import LLMResult

_OWN_INPUTS = ("messages",)
_OUTPUT_KEYS = frozenset(
    {
        "content",
        "usage",
        "model",
        "finish_reason",
        "tool_calls",
        "parsed",
        "latency",
        "queued",
        "cost",
        "cached",
        "resource",
        "error",
    }
)


class LLMNode(BaseNode):
    """Sends ``inputs["messages"]`` to the resource ``resource_key``.

    Outputs ``content``, ``usage`` (prompt/completion/total tokens), ``model``,
    ``finish_reason``, ``tool_calls``, ``latency`` (seconds the requests took, retries
    included), ``queued`` (seconds waiting for the budget and the rate limiter),
    ``parsed`` (an instance of ``response_format`` when a
    pydantic model is given), ``cost`` (USD, ``None`` when the resource has no
    price) and ``cached`` (answered from the run's response cache; ``cache=False``
    opts the node out of it). Generation parameters
    (``temperature``, ``max_tokens``, ...) are keyword arguments or extra
    inputs; an unknown one is a :class:`GraphDefinitionError` naming the closest
    known name (see :mod:`hush.providers.params`), and ``extra_body={...}`` sends
    provider-specific fields. ``fallback`` (one resource key or a list) names other
    resources tried in order when this one fails after its retries. Rate limits
    come from the resource's configuration. A list ``resource_key`` (with optional
    ``weights``) spreads calls over those resources (see :mod:`hush.providers.balance`);
    the ``resource`` output names the one that answered.

    Retries never multiply: the client owns transport retries, and ``retry=N``
    makes one call send at most ``N`` requests (instead of the resource's
    ``max_retries + 1``), retrying only what it classes as transient (429, 5xx,
    timeouts, connection errors, malformed replies; never another 4xx). The node
    lifecycle retries the node for other errors its policy names (a reply not
    matching ``response_format`` under a ``retry_if`` that says so), never a call
    whose transport retries ran out. ``timeout`` bounds each request once it is
    sent (instead of the resource's ``timeout``), not the wait for the rate limiter.

    With ``stream=True`` the reply is streamed (usage requested in the stream):
    each piece of content is a ``token`` event for :meth:`Hush.stream
    <hush.core.engine.Hush.stream>` and tracers, the outputs are the same as
    without streaming, and the time to the first token is recorded on the LLM
    call's trace. A pydantic ``response_format`` cannot be streamed.
    """

    kind = "llm"
    trace_kind = "llm"

    def __init__(
        self,
        name: str,
        *,
        resource_key: str | Sequence[str],
        inputs: Mapping[str, Any],
        outputs: Mapping[str, Any] | None = None,
        fallback: str | Sequence[str] | None = None,
        weights: Sequence[float] | None = None,
        response_format: type[BaseModel] | Mapping[str, Any] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        retry: int | RetryPolicy | dict[str, Any] | None = None,
        timeout: float | None = None,
        stream: bool = False,
        cache: bool = True,
        batch: bool = False,
        **params: Any,
    ) -> None:
        try:
            pool = pool_keys(resource_key)
            self.pool = Balancer(pool, check_weights(pool, weights)) if len(pool) > 1 else None
        except ValueError as exc:
            raise GraphDefinitionError(f"LLMNode '{name}': {exc}") from None
        if weights is not None and self.pool is None:
            raise GraphDefinitionError(
                f"LLMNode '{name}': weights need a list of resource_key to spread calls over"
            )
        for flag, value in (("stream", stream), ("cache", cache), ("batch", batch)):
            if not isinstance(value, bool):
                raise GraphDefinitionError(f"LLMNode '{name}': {flag} must be True or False")
        if stream and isinstance(response_format, type):
            raise GraphDefinitionError(
                f"LLMNode '{name}': stream=True cannot be combined with a pydantic "
                "response_format (the reply is parsed once it is complete)"
            )
        if batch and stream:
            raise GraphDefinitionError(
                f"LLMNode '{name}': batch=True cannot be combined with stream=True "
                "(Batch API answers arrive whole)"
            )
        self.stream = stream
        self.cache = cache
        self.batch = batch
        self.resource_key = pool[0]
        self.fallback = _fallback_keys(name, fallback)
        self.response_format = _response_format(name, response_format)
        self.tools = _tools(name, tools)
        self.params = params
        super().__init__(name, inputs=inputs, outputs=outputs, retry=retry, timeout=timeout)
        if "messages" not in self.inputs:
            raise GraphDefinitionError(f"LLMNode '{name}': inputs need 'messages'")
        check_params(name, params, (key for key in self.inputs if key not in _OWN_INPUTS))

    def times_itself(self) -> bool:
        """The timeout bounds each request (the client applies it), not the node."""
        return True

    def output_keys(self) -> frozenset[str] | None:
        """What one completion produces."""
        return _OUTPUT_KEYS

    @property
    def resource_keys(self) -> list[str]:
        """The resource (or pool) and its fallbacks."""
        pool = self.pool.keys if self.pool is not None else [self.resource_key]
        return [*pool, *self.fallback]

    def check(self) -> list[str]:
        """Every resource key must be configured."""
        from hush.providers.errors import ResourceError
        from hush.providers.resources import get_registry

        problems = []
        registry = get_registry()
        for key in self.resource_keys:
            try:
                registry.get_llm(key)
            except ResourceError as exc:
                problems.append(str(exc))
        return problems

    def describe_options(self) -> dict[str, Any]:
        """Resources (and the models they name), generation parameters, format and tools."""
        from hush.providers.errors import ResourceError
        from hush.providers.resources import get_registry

        models: list[str | None] = []
        for key in self.resource_keys:
            try:
                models.append(get_registry().get_llm(key).model)
            except ResourceError:
                models.append(None)
        return {
            "resources": self.resource_keys,
            "models": models,
            "params": dict(sorted(self.params.items())),
            "response_format": self.response_format,
            "tools": self.tools,
        }

    async def run(self, inputs: dict[str, Any], call: NodeCall) -> Mapping[str, Any] | None:
        """Call the model (through the limiter, with retries and fallback)."""
        from hush.providers.clients import complete

        messages = inputs["messages"]
        if not isinstance(messages, list) or not messages:
            raise NodeValueError(
                f"LLMNode '{self.name}': messages must be a non-empty list of chat messages, "
                f"got {type(messages).__name__}"
            )
        params = {**self.params, **{k: v for k, v in inputs.items() if k not in _OWN_INPUTS}}
        started = time.time()
        try:
            keys = self.resource_keys if self.pool is None else [*self.pool.order(), *self.fallback]
            result = await (
                _batch_complete(keys[0], messages, params, self.response_format, self.tools)
                if self.batch
                else complete(
                    keys,
                    messages,
                    params=params,
                    response_format=self.response_format,
                    tools=self.tools,
                    attempts=call.retry.attempts if call.retry is not None else None,
                    timeout=call.timeout,
                    on_token=call.token if self.stream else None,
                    cache=self.cache,
                )
            )
        except BaseException as exc:
            call.attempt = max(1, getattr(exc, "attempts", 1))
            if call.observed:
                call.llm_call(self._failed_call(messages, params, started, exc, call.attempt))
            raise
        call.attempt = result.attempts
        if call.observed:
            call.llm_call(self._finished_call(messages, params, started, result))
        return {
            "content": result.content,
            "usage": result.usage,
            "model": result.model,
            "finish_reason": result.finish_reason,
            "tool_calls": result.tool_calls,
            "parsed": result.parsed,
            "latency": result.latency_s,
            "queued": result.queued_s,
            "cost": result.cost,
            "cached": result.cached,
            "resource": result.resource_key,
        }

    def _finished_call(
        self, messages: Any, params: dict[str, Any], started: float, result: LLMResult
    ) -> LLMCall:
        first = result.first_token_s
        params = self._traced_params(params)
        return LLMCall(
            model=self._model_of(result.resource_key),
            messages=messages,
            params=params,
            started=started,
            ended=started + result.queued_s + result.latency_s,
            first_token=None if first is None else started + first,
            response_model=result.model,
            output=_reply_of(result),
            usage=result.usage,
            finish_reason=result.finish_reason,
            resource=result.resource_key,
            attempts=result.attempts,
            cost=result.cost,
            cached=result.cached,
            batch_id=result.batch_id,
        )

    def _failed_call(
        self,
        messages: Any,
        params: dict[str, Any],
        started: float,
        exc: BaseException,
        attempts: int,
    ) -> LLMCall:
        resource = getattr(exc, "resource_key", None) or self.resource_key
        return LLMCall(
            model=self._model_of(resource),
            messages=messages,
            params=self._traced_params(params),
            started=started,
            ended=time.time(),
            resource=resource,
            attempts=attempts,
            error=f"{type(exc).__name__}: {redact(str(exc))}",
        )

    def _traced_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """The parameters a trace shows: the call's, with the tools offered."""
        return {**params, "tools": self.tools} if self.tools else params

    def _model_of(self, key: str) -> str:
        from hush.providers.errors import ResourceError
        from hush.providers.resources import get_registry

        try:
            return get_registry().get_llm(key).model
        except ResourceError:
            return key


def _reply_of(result: LLMResult) -> Any:
    """What a trace shows as the reply: the parsed model, the text, or, for a tool-call
    reply, the assistant message with its tool calls."""
    if result.parsed is not None:
        return result.parsed
    if result.tool_calls:
        return {"role": "assistant", "content": result.content, "tool_calls": result.tool_calls}
    return result.content


def _fallback_keys(node: str, fallback: str | Sequence[str] | None) -> list[str]:
    """``fallback`` as a list of resource keys (one string is one key)."""
    if fallback is None:
        return []
    keys = [fallback] if isinstance(fallback, str) else fallback
    if not isinstance(keys, Sequence):
        raise GraphDefinitionError(
            f"LLMNode '{node}': fallback must be a resource key or a list of them, "
            f"got {type(fallback).__name__}"
        )
    for key in keys:
        if not isinstance(key, str) or not key:
            raise GraphDefinitionError(
                f"LLMNode '{node}': fallback resource keys are non-empty strings, got {key!r}"
            )
    return list(keys)


def _response_format(node: str, value: object) -> type[BaseModel] | Mapping[str, Any] | None:
    """A pydantic model class, an OpenAI ``response_format`` dict, or ``None``."""
    if value is None or (isinstance(value, type) and issubclass(value, BaseModel)):
        return value
    if isinstance(value, Mapping):
        if not isinstance(value.get("type"), str):
            raise GraphDefinitionError(
                f"LLMNode '{node}': a response_format dict needs a 'type' "
                f"('json_object' or 'json_schema'), got {value!r}"
            )
        return value
    if isinstance(value, BaseModel):
        raise GraphDefinitionError(
            f"LLMNode '{node}': response_format is an instance of {type(value).__name__}; "
            "pass the class itself"
        )
    raise GraphDefinitionError(
        f"LLMNode '{node}': response_format must be a pydantic model class or a dict "
        f"like {{'type': 'json_object'}}, got {type(value).__name__} {value!r}"
    )


def _tools(node: str, tools: object) -> list[Mapping[str, Any]] | None:
    """``tools`` as a list of tool dicts, or ``None``."""
    if tools is None:
        return None
    if isinstance(tools, str | bytes | Mapping) or not isinstance(tools, Sequence):
        raise GraphDefinitionError(
            f"LLMNode '{node}': tools must be a list of tool dicts, got {type(tools).__name__}"
        )
    for i, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            raise GraphDefinitionError(
                f"LLMNode '{node}': tool {i} must be a dict, got {type(tool).__name__} {tool!r}"
            )
    return list(tools) or None


async def _batch_complete(*args: Any) -> LLMResult:
    """:func:`hush.providers.batch_api.batch_complete`, imported by the first node that uses it."""
    from hush.providers.batch_api import batch_complete

    return await batch_complete(*args)
