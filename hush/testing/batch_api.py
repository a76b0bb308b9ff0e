"""The OpenAI Batch API routes of the local server: files, batches, results, cancel.

``POST /v1/files`` (multipart, ``purpose=batch``) stores a JSONL upload;
``POST /v1/batches`` starts a batch over it; ``GET /v1/batches/{id}`` reports its
state (``in_progress`` until ``turnaround`` seconds have passed, then ``completed``
with ``output_file_id`` and ``error_file_id``); ``GET /v1/files/{id}/content``
returns a file; ``POST /v1/batches/{id}/cancel`` cancels. Each line is answered
with the same deterministic reply as ``POST /v1/chat/completions``; a line whose
last user message carries ``[[fail:CODE]]`` goes to the error file with that
status. Settings live on :class:`BatchAPI` (``server.batch_api``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from hush.testing.faults import error_body, parse_markers
from hush.testing.prelude import Answer, Prelude
from hush.testing.records import RequestRecord
from hush.testing.replies import build_reply, choice_count, completion_body, last_user_text
from hush.testing.responses import error

logger = logging.getLogger(__name__)

ENDPOINT = "/v1/chat/completions"
"""The only batch endpoint served."""
MAX_REQUESTS = 50_000
"""Most lines in one batch input file (OpenAI's limit)."""

Outcome = Literal["completed", "failed", "expired"]


@dataclass(slots=True)
class StoredFile:
    """An uploaded or generated file."""

    id: str
    content: bytes
    filename: str
    purpose: str
    created_at: int

    def body(self) -> dict[str, Any]:
        """The ``file`` object the API answers with."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


@dataclass(slots=True)
class StoredBatch:
    """A batch and the moment it finishes."""

    id: str
    input_file_id: str
    metadata: dict[str, str] | None
    created_at: int
    started: float
    total: int
    status: str = "in_progress"
    output_file_id: str | None = None
    error_file_id: str | None = None
    completed: int = 0
    failed: int = 0
    finished_at: dict[str, int] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """The ``batch`` object the API answers with."""
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": ENDPOINT,
            "errors": None,
            "input_file_id": self.input_file_id,
            "completion_window": "24h",
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "in_progress_at": self.created_at,
            "expires_at": self.created_at + 86_400,
            "finalizing_at": None,
            "completed_at": self.finished_at.get("completed"),
            "failed_at": self.finished_at.get("failed"),
            "expired_at": self.finished_at.get("expired"),
            "cancelling_at": None,
            "cancelled_at": self.finished_at.get("cancelled"),
            "request_counts": {
                "total": self.total,
                "completed": self.completed,
                "failed": self.failed,
            },
            "metadata": self.metadata,
        }


class BatchAPI:
    """Files and batches of one server, and how batches end.

    ``turnaround`` is the seconds a batch stays ``in_progress`` (``None``: until
    :meth:`release`); ``outcome`` is how batches end (``"failed"`` and ``"expired"``
    answer no line).
    """

    def __init__(self, prelude: Prelude) -> None:
        self.prelude = prelude
        self.turnaround: float | None = 0.0
        self.outcome: Outcome = "completed"
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, StoredBatch] = {}
        self._released = False
        self._ids = 0

    def configure(self, *, turnaround: float | None = 0.0, outcome: Outcome = "completed") -> None:
        """Set how long batches take and how they end."""
        self.turnaround, self.outcome = turnaround, outcome
        self._released = False

    def release(self) -> None:
        """Let batches held by ``turnaround=None`` finish at their next poll."""
        self._released = True

    def add_routes(self, app: web.Application) -> None:
        """Register the routes on ``app`` (with and without the ``/v1`` prefix)."""
        for prefix in ("/v1", ""):
            app.router.add_post(f"{prefix}/files", self._route(self._upload))
            app.router.add_get(f"{prefix}/files/{{id}}", self._route(self._file))
            app.router.add_get(f"{prefix}/files/{{id}}/content", self._route(self._content))
            app.router.add_post(f"{prefix}/batches", self._route(self._create))
            app.router.add_get(f"{prefix}/batches/{{id}}", self._route(self._retrieve))
            app.router.add_post(f"{prefix}/batches/{{id}}/cancel", self._route(self._cancel))

    # -- plumbing ----------------------------------------------------------------------

    def _route(
        self, answer: Callable[[web.Request, RequestRecord], Awaitable[web.Response]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """``answer`` behind the server's prelude, its status recorded."""

        async def recorded(request: web.Request, record: RequestRecord) -> web.StreamResponse:
            response = await answer(request, record)
            record.status = response.status
            return response

        handler: Answer = recorded
        return self.prelude.route(handler)

    def _new_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}-mock{self._ids:08d}"

    def _store(self, content: bytes, filename: str, purpose: str) -> StoredFile:
        stored = StoredFile(self._new_id("file"), content, filename, purpose, int(time.time()))
        self.files[stored.id] = stored
        return stored

    # -- handlers ----------------------------------------------------------------------

    async def _upload(self, request: web.Request, record: RequestRecord) -> web.Response:
        if not request.content_type.startswith("multipart/"):
            return error(record, 400, "Uploads must be multipart/form-data.")
        form = await request.post()
        purpose, upload = form.get("purpose"), form.get("file")
        if purpose != "batch":
            return error(record, 400, f"Unsupported purpose {purpose!r}: only 'batch' is served.")
        if not isinstance(upload, web.FileField):
            return error(record, 400, "The form has no 'file' part.")
        content = upload.file.read()
        record.body = {"purpose": purpose, "filename": upload.filename, "bytes": len(content)}
        return web.json_response(self._store(content, upload.filename, "batch").body())

    async def _file(self, request: web.Request, record: RequestRecord) -> web.Response:
        stored = self.files.get(request.match_info["id"])
        if stored is None:
            return _missing(record, "file", request.match_info["id"])
        return web.json_response(stored.body())

    async def _content(self, request: web.Request, record: RequestRecord) -> web.Response:
        stored = self.files.get(request.match_info["id"])
        if stored is None:
            return _missing(record, "file", request.match_info["id"])
        return web.Response(body=stored.content, content_type="application/octet-stream")

    async def _create(self, request: web.Request, record: RequestRecord) -> web.Response:
        body = await self.prelude.json_body(request, record, _object_problem)
        if body.get("endpoint") != ENDPOINT:
            return error(record, 400, f"Unsupported endpoint {body.get('endpoint')!r}.")
        if body.get("completion_window") != "24h":
            return error(record, 400, "completion_window must be '24h'.")
        stored = self.files.get(str(body.get("input_file_id")))
        if stored is None:
            return _missing(record, "file", str(body.get("input_file_id")))
        lines, problem = _parse_input(stored.content)
        if problem is not None:
            return error(record, 400, problem)
        batch = StoredBatch(
            id=self._new_id("batch"),
            input_file_id=stored.id,
            metadata=body.get("metadata"),
            created_at=int(time.time()),
            started=time.monotonic(),
            total=len(lines),
        )
        self.batches[batch.id] = batch
        logger.debug("batch %s created with %d lines", batch.id, len(lines))
        return web.json_response(batch.body())

    async def _retrieve(self, request: web.Request, record: RequestRecord) -> web.Response:
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            return _missing(record, "batch", request.match_info["id"])
        if batch.status == "in_progress" and self._due(batch):
            self._finish(batch)
        return web.json_response(batch.body())

    async def _cancel(self, request: web.Request, record: RequestRecord) -> web.Response:
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            return _missing(record, "batch", request.match_info["id"])
        if batch.status == "in_progress":
            batch.status = "cancelled"
            batch.finished_at["cancelled"] = int(time.time())
        return web.json_response(batch.body())

    # -- answering ---------------------------------------------------------------------

    def _due(self, batch: StoredBatch) -> bool:
        if self.turnaround is None:
            return self._released
        return time.monotonic() - batch.started >= self.turnaround

    def _finish(self, batch: StoredBatch) -> None:
        now = int(time.time())
        if self.outcome != "completed":
            batch.status = self.outcome
            batch.finished_at[self.outcome] = now
            return
        lines, _ = _parse_input(self.files[batch.input_file_id].content)
        answered: list[bytes] = []
        errors: list[bytes] = []
        for line in lines:
            ok, text = self._answer(line)
            (answered if ok else errors).append(text)
        batch.completed, batch.failed = len(answered), len(errors)
        if answered:
            name = f"{batch.id}_output.jsonl"
            batch.output_file_id = self._store(b"".join(answered), name, "batch_output").id
        if errors:
            name = f"{batch.id}_error.jsonl"
            batch.error_file_id = self._store(b"".join(errors), name, "batch_output").id
        batch.status = "completed"
        batch.finished_at["completed"] = now

    def _answer(self, line: dict[str, Any]) -> tuple[bool, bytes]:
        """One result line: ``(True, output line)`` or ``(False, error line)``."""
        number = self.prelude.next_number()
        body: dict[str, Any] = line["body"]
        messages: list[Any] = body["messages"]
        model: str = body["model"]
        last_user = last_user_text(messages)
        markers = parse_markers(last_user)
        request_id = f"req_mock{number:08d}"
        result: dict[str, Any] = {
            "id": f"batch_req_mock{number:08d}",
            "custom_id": line["custom_id"],
        }
        if markers is not None and isinstance(markers.fault, int):
            status = markers.fault
            message = f"Injected fault: HTTP {status} (a [[fail:{status}]] marker)."
            error = json.loads(error_body(status, message, None))
            result["response"] = {"status_code": status, "request_id": request_id, "body": error}
            result["error"] = None
            return False, json.dumps(result).encode() + b"\n"
        tool = markers.tool if markers is not None else None
        reply = build_reply(
            body, messages, model, last_user, tool, self.prelude.config.reply_chars, number
        )
        payload = completion_body(
            reply, model, f"chatcmpl-mock{number:08d}", int(time.time()), choice_count(body)
        )
        result["response"] = {
            "status_code": 200,
            "request_id": request_id,
            "body": json.loads(payload),
        }
        result["error"] = None
        return True, json.dumps(result).encode() + b"\n"


