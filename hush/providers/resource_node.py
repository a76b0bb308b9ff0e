"""What embedding and rerank nodes share: a resource checked at build, engine-owned retry
and timeout, and one ``llm`` event (with its ``operation``) per call for tracers."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from hush.core.errors import GraphDefinitionError
from hush.core.events import LLMCall
from hush.core.nodes.base import BaseNode
from hush.core.policies import RetryPolicy
from hush.core.redaction import redact

if TYPE_CHECKING:
    from hush.core.call import NodeCall
    from hush.providers.resources import LLMResource, ResourceRegistry


class ResourceNode(BaseNode):
    """A node that sends its inputs to one configured resource (see subclasses).

    ``retry=N`` makes one call send at most ``N`` requests per batch (instead of the
    resource's ``max_retries + 1``: the client owns transport retries; the lifecycle
    retries the node only for other errors its policy names); ``timeout`` bounds each
    request once sent.
    """

    operation: ClassVar[Literal["embeddings", "rerank"]]
    category: ClassVar[str]
    required_inputs: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        name: str,
        *,
        resource_key: str,
        inputs: Mapping[str, Any],
        outputs: Mapping[str, Any] | None = None,
        retry: int | RetryPolicy | dict[str, Any] | None = None,
        timeout: float | None = None,
        cache: bool = True,
        **params: Any,
    ) -> None:
        cls = type(self).__name__
        if not isinstance(resource_key, str) or not resource_key:
            raise GraphDefinitionError(f"{cls} '{name}': resource_key must be a non-empty string")
        if not isinstance(cache, bool):
            raise GraphDefinitionError(f"{cls} '{name}': cache must be True or False")
        self.resource_key = resource_key
        self.cache = cache
        self.params = params
        super().__init__(name, inputs=inputs, outputs=outputs, retry=retry, timeout=timeout)
        missing = [key for key in self.required_inputs if key not in self.inputs]
        if missing:
            raise GraphDefinitionError(f"{cls} '{name}': inputs need {', '.join(missing)}")

    def times_itself(self) -> bool:
        """The timeout bounds each request (the client applies it), not the node."""
        return True

    @property
    def resource_keys(self) -> list[str]:
        """The node's resource as a full key (``embedding:NAME``): a run with ``max_cost``
        checks that it has a price before anything runs."""
        from hush.providers.resources import normalize_key

        return [normalize_key(self.resource_key, self.category)]

    def get_resource(self, registry: ResourceRegistry | None = None) -> LLMResource:
        """The node's resource (raises :class:`~hush.providers.errors.ResourceError`)."""
        raise NotImplementedError

    def check(self) -> list[str]:
        """The resource must be configured, and be of the node's category."""
        from hush.providers.errors import ResourceError

        try:
            self.get_resource()
        except ResourceError as exc:
            return [str(exc)]
        return []

    def describe_options(self) -> dict[str, Any]:
        """The resource (and the model it names) and the request parameters."""
        from hush.providers.errors import ResourceError

        try:
            model: str | None = self.get_resource().model
        except ResourceError:
            model = None
        return {
            "resource": self.resource_key,
            "model": model,
            "params": dict(sorted(self.params.items())),
        }

    def model_name(self) -> str:
        """The resource's model, for traces (the key when it is not configured)."""
        from hush.providers.errors import ResourceError

        try:
            return self.get_resource().model
        except ResourceError:
            return self.resource_key

    async def traced(
        self,
        call: NodeCall,
        asked: Any,
        send: Callable[[], Any],
        report: Callable[[Any], dict[str, Any]],
    ) -> Any:
        """Await ``send()``; report it to tracers as one ``llm`` event (``asked`` is the
        input shown, ``report`` turns the result into the event's fields)."""
        started = time.time()
        try:
            result = await send()
        except BaseException as exc:
            call.attempt = max(1, getattr(exc, "attempts", 1))
            if call.observed:
                call.llm_call(
                    LLMCall(
                        model=self.model_name(),
                        messages=asked,
                        params=self.params,
                        started=started,
                        ended=time.time(),
                        resource=getattr(exc, "resource_key", None) or self.resource_key,
                        attempts=call.attempt,
                        error=f"{type(exc).__name__}: {redact(str(exc))}",
                        operation=self.operation,
                    )
                )
            raise
        fields = report(result)
        call.attempt = max(1, int(fields.get("attempts", 1)))
        if call.observed:
            call.llm_call(
                LLMCall(
                    model=self.model_name(),
                    messages=asked,
                    params=self.params,
                    started=started,
                    ended=time.time(),
                    operation=self.operation,
                    **fields,
                )
            )
        return result
