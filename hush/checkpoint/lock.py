"""One process per run: an advisory lock on a run of a checkpoint file.

Taking a run (opening a ``run_id`` in a checkpoint file) takes an exclusive
``flock`` on a small sidecar file, ``<file>.<digest of run_id>.lock``, that
holds the taker's pid, host and start time. A second taker is refused with
:class:`RunLockedError` naming them. The kernel drops the lock when its holder
ends in any way (SIGKILL included), so a lock left by a dead process is simply
taken over; nothing depends on pids being unique or clocks agreeing, as a lock
row in the SQLite file would (it cannot tell a dead holder from a live one on
another host, or from a new process that reused its pid). Like SQLite's WAL,
``flock`` needs a local file system.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hush.checkpoint.errors import CheckpointError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("hush.checkpoint")

_ATTEMPTS = 20
_READ_WAIT_S = 0.005


class RunLockedError(CheckpointError, RuntimeError):
    """Another process (or another run in this one) is running this ``run_id`` of the file."""

    def __init__(self, *, run_id: str, file: Path, holder: dict[str, Any] | None) -> None:
        self.run_id = run_id
        self.file = os.fspath(file)
        self.holder = holder or {}
        pid = self.holder.get("pid")
        who = "another process"
        if isinstance(pid, int):
            mine = pid == os.getpid() and self.holder.get("host") == socket.gethostname()
            who = "this process (another run)" if mine else f"process {pid}"
            if self.holder.get("host") and not mine:
                who += f" on {self.holder['host']}"
            started = self.holder.get("started")
            if isinstance(started, int | float):
                who += f", since {datetime.fromtimestamp(started, UTC):%Y-%m-%d %H:%M:%S} UTC"
        super().__init__(
            f"checkpoint run {run_id!r} in {self.file} is being run by {who}; two processes "
            "on one run would each run and pay for the same items. Wait for it to end (or stop "
            "it), or use another run_id"
        )


def lock_path(file: Path, run_id: str) -> Path:
    """The sidecar file whose lock is the run's."""
    tag = hashlib.sha256(run_id.encode("utf-8")).hexdigest()[:16]
    return file.with_name(f"{file.name}.{tag}.lock")


class RunLock:
    """A held run lock; :meth:`release` ends it (the holder's exit ends it in any case)."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def take(cls, file: Path, run_id: str) -> RunLock:
        """Take the lock of ``run_id`` in ``file`` or raise :class:`RunLockedError`."""
        path = lock_path(file, run_id)
        if fcntl is None:  # pragma: no cover - Windows
            logger.warning("checkpoint %s: no file locks here; run %r is not locked", file, run_id)
            return cls(path, None)
        for _ in range(_ATTEMPTS):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise CheckpointError(f"cannot lock run {run_id!r} of {file}: {exc}") from exc
            kept = False
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise RunLockedError(run_id=run_id, file=file, holder=_holder(fd)) from None
                if not _still_at(path, fd):
                    continue  # released and removed meanwhile: lock the file now there
                _take_over(fd, file, run_id)
                kept = True
                return cls(path, fd)
            finally:
                if not kept:
                    os.close(fd)
        raise CheckpointError(f"cannot lock run {run_id!r} of {file}: its lock file keeps changing")

    def release(self) -> None:
        """Remove the lock file and let go of it; releasing twice does nothing."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            if _still_at(self.path, fd):
                self.path.unlink()
        os.close(fd)


def _still_at(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        there = path.stat()
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino)


def _holder(fd: int) -> dict[str, Any] | None:
    """Who holds the lock, as they wrote it (they may not have yet: wait a moment)."""
    for _ in range(_ATTEMPTS):
        found = _read(fd)
        if found is not None:
            return found
        time.sleep(_READ_WAIT_S)
    return None


def _read(fd: int) -> dict[str, Any] | None:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8")
        found = json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _take_over(fd: int, file: Path, run_id: str) -> None:
    """Write this process as the holder, noting a holder that ended without letting go."""
    left = _read(fd)
    if left is not None:
        logger.warning(
            "checkpoint %s: run %r was left locked by process %s on %s, which has ended; "
            "taking it over",
            file,
            run_id,
            left.get("pid"),
            left.get("host"),
        )
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    data = json.dumps({**me, "run_id": run_id}).encode("utf-8")
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