def _parse_input(content: bytes) -> tuple[list[dict[str, Any]], str | None]:
    """The request lines of a batch input file, or the first problem found."""
    lines: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            return [], f"Line {number} of the input file is not valid JSON."
        if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
            return [], f"Line {number} of the input file has no 'custom_id'."
        if line["custom_id"] in seen:
            return [], f"Line {number}: duplicate custom_id {line['custom_id']!r}."
        if line.get("method") != "POST" or line.get("url") != ENDPOINT:
            return [], f"Line {number}: method must be POST and url {ENDPOINT}."
        body = line.get("body")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return [], f"Line {number}: 'body' must be a chat completion request."
        if not isinstance(body.get("model"), str):
            return [], f"Line {number}: the body has no 'model'."
        seen.add(line["custom_id"])
        lines.append(line)
    if not lines:
        return [], "The input file holds no requests."
    if len(lines) > MAX_REQUESTS:
        return [], f"The input file holds {len(lines)} requests; at most {MAX_REQUESTS}."
    return lines, None


def _missing(record: RequestRecord, kind: str, ident: str) -> web.Response:
    return error(record, 404, f"No such {kind}: '{ident}'.", "not_found")


def _object_problem(body: Any) -> str | None:
    return None if isinstance(body, dict) else "The request body must be a JSON object."
