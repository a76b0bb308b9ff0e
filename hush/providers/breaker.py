"""A circuit breaker per resource: fail fast while a server cannot be reached.

After :data:`THRESHOLD` consecutive attempts that could not connect (refused,
unreachable, or no answer in time), the breaker opens: every call fails at once
with the cause, instead of each retrying with backoff. After a cool-down one
call goes through as a probe; if it connects the breaker closes, else it opens
again for twice as long (at most :data:`MAX_COOLDOWN`). Pure: the clock is passed in.
"""

from __future__ import annotations

THRESHOLD = 3
COOLDOWN = 5.0
MAX_COOLDOWN = 60.0


class Breaker:
    """Closed (calls go), open (calls fail fast) or probing (one call goes)."""

    __slots__ = ("cause", "cooldown", "failures", "opened_at", "probing", "reopen_at")

    def __init__(self) -> None:
        self.failures = 0
        self.cause = ""
        self.cooldown = COOLDOWN
        self.opened_at: float | None = None
        self.reopen_at = 0.0
        self.probing = False

    @property
    def is_open(self) -> bool:
        """Calls are failing fast (or one probe is deciding)."""
        return self.opened_at is not None

    def blocked(self, now: float) -> bool:
        """Whether calls must fail at once now (open, and no probe may go yet)."""
        return self.opened_at is not None and (self.probing or now < self.reopen_at)

    def sending(self) -> None:
        """A call goes: while the breaker is open, it is the probe (the only one)."""
        if self.opened_at is not None:
            self.probing = True

    def connected(self) -> bool:
        """A call reached the server; returns ``True`` if that closed an open breaker."""
        was_open = self.opened_at is not None
        self.failures = 0
        self.opened_at = None
        self.probing = False
        self.cooldown = COOLDOWN
        return was_open

    def unreachable(self, cause: str, now: float) -> bool:
        """A call could not connect; returns ``True`` if that opened the breaker."""
        self.failures += 1
        self.cause = cause
        if self.opened_at is not None:
            if self.probing:
                self.probing = False
                self.cooldown = min(MAX_COOLDOWN, self.cooldown * 2)
                self.reopen_at = now + self.cooldown
            return False
        if self.failures < THRESHOLD:
            return False
        self.opened_at = now
        self.reopen_at = now + self.cooldown
        return True

    def retry_in(self, now: float) -> float:
        """Seconds until the next probe may go."""
        return max(0.0, self.reopen_at - now)
