"""A local OpenAI-compatible chat server that answers packed rows (``hush batch
--rows-per-call``) the way a careful model does, and the ways a careless one does.

A request holding numbered rows (``### Row n`` followed by the row's text) is
answered ``{"answers": [{"row": n, "answer": "reply to: <text>"}, ...]}``, the
entries listed in reverse order (so a mapping by position would be wrong). A row
whose text contains ``[[omit]]`` is left out, one with ``[[bad]]`` gets an empty
answer, one with ``[[fail]]`` is left out and, asked alone, answered with a 400.
Any other request is answered ``reply to: <last user message>`` (or, under
a ``json_schema`` response format, a small value valid for the schema). Usage is
counted at four characters a token. Tests and ``benchmarks/bench_batch.py`` use it.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from hush.testing.schemas import instance_of

_ROW = re.compile(r"^### Row (\d+)\n(.*?)(?=\n\n### Row \d+\n|\Z)", re.MULTILINE | re.DOTALL)


def answer(text: str) -> str:
    """The answer a row asking ``text`` gets."""
    return "reply to: " + " ".join(text.split())


class PackedRowsServer:
    """``with PackedRowsServer() as server:`` serves ``server.base_url`` on loopback."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        """The ``/v1`` URL to configure as a resource's ``base_url``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    @property
    def total_requests(self) -> int:
        """Chat requests received."""
        with self._lock:
            return len(self.bodies)

    @property
    def prompt_tokens(self) -> int:
        """Prompt tokens of every request received (as this server counts them)."""
        with self._lock:
            return sum(_tokens(_prompt_text(b)) for b in self.bodies)

    def reset(self) -> None:
        """Forget the requests received."""
        with self._lock:
            self.bodies.clear()

    def __enter__(self) -> PackedRowsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reply(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The chat completion answering ``body`` (``None``: refuse it with a 400)."""
        with self._lock:
            self.bodies.append(body)
        messages = body.get("messages") or []
        last = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "")
        rows = _ROW.findall(last if isinstance(last, str) else "")
        schema = _schema(body)
        if rows:
            entries = [
                {"row": int(n), "answer": "" if "[[bad]]" in text else _row_answer(text, schema)}
                for n, text in rows
                if "[[omit]]" not in text and "[[fail]]" not in text
            ]
            content = json.dumps({"answers": entries[::-1]}, ensure_ascii=False)
        elif "[[fail]]" in str(last):
            return None
        elif schema is not None:
            content = json.dumps(instance_of(schema), ensure_ascii=False)
        else:
            content = answer(str(last))
        prompt, completion = _tokens(_prompt_text(body)), max(1, _tokens(content))
        return {
            "id": f"chatcmpl-{time.monotonic_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "gpt-4o-mini"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                reply = server.reply(body)
                if reply is None:
                    self._send(400, {"error": {"message": "refused: [[fail]]", "type": "invalid"}})
                else:
                    self._send(200, reply)

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler


@contextmanager
def packed_rows_server() -> Iterator[PackedRowsServer]:
    """A running :class:`PackedRowsServer`."""
    with PackedRowsServer() as server:
        yield server


def _schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The schema of one answer (a row's, in a packed request), or ``None`` for text."""
    response_format = body.get("response_format")
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    schema = (response_format.get("json_schema") or {}).get("schema")
    if not isinstance(schema, dict):
        return None
    answers = schema.get("properties", {}).get("answers")
    if not isinstance(answers, dict):
        return schema
    item = answers.get("items", {}).get("properties", {}).get("answer", {})
    return None if item.get("type") == "string" else item


def _row_answer(text: str, schema: dict[str, Any] | None) -> Any:
    if schema is None:
        return answer(text)
    return instance_of(schema)


def _prompt_text(body: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content") or "") for m in body.get("messages") or [])


def _tokens(text: str) -> int:
    return max(1, len(text) // 4) + 3
