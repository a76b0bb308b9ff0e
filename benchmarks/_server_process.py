"""The local OpenAI-compatible server in a process of its own, driven over stdin.

Benchmarks start it with ``ServerProcess(...)`` so that the server does not share
the GIL (or the core) with the engine under test. Commands, one JSON per line:
``{"configure": {...}}``, ``{"reset": true}``, ``{"records": true}`` (answers with
``[[arrived_at, status, body, finished_at], ...]``), ``{"quit": true}``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

CHILD = """
import json, sys
from hush.testing import MockLLMServer
server = MockLLMServer(**json.loads(sys.argv[1])).start_in_thread()
print(json.dumps({"base_url": server.base_url, "port": server.port}), flush=True)
for line in sys.stdin:
    command = json.loads(line)
    if "configure" in command:
        server.configure(**command["configure"])
        answer = {}
    elif "reset" in command:
        server.reset()
        answer = {}
    elif "records" in command:
        answer = {"records": [[r.arrived_at, r.status, r.body, r.finished_at] for r in server.requests]}
    else:
        break
    print(json.dumps(answer), flush=True)
server.stop_thread()
"""


class Record:
    """One request the server received (what the benchmarks read of it)."""

    __slots__ = ("arrived_at", "body", "finished_at", "status")

    def __init__(
        self, arrived_at: float, status: int | None, body: Any, finished_at: float | None = None
    ) -> None:
        self.arrived_at = arrived_at
        self.status = status
        self.body = body
        self.finished_at = finished_at


class ServerProcess:
    """A :class:`~hush.testing.MockLLMServer` running in a child process."""

    def __init__(self, **settings: Any) -> None:
        self._child = subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps(settings)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        hello = json.loads(self._readline())
        self.base_url: str = hello["base_url"]
        self.port: int = hello["port"]

    def _readline(self) -> str:
        assert self._child.stdout is not None
        line = self._child.stdout.readline()
        if not line:
            raise RuntimeError("the server process ended")
        return line

    def _ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self._child.stdin is not None
        self._child.stdin.write(json.dumps(command) + "\n")
        self._child.stdin.flush()
        answer: dict[str, Any] = json.loads(self._readline())
        return answer

    def configure(self, **settings: Any) -> None:
        """Change settings of the running server."""
        self._ask({"configure": settings})

    def reset(self) -> None:
        """Forget records and rate-limit usage."""
        self._ask({"reset": True})

    @property
    def requests(self) -> list[Record]:
        """Every request received since the last reset."""
        return [Record(*r) for r in self._ask({"records": True})["records"]]

    def stop(self) -> None:
        """Stop the server and its process."""
        if self._child.poll() is None:
            assert self._child.stdin is not None
            self._child.stdin.write(json.dumps({"quit": True}) + "\n")
            self._child.stdin.close()
            self._child.wait(10)
