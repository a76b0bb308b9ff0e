"""``RerankNode``: documents ordered by relevance to a query, from a ``/rerank`` endpoint.

The request is the shape Jina, Cohere v2, vLLM and most hosted rerankers share:
``{"model", "query", "documents": [text, ...], "top_n"}`` posted to
``{base_url}/rerank``, answered with ``results[{index, relevance_score}]`` (a bare
list of ``{index, score}``, as TEI answers, is read too). It goes through the
resource's limiter, retries, run budget (prices per million input tokens) and
response cache.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx2

from hush.core.errors import NodeValueError
from hush.providers.attempts import Estimate, ResourceCaller
from hush.providers.cache import request_key
from hush.providers.client_scope import scoped_client
from hush.providers.connections import make_http
from hush.providers.failures import HTTPFailure, MalformedReply, http_timeout
from hush.providers.resource_node import ResourceNode
from hush.providers.resources import (
    RerankResource,
    ResourceRegistry,
    get_registry,
    normalize_key,
)
from hush.providers.spend import RunSpend
from hush.providers.spend import current as current_spend
from hush.providers.tokens import count_text_tokens

if TYPE_CHECKING:
    from hush.core.call import NodeCall

__all__ = ["RerankClient", "RerankNode", "RerankResult", "rerank"]

_Reply = tuple[list[tuple[int, float]], dict[str, int]]
"""A reply's ranking and usage."""

TEXT_KEYS = ("content", "text", "page_content")
"""Where the text of a dict document is looked for, in order."""


@dataclass(slots=True)
class RerankResult:
    """``(index, score)`` pairs best first, and what the call cost."""

    ranking: list[tuple[int, float]]
    usage: dict[str, int]
    model: str
    cost: float | None
    latency_s: float
    attempts: int
    cached: bool
    resource_key: str


class RerankClient:
    """Rerank requests to one resource over a pooled ``httpx2.AsyncClient``."""

    def __init__(self, key: str, resource: RerankResource) -> None:
        self.key = key
        self.resource = resource
        self.caller = ResourceCaller(key, resource)
        headers = {name: value.get_secret_value() for name, value in resource.headers.items()}
        if resource.api_key is not None:
            headers.setdefault("Authorization", f"Bearer {resource.api_key.get_secret_value()}")
        self.http = make_http(resource, headers)
        self.url = resource.base_url.rstrip("/") + "/rerank"

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()

    async def rerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        attempts: int | None = None,
        timeout: float | None = None,
        spend: RunSpend | None = None,
        cache: bool = True,
    ) -> RerankResult:
        """The documents' ``(index, score)`` best first (at most ``top_n``); a failure is
        an :class:`LLMCallError`."""
        body: dict[str, Any] = {
            **dict(params or {}),
            "model": self.resource.model,
            "query": query,
            "documents": list(documents),
        }
        if top_n is not None:
            body["top_n"] = top_n
        store = spend.cache if spend is not None and cache else None
        key = request_key({"operation": "rerank", **body})
        if store is not None:
            answer = store.get(key)
            ranking = _ranking(answer.get("results"), len(documents)) if answer else None
            if ranking is not None:
                assert spend is not None
                spend.answered_from_cache(self.key, self.caller.price)
                usage = {"prompt_tokens": 0, "total_tokens": 0}
                return RerankResult(
                    ranking, usage, self.resource.model, 0.0, 0.0, 0, True, self.key
                )
        tokens = count_text_tokens(query) * len(documents) + sum(
            count_text_tokens(d) for d in documents
        )
        started = time.monotonic()

        async def request(seconds: float, attempt: int) -> tuple[_Reply, Mapping[str, str]]:
            response = await self.http.post(self.url, json=body, timeout=http_timeout(seconds))
            if response.status_code >= 400:
                message, code = _error_of(response)
                raise HTTPFailure(response.status_code, response.headers, message, code)
            try:
                payload = response.json()
            except ValueError as exc:
                raise MalformedReply(f"not JSON: {response.text[:100]!r}") from exc
            ranking = _ranking(_results_of(payload), len(documents))
            if ranking is None:
                raise MalformedReply(f"no results[{{index, relevance_score}}]: {payload!r:.150}")
            return (ranking, _usage_of(payload, tokens)), response.headers

        sent = await self.caller.send(
            request,
            lambda reply: (reply[1], reply[1]["total_tokens"]),
            Estimate(tokens, 0, tokens),
            attempts=attempts,
            timeout=timeout,
            spend=spend,
        )
        ranking = sent.reply[0]
        if top_n is not None:
            ranking = ranking[:top_n]
        if store is not None:
            results = [{"index": i, "relevance_score": s} for i, s in ranking]
            store.put(key, self.resource.model, {"results": results})
        return RerankResult(
            ranking,
            sent.usage,
            self.resource.model,
            sent.cost,
            time.monotonic() - started,
            sent.attempts,
            False,
            self.key,
        )


def _results_of(payload: Any) -> Any:
    return payload if isinstance(payload, list) else payload.get("results")


def _ranking(results: Any, count: int) -> list[tuple[int, float]] | None:
    """``(index, score)`` best first from ``results``; ``None`` when they cannot be read."""
    if not isinstance(results, list):
        return None
    ranking: list[tuple[int, float]] = []
    for item in results:
        if not isinstance(item, Mapping):
            return None
        index, score = item.get("index"), item.get("relevance_score", item.get("score"))
        if not isinstance(index, int) or not 0 <= index < count:
            return None
        if not isinstance(score, int | float) or isinstance(score, bool):
            return None
        ranking.append((index, float(score)))
    ranking.sort(key=lambda pair: (-pair[1], pair[0]))
    return ranking


