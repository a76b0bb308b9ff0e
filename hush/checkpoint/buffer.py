"""The entries a checkpoint store queued since its last hand-over, kept apart from the store
so that the writer can take what is left when it closes without the store being closed
(interpreter exit, or the store garbage-collected with entries still gathered)."""

from __future__ import annotations

import time

from hush.checkpoint.commits import Commits
from hush.checkpoint.handover import Refused, pickle_results
from hush.checkpoint.ops import Many


class Buffer:
    """Results as a chunk's flat body (``rows``; ``raw``: where the values still to pickle
    are, with the paths to name them by), bookkeeping as upsert rows (``keyed``), numbered
    in ``commits``."""

    __slots__ = ("commits", "keyed", "raw", "rows")

    def __init__(self, commits: Commits) -> None:
        self.commits = commits
        self.rows: list[object] = []
        self.raw: list[tuple[int, str]] = []
        self.keyed: list[object] = []

    def take(self, refused: Refused) -> Many | None:
        """Everything buffered, as one batch (its results pickled; one that does not pickle
        is told to ``refused``), and an empty buffer; ``None`` if nothing is buffered."""
        rows, keyed = self.rows, self.keyed
        if not rows and not keyed:
            return None
        self.rows = []
        if self.raw:
            raw, self.raw = self.raw, []
            rows = pickle_results(rows, raw, refused)
        if keyed:
            self.keyed = []
        return Many(rows, keyed, self.commits.issued, self.commits, time.time())
