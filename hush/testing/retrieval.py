"""Embeddings and rerank routes of the local server: deterministic, keyless, rate-limited.

``POST /v1/embeddings`` (and ``/embeddings``) answers with hashed bag-of-words
vectors, so texts sharing words have a high cosine similarity; it honours
``dimensions`` and ``encoding_format`` (``"float"`` or ``"base64"``, the
``openai`` SDK's default). ``POST /rerank``, ``/v1/rerank`` and ``/v2/rerank``
take the Jina/Cohere v2/vLLM shape (``query``, ``documents``, ``top_n``) and
score each document by its word overlap with the query. Both share the chat
route's API key, rate limits (a request costs its input tokens), latency,
markers (``[[fail-once:500]]`` in a text) and records.
"""

from __future__ import annotations

import base64
import math
import re
import struct
import zlib
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from hush.testing.faults import BROKEN_REPLIES, parse_markers
from hush.testing.prelude import Prelude
from hush.testing.records import RequestRecord
from hush.testing.replies import count_tokens
from hush.testing.responses import cut_body

DIMENSIONS = 64
"""Length of an embedding when the request does not ask for ``dimensions``."""
MAX_INPUTS = 2048
"""Most texts in one embeddings request (OpenAI's limit)."""

_WORD = re.compile(r"\w+")
Answer = Callable[[dict[str, Any], RequestRecord, dict[str, str]], web.Response]


def words(text: str) -> list[str]:
    """Lower-cased words of ``text``."""
    return _WORD.findall(text.lower())


def embed(text: str, dimensions: int = DIMENSIONS) -> list[float]:
    """A unit vector from ``text``'s words (hashed into ``dimensions`` signed buckets)."""
    vector = [0.0] * dimensions
    for word in words(text) or [text]:
        digest = zlib.crc32(word.encode())
        vector[digest % dimensions] += 1.0 if digest & 0x8000_0000 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0.0:
        vector[0], norm = 1.0, 1.0
    return [v / norm for v in vector]


def overlap(query: str, document: str) -> float:
    """Word-set cosine of ``query`` and ``document``, in ``[0, 1]``."""
    q, d = set(words(query)), set(words(document))
    if not q or not d:
        return 0.0
    return round(len(q & d) / math.sqrt(len(q) * len(d)), 6)


def add_retrieval_routes(app: web.Application, prelude: Prelude) -> None:
    """Register the embeddings and rerank routes on ``app``, behind ``prelude``."""
    routes = _Routes(prelude)
    for path in ("/v1/embeddings", "/embeddings"):
        app.router.add_post(path, prelude.route(routes.embeddings))
    for path in ("/rerank", "/v1/rerank", "/v2/rerank"):
        app.router.add_post(path, prelude.route(routes.rerank))


