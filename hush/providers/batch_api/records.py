"""The batches a run submitted, kept in its checkpoint so a resumed run re-attaches to them.

Each resource's record is saved under ``$batch`` (key: the resource) as
``{batch id: [custom_id, ...]}`` and committed before the batch is first polled; a run
resumed from the same checkpoint finds its calls' ``custom_id`` there and polls that batch
instead of submitting the call again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import sqlite3
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hush.checkpoint.store import CheckpointStore

logger = logging.getLogger(__name__)

RECORD_PATH = "$batch"
"""Where a checkpoint keeps the submitted batches (one entry per resource)."""


class SubmittedBatches:
    """The batches of one resource that one run's checkpoint holds."""

    def __init__(self, store: CheckpointStore, key: str) -> None:
        self.store = store
        self.key = key
        saved = store.load(RECORD_PATH, key)
        self.batches: dict[str, list[str]] = {}
        """Batch id -> the ``custom_id`` of every line it was submitted with."""
        self.by_cid: dict[str, str] = {}
        """``custom_id`` -> the batch that holds it."""
        if isinstance(saved, dict):
            for batch_id, cids in saved.items():
                self._note(str(batch_id), cids)

    def _note(self, batch_id: str, cids: Iterable[str]) -> None:
        self.batches[batch_id] = list(cids)
        self.by_cid.update(dict.fromkeys(self.batches[batch_id], batch_id))

    async def add(self, batch_id: str, cids: Iterable[str]) -> None:
        """Record a submitted batch and return once the checkpoint committed it."""
        self._note(batch_id, cids)
        if self.store.failed:
            return
        try:
            await self.store.save(RECORD_PATH, self.key, dict(self.batches))
        except Exception:
            logger.warning(
                "%s: could not save batch %s in the checkpoint; a resumed run would "
                "submit its calls again",
                self.key,
                batch_id,
                exc_info=True,
            )


def recorded(path: str | os.PathLike[str], run_id: str) -> dict[str, dict[str, list[str]]]:
    """The batches checkpoint file ``path`` records for ``run_id``, by resource (empty when
    the file or the run holds none)."""
    from hush.checkpoint.schema import connect_readonly

    if not os.path.isfile(path):
        return {}
    found: dict[str, dict[str, list[str]]] = {}
    try:
        with contextlib.closing(connect_readonly(path)) as db:
            rows = db.execute(
                "SELECT digest, value FROM entries WHERE run_id = ? AND path = ? "
                "ORDER BY finished_at",
                (run_id, RECORD_PATH),
            ).fetchall()
        for key, blob in rows:
            value = pickle.loads(blob)
            if isinstance(value, dict):
                found[str(key)] = {str(b): list(c) for b, c in value.items()}
    except (sqlite3.Error, pickle.UnpicklingError, TypeError) as exc:
        logger.debug("no batch records in %s: %s", os.fspath(path), exc)
    return found
