"""Errors raised by the checkpoint store."""

from __future__ import annotations

import os

from hush.hush_error import HushError


class CheckpointError(HushError):
    """Base class of every checkpoint error."""


class CheckpointMismatchError(CheckpointError, ValueError):
    """The run id exists in the file with another fingerprint: its graph, constants or code changed."""

    def __init__(
        self,
        *,
        run_id: str,
        file: str | os.PathLike[str],
        stored_fingerprint: str,
        fingerprint: str,
        entries: int,
    ) -> None:
        self.run_id = run_id
        self.file = os.fspath(file)
        self.stored_fingerprint = stored_fingerprint
        self.fingerprint = fingerprint
        self.entries = entries
        super().__init__(
            f"checkpoint run {run_id!r} in {self.file} was saved by a different graph (its "
            f"shape, constants or code changed: fingerprint {stored_fingerprint[:12]}, now "
            f"{fingerprint[:12]}); "
            f"use a new run_id to keep both, or run with restart=True (hush run --restart) "
            f"to delete its {entries} saved result(s) and start over"
        )


class CheckpointWriteError(CheckpointError, RuntimeError):
    """The writer thread failed; results put since the last commit may not be saved."""


class UnknownRunError(CheckpointError, LookupError):
    """The run id is not in the checkpoint file."""


class CheckpointValueError(CheckpointError, TypeError):
    """A value given to the store cannot be pickled."""


class UnstableValueError(CheckpointError, TypeError):
    """A value has no encoding that is the same in every process, so it cannot be keyed."""


class FingerprintError(CheckpointError, TypeError):
    """A constant of the graph cannot be fingerprinted (it neither pickles nor encodes stably)."""