def _usage_of(payload: Any, estimate: int) -> dict[str, int]:
    usage = payload.get("usage") if isinstance(payload, Mapping) else None
    if isinstance(usage, Mapping):
        total = int(usage.get("total_tokens") or usage.get("prompt_tokens") or 0)
        if total > 0:
            prompt = int(usage.get("prompt_tokens") or total)
            return {"prompt_tokens": prompt, "total_tokens": total}
    return {"prompt_tokens": estimate, "total_tokens": estimate, "estimated": True}


def _error_of(response: httpx2.Response) -> tuple[str, str | None]:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase, None
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        code = error.get("code")
        return str(error.get("message") or error), code if isinstance(code, str) else None
    if isinstance(body, Mapping):
        for name in ("message", "detail", "error"):
            if body.get(name):
                return str(body[name]), None
    return json.dumps(body)[:500], None


def get_rerank_client(
    resource_key: str, *, registry: ResourceRegistry | None = None
) -> RerankClient:
    """The current scope's client for the rerank resource ``resource_key``."""
    resource = (registry or get_registry()).get_rerank(resource_key)
    key = normalize_key(resource_key, "rerank")
    return scoped_client(key, resource, lambda: RerankClient(key, resource), RerankClient)


async def rerank(
    resource_key: str,
    query: str,
    documents: Sequence[str],
    top_n: int | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    attempts: int | None = None,
    timeout: float | None = None,
    cache: bool = True,
) -> RerankResult:
    """Rerank ``documents`` for ``query`` with ``resource_key``, under the running run's
    budget and cache."""
    client = get_rerank_client(resource_key)
    return await client.rerank(
        query,
        documents,
        top_n,
        params=params,
        attempts=attempts,
        timeout=timeout,
        spend=current_spend.get(),
        cache=cache,
    )


class RerankNode(ResourceNode):
    """Orders ``inputs["documents"]`` by relevance to ``inputs["query"]``.

    Documents are strings or dicts (their text is ``content``, ``text`` or
    ``page_content``). Outputs ``reranks``: the documents best first, at most
    ``inputs["top_k"]`` of them when given, each ``{"content", "score",
    "index"}`` (a dict document keeps its other fields; ``index`` is its
    position in ``documents``), and ``usage``, ``model``, ``cost``, ``latency``
    and ``cached`` as for LLM calls. No documents give no reranks without a request.
    """

    kind = "rerank"
    trace_kind = "llm"
    operation = "rerank"
    category = "rerank"
    required_inputs = ("query", "documents")

    def output_keys(self) -> frozenset[str] | None:
        """What one call produces."""
        return frozenset({"reranks", "usage", "model", "cost", "latency", "cached", "error"})

    def get_resource(self, registry: ResourceRegistry | None = None) -> RerankResource:
        """The rerank resource ``resource_key`` names."""
        return (registry or get_registry()).get_rerank(self.resource_key)

    async def run(self, inputs: dict[str, Any], call: NodeCall) -> Mapping[str, Any] | None:
        """Send the query and the documents' texts; return the documents best first."""
        where = f"RerankNode '{self.name}'"
        query, documents, top_k = inputs["query"], inputs["documents"], inputs.get("top_k")
        if not isinstance(query, str) or not query.strip():
            raise NodeValueError(f"{where}: query must be a non-empty string, got {query!r}")
        if not isinstance(documents, list | tuple):
            raise NodeValueError(
                f"{where}: documents must be a list, got {type(documents).__name__}"
            )
        if top_k is not None and (
            not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1
        ):
            raise NodeValueError(
                f"{where}: top_k must be a positive integer or None, got {top_k!r}"
            )
        texts = [_text_of(where, i, doc) for i, doc in enumerate(documents)]
        params = {k: v for k, v in inputs.items() if k not in ("query", "documents", "top_k")}
        params = {**self.params, **params}
        if not texts:
            return {
                "reranks": [],
                "usage": {},
                "model": self.model_name(),
                "cost": 0.0,
                "latency": 0.0,
                "cached": False,
            }

        def send() -> Any:
            return rerank(
                self.resource_key,
                query,
                texts,
                top_k,
                params=params,
                attempts=call.retry.attempts if call.retry is not None else None,
                timeout=call.timeout,
                cache=self.cache,
            )

        def report(result: RerankResult) -> dict[str, Any]:
            return {
                "response_model": result.model,
                "output": [{"index": i, "score": s} for i, s in result.ranking],
                "usage": result.usage,
                "resource": result.resource_key,
                "attempts": max(1, result.attempts),
                "cost": result.cost,
                "cached": result.cached,
            }

        asked = {"query": query, "documents": texts, "top_k": top_k}
        result: RerankResult = await self.traced(call, asked, send, report)
        reranks = []
        for index, score in result.ranking:
            doc = documents[index]
            base = dict(doc) if isinstance(doc, Mapping) else {}
            reranks.append({**base, "content": texts[index], "score": score, "index": index})
        return {
            "reranks": reranks,
            "usage": result.usage,
            "model": result.model,
            "cost": result.cost,
            "latency": result.latency_s,
            "cached": result.cached,
        }


def _text_of(where: str, index: int, document: Any) -> str:
    if isinstance(document, str):
        return document
    if isinstance(document, Mapping):
        for key in TEXT_KEYS:
            if isinstance(document.get(key), str):
                return str(document[key])
        raise NodeValueError(
            f"{where}: documents[{index}] is a dict without a text field "
            f"({', '.join(TEXT_KEYS)}): keys {sorted(map(str, document))}"
        )
    raise NodeValueError(
        f"{where}: documents[{index}] must be a string or a dict, got {type(document).__name__}"
    )