class _Routes:
    """The two answers; what comes before them is the server's :class:`Prelude`."""

    def __init__(self, prelude: Prelude) -> None:
        self.prelude = prelude
        self.counter = 0

    async def embeddings(self, request: web.Request, record: RequestRecord) -> web.StreamResponse:
        return await self._answer(
            request, record, _embeddings_problem, _embeddings_text, self._embed
        )

    async def rerank(self, request: web.Request, record: RequestRecord) -> web.StreamResponse:
        return await self._answer(request, record, _rerank_problem, _rerank_text, self._rerank)

    async def _answer(
        self,
        request: web.Request,
        record: RequestRecord,
        problem_of: Callable[[Any], str | None],
        text_of: Callable[[dict[str, Any]], str],
        answer: Answer,
    ) -> web.StreamResponse:
        prelude = self.prelude
        body = await prelude.json_body(request, record, problem_of)
        text = text_of(body)
        self.counter += 1
        headers = {"x-request-id": f"req_mockr{self.counter:08d}"}
        prelude.admit(record, count_tokens(text), headers)
        markers = parse_markers(text)
        fault = await prelude.hold(body, markers, text)
        if fault is not None and fault not in BROKEN_REPLIES:
            return await prelude.answer_fault(request, record, fault, headers, markers)
        response = answer(body, record, headers)
        if fault is not None and isinstance(response.body, bytes):
            prelude.recorder.fault(record, str(fault))
            return await cut_body(request, response.body, headers)
        return response

    def _embed(
        self, body: dict[str, Any], record: RequestRecord, headers: dict[str, str]
    ) -> web.Response:
        texts = _inputs(body["input"])
        dimensions = int(body.get("dimensions") or DIMENSIONS)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = embed(text, dimensions)
            encoded: Any = (
                base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
                if as_base64
                else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(count_tokens(t) for t in texts)
        record.status = 200
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
            headers=headers,
        )

    def _rerank(
        self, body: dict[str, Any], record: RequestRecord, headers: dict[str, str]
    ) -> web.Response:
        query: str = body["query"]
        documents = [_document_text(d) for d in body["documents"]]
        order = sorted(
            ((overlap(query, doc), i) for i, doc in enumerate(documents)),
            key=lambda pair: (-pair[0], pair[1]),
        )
        top_n = body.get("top_n")
        if isinstance(top_n, int):
            order = order[:top_n]
        results: list[dict[str, Any]] = []
        for score, index in order:
            result: dict[str, Any] = {"index": index, "relevance_score": score}
            if body.get("return_documents"):
                result["document"] = {"text": documents[index]}
            results.append(result)
        tokens = count_tokens(query) * max(1, len(documents)) + sum(
            count_tokens(d) for d in documents
        )
        record.status = 200
        return web.json_response(
            {
                "id": f"rerank-mock{self.counter:08d}",
                "model": body.get("model") or "mock-rerank",
                "results": results,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                "meta": {"billed_units": {"search_units": 1}},
            },
            headers=headers,
        )


def _inputs(value: Any) -> list[str]:
    """The texts of an embeddings ``input`` (token arrays become their numbers as text)."""
    if isinstance(value, str):
        return [value]
    if value and all(isinstance(v, int) for v in value):
        return [" ".join(map(str, value))]
    return [v if isinstance(v, str) else " ".join(map(str, v)) for v in value]


def _embeddings_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "You must provide a model parameter."
    value = body.get("input")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        return "'input' must be a non-empty string or array."
    if len(value) > MAX_INPUTS:
        return f"'input' has {len(value)} items; at most {MAX_INPUTS} per request."
    for i, item in enumerate(value):
        ok = (
            (isinstance(item, str) and item != "")
            or isinstance(item, int)
            or (isinstance(item, list) and item and all(isinstance(t, int) for t in item))
        )
        if not ok:
            return f"'$.input[{i}]' is invalid: an empty string or not text."
    dimensions = body.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or dimensions < 1):
        return "'dimensions' must be a positive integer."
    if body.get("encoding_format") not in (None, "float", "base64"):
        return "'encoding_format' must be 'float' or 'base64'."
    return None


def _embeddings_text(body: dict[str, Any]) -> str:
    return "\n".join(_inputs(body["input"]))


def _document_text(document: Any) -> str:
    if isinstance(document, Mapping):
        return str(document.get("text", ""))
    return str(document)


def _rerank_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if not isinstance(body.get("query"), str) or not body["query"]:
        return "'query' must be a non-empty string."
    documents = body.get("documents")
    if not isinstance(documents, list) or not documents:
        return "'documents' must be a non-empty array."
    for i, doc in enumerate(documents):
        if not isinstance(doc, str) and not (isinstance(doc, Mapping) and "text" in doc):
            return f"'documents[{i}]' must be a string or an object with 'text'."
    top_n = body.get("top_n")
    if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1):
        return "'top_n' must be a positive integer."
    return None


def _rerank_text(body: dict[str, Any]) -> str:
    return "\n".join([body["query"], *(_document_text(d) for d in body["documents"])])
