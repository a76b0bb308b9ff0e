"""A circuit breaker per resource: fail fast while a server cannot be reached.

After :data:`THRESHOLD` consecutive attempts that could not connect (refused,
unreachable, reset before any response), the breaker opens: every call fails
at once with the cause, instead of each retrying with backoff. A request that
reached the server, even one that failed or timed out waiting for its reply,
closes it: a slow server is not an outage. After a cool-down one call goes
through as a probe; if it connects the breaker closes, if it cannot connect the
breaker opens again for twice as long (at most :data:`MAX_COOLDOWN`), and if it
ends without an answer either way (cancelled, abandoned) the next call probes
again at once. Pure: the clock is passed in.
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

    def sending(self) -> bool:
        """A call goes; returns ``True`` if it is the probe (the only call while open)."""
        if self.opened_at is None:
            return False
        self.probing = True
        return True

    def connected(self) -> bool:
        """A call reached the server; returns ``True`` if that closed an open breaker."""
        was_open = self.opened_at is not None
        self.failures = 0
        self.opened_at = None
        self.probing = False
        self.cooldown = COOLDOWN
        return was_open

    def unreachable(self, cause: str, now: float, *, probe: bool | None = None) -> bool:
        """A call could not connect; returns ``True`` if that opened the breaker.

        ``probe``: the call was the probe, so the breaker waits twice as long for the next
        (``None``: it was if a probe is out).
        """
        self.failures += 1
        self.cause = cause
        if self.opened_at is not None:
            if self.probing if probe is None else probe:
                self.probing = False
                self.cooldown = min(MAX_COOLDOWN, self.cooldown * 2)
                self.reopen_at = now + self.cooldown
            return False
        if self.failures < THRESHOLD:
            return False
        self.opened_at = now
        self.reopen_at = now + self.cooldown
        return True

    def abandoned(self, *, probe: bool) -> None:
        """A call ended without saying whether the server can be reached (cancelled, or
        its permit left without an outcome): if it was the probe, the next call probes."""
        if probe:
            self.probing = False

    def retry_in(self, now: float) -> float:
        """Seconds until the next probe may go."""
        return max(0.0, self.reopen_at - now)
