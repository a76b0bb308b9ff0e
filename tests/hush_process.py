"""Run ``hush ...`` (or an example script) in a process of its own, without paying for a
new interpreter and its imports each time.

A helper process imports the ``hush`` command and its heavy dependencies once (``openai``,
``openpyxl``: about 2 s of CPU per command otherwise) and forks one child per command.
The child is a process like the one a user starts: its own working directory,
environment, umask, stdin (empty), stdout and stderr, and exit status; it runs
``hush.cli.main`` (or the script as ``__main__``) and exits through the interpreter's
shutdown steps (non-daemon threads joined, atexit handlers run), as a fresh process does.
What only a fresh interpreter shows (``python -m hush.cli`` starting, what importing
costs) keeps real subprocesses, and ``HUSH_TEST_SPAWN=1`` runs every command that way.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

HUSH = [sys.executable, "-m", "hush.cli"]
PRELOAD = ("hush.cli", "hush.batch", "hush.providers", "hush.checkpoint", "openai", "openpyxl")
"""What the helper imports before forking (every command would otherwise import it). A
module that fails to import is left to the child, which fails as a fresh process would."""

_SPAWN = os.environ.get("HUSH_TEST_SPAWN") == "1"


def run_hush(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    umask: int | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``hush ARGS`` in ``cwd``, as ``subprocess.run(..., capture_output=True, text=True)``."""
    return _run({"argv": list(args)}, [*HUSH, *args], cwd, env, umask, timeout)


def run_script(
    script: Path, *, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python SCRIPT`` in ``cwd``, as ``subprocess.run(..., capture_output=True, text=True)``."""
    return _run({"script": str(script)}, [sys.executable, str(script)], cwd, env, None, timeout)


def start_hush(args: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None) -> Started:
    """``hush ARGS`` started in the background, as ``subprocess.Popen`` does (use it in a
    ``with`` block: leaving it kills the command if it still runs)."""
    return Started([*HUSH, *args], {"argv": list(args)}, cwd, env, None)


def _run(
    job: dict[str, Any],
    command: list[str],
    cwd: Path,
    env: Mapping[str, str] | None,
    umask: int | None,
    timeout: float,
) -> subprocess.CompletedProcess[str]:
    with Started(command, job, cwd, env, umask) as started:
        returncode = started.wait(timeout)
        return subprocess.CompletedProcess(command, returncode, started.stdout(), started.stderr())


class Started:
    """One command in its own process (forked, or spawned under ``HUSH_TEST_SPAWN=1``),
    its stdout and stderr in files."""

    def __init__(
        self,
        command: list[str],
        job: dict[str, Any],
        cwd: Path,
        env: Mapping[str, str] | None,
        umask: int | None,
    ) -> None:
        self.command = command
        self.returncode: int | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="hush-process-")
        self._out, self._err = Path(self._dir.name) / "stdout", Path(self._dir.name) / "stderr"
        environment = dict(os.environ if env is None else env)
        self._spawned: subprocess.Popen[bytes] | None = None
        if _SPAWN:
            with self._out.open("wb") as out, self._err.open("wb") as err:
                self._spawned = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    cwd=cwd,
                    env=environment,
                    preexec_fn=None if umask is None else (lambda: os.umask(umask) and None),
                )
            self.pid = self._spawned.pid
            return
        job |= {"cwd": str(cwd), "env": environment, "umask": umask}
        job |= {"stdout": str(self._out), "stderr": str(self._err)}
        self._forker = _forker()
        self.pid = self._forker.start(job)

    def poll(self) -> int | None:
        """The exit status, or ``None`` while the command runs."""
        if self.returncode is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.wait(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the exit status (``subprocess.TimeoutExpired`` after ``timeout``)."""
        if self.returncode is None:
            if self._spawned is not None:
                self.returncode = self._spawned.wait(timeout)
            else:
                try:
                    self.returncode = self._forker.finish(timeout)
                except TimeoutError:
                    raise subprocess.TimeoutExpired(self.command, timeout or 0) from None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """Signal the command if it still runs."""
        if self.poll() is None:
            os.kill(self.pid, sig)

    def stdout(self) -> str:
        """What the command wrote to stdout so far."""
        return _text(self._out)

    def stderr(self) -> str:
        """What the command wrote to stderr so far."""
        return _text(self._err)

    def __enter__(self) -> Started:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.poll() is None:
            self.send_signal(signal.SIGKILL)
            self.wait(60)
        self._dir.cleanup()


def _text(path: Path) -> str:
    """What a text-mode pipe would have read (UTF-8, universal newlines)."""
    if not path.exists():
        return ""
    data = path.read_bytes().decode("utf-8", errors="replace")
    return data.replace("\r\n", "\n").replace("\r", "\n")


class _Forker:
    """The helper process and its protocol: one JSON line per job, ``{"pid"}`` then
    ``{"returncode"}`` back. One job at a time."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self._buffer = b""
        self._busy = False

    def alive(self) -> bool:
        return self.process.poll() is None

    def start(self, job: dict[str, Any]) -> int:
        """Send ``job``; the pid of the child running it."""
        assert not self._busy, "one command at a time"
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(json.dumps(job).encode() + b"\n")
        stdin.flush()
        self._busy = True
        return int(json.loads(self._line(60.0))["pid"])

    def finish(self, timeout: float | None) -> int:
        """The exit status of the running job (``TimeoutError`` after ``timeout``)."""
        returncode = int(json.loads(self._line(timeout))["returncode"])
        self._busy = False
        return returncode

    def _line(self, timeout: float | None) -> bytes:
        stdout = self.process.stdout
        assert stdout is not None
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([stdout], [], [], timeout)
            if not ready:
                raise TimeoutError
            chunk = os.read(stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError("the hush test process ended unexpectedly")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(10)


_lock = threading.Lock()
_current: _Forker | None = None


def _forker() -> _Forker:
    global _current
    with _lock:
        if _current is None or not _current.alive():
            if _current is None:
                atexit.register(stop)
            _current = _Forker()
        return _current


def stop() -> None:
    """End the helper process and wait for it (at the test process's exit)."""
    global _current
    with _lock:
        if _current is not None:
            _current.close()
            _current = None


def _serve() -> None:
    """The helper: import once, then fork a child per job read from stdin."""
    for name in PRELOAD:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    gc.freeze()
    for line in sys.stdin:
        job = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _exit(_exit_status(job))
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


def _exit_status(job: dict[str, Any]) -> int:
    """Run the job; the status a fresh interpreter would exit with."""
    try:
        _child(job)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException:
        sys.excepthook(*sys.exc_info())
        return 1
    return 0


def _exit(status: int) -> NoReturn:
    """Exit as the interpreter does (non-daemon threads joined, atexit handlers run, output
    flushed) without tearing down the modules shared with the helper: that teardown
    touches every object and copies the helper's memory, about 0.3 s of CPU a command."""
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


def _child(job: dict[str, Any]) -> None:
    """Become the command's process and run it."""
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(job["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    err = os.open(job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    for fd, target in ((null, 0), (out, 1), (err, 2)):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115
    os.chdir(job["cwd"])
    os.environ.clear()
    os.environ.update(job["env"])
    if job["umask"] is not None:
        os.umask(job["umask"])
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if "script" in job:
        import runpy

        script = job["script"]
        sys.argv = [script]
        sys.path[0] = os.path.dirname(os.path.abspath(script))
        runpy.run_path(script, run_name="__main__")
        return
    from hush.cli import main

    sys.argv = ["hush", *job["argv"]]
    sys.path[0] = job["cwd"]
    main(job["argv"])


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    _serve()
