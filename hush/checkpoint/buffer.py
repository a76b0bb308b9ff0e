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
        if not self.rows and not self.keyed:
            return None
        last = self.commits.issued  # before the swap: an entry queued meanwhile (from a loop
        rows, raw, keyed = self.rows, self.raw, self.keyed  # in another thread, as the writer
        self.rows, self.raw, self.keyed = [], [], []  # closes) is never reported as committed
        if raw:
            rows = pickle_results(rows, raw, refused)
        return Many(rows, keyed, last, self.commits, time.time())
