"""Results pickled together when a loop turn's entries are handed to the writer.

A map item's result is queued as it is (:meth:`~hush.checkpoint.sqlite_store.
SQLiteCheckpointStore.queue_result`) and pickled with the rest of its loop turn's results
in one pass over them: thousands of small items a second cost the event loop about a
third less this way than pickling each as it finishes, because the same code runs warm
for a whole turn instead of once between every other step of an item. A result is
therefore a copy of what it was at the end of the loop turn it finished in, and always
before anything after its map runs (a map waits for its last commit).

A value that does not pickle is not saved (the caller is told once per node, and its work
runs again on resume); what its work spent is kept, in a spend-only row (path
``$spend``) that resume counts and readers never take for a result.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Callable

from hush.checkpoint.claim import SPEND_PATH
from hush.checkpoint.schema import CHUNK_ROW

UNSAVED = "unsaved"
"""The digest of a spend-only row standing for a result that did not pickle."""
_dumps = functools.partial(pickle.dumps, protocol=5)
_NOTHING = _dumps({})

Refused = Callable[[str, str], None]
"""Told the path (as the run names it) of a result that is not saved, and why."""


def pickle_results(
    rows: list[object], raw: list[tuple[int, str]], refused: Refused
) -> list[object]:
    """Pickle the values at ``raw``'s positions of ``rows`` (a chunk's flat body; each
    position with the path to name if it does not pickle); return the body to commit (the
    same list, without the entries of unsaved results that spent nothing)."""
    if len(raw) * CHUNK_ROW == len(rows):
        try:
            rows[2::CHUNK_ROW] = list(map(_dumps, rows[2::CHUNK_ROW]))
            return rows
        except Exception:  # one of them does not pickle (rows are untouched): find which
            pass
    dropped = False
    for position, shown in raw:
        try:
            rows[position] = _dumps(rows[position])
        except Exception as exc:
            rows[position - 2 : position + 1] = [SPEND_PATH, UNSAVED, _NOTHING]
            dropped = dropped or rows[position + 1] is None
            refused(shown, f"its result does not pickle ({type(exc).__name__}: {exc})")
    if not dropped:
        return rows
    kept: list[object] = []
    for start in range(0, len(rows), CHUNK_ROW):
        entry = rows[start : start + CHUNK_ROW]
        if entry[1] is not UNSAVED or entry[3] is not None:
            kept += entry
    return kept
