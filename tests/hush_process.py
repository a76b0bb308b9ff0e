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
from typing import IO, Any, NoReturn

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


def _run(
    job: dict[str, Any],
    command: list[str],
    cwd: Path,
    env: Mapping[str, str] | None,
    umask: int | None,
    timeout: float,
) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ if env is None else env)
    if _SPAWN:
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            env=environment,
            preexec_fn=None if umask is None else (lambda: os.umask(umask) and None),
        )
    with tempfile.TemporaryDirectory(prefix="hush-process-") as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        job |= {"cwd": str(cwd), "env": environment, "umask": umask}
        job |= {"stdout": str(out), "stderr": str(err)}
        returncode = _forker().run(job, command, timeout)
        return subprocess.CompletedProcess(command, returncode, _text(out), _text(err))


def _text(path: Path) -> str:
    """What a text-mode pipe would have read (UTF-8, universal newlines)."""
    data = path.read_bytes().decode("utf-8", errors="replace")
    return data.replace("\r\n", "\n").replace("\r", "\n")


class _Forker:
    """The helper process and its protocol: one JSON line per job, ``{"pid"}`` then
    ``{"returncode"}`` back."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def run(self, job: dict[str, Any], command: list[str], timeout: float) -> int:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps(job) + "\n")
        stdin.flush()
        pid = int(json.loads(_line(stdout, 60.0))["pid"])
        try:
            return int(json.loads(_line(stdout, timeout))["returncode"])
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            _line(stdout, 60.0)
            raise subprocess.TimeoutExpired(command, timeout) from None

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(10)


def _line(stream: IO[str], timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise TimeoutError
    line = stream.readline()
    if not line:
        raise RuntimeError("the hush test process ended unexpectedly")
    return line


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
