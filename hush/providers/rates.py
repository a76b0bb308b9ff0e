"""What one resource may send, and what it learned: pure rate math with the clock passed in.

:class:`RateState` decides whether a request may go now, and learns from each
answer. It never sleeps and never reads a clock: every method takes ``now``
(seconds, monotonic), so it is tested without waiting. :mod:`hush.providers.limiter`
wraps it in the queue that makes requests wait.

How the limits are set:

* **A known limit** (``rpm``/``tpm`` configured, or ``x-ratelimit-limit-*`` sent by the
  server, which wins over the configuration up or down) is aimed at: exactly when
  the server's headers state it, else :data:`HEADROOM` of it, in continuously refilled
  buckets (:mod:`hush.providers.bucket`) holding :data:`BURST_SECONDS` of refill, or
  :data:`BURST_SHARE` of the burst the headers show the server allows. A 429 at a
  known limit empties the bucket, pauses the resource for ``Retry-After`` and resumes
  at the limit, one request at a time; only if 429s stay frequent
  (:data:`SQUEEZE_SHARE` of recent answers) is the aim lowered a little.
* **No known limit**: requests are not paced. Until the first answer at most
  :data:`INITIAL_WINDOW` are in flight; each answer widens the window by one (it
  doubles every round trip), up to the resource's ``max_in_flight``. Rate-limit
  headers on any answer set the limits at once. The first 429 without them sets
  the request rate from what the server accepted over the last
  :data:`MEASURE_SECONDS` (less :data:`DISCOVERY_MARGIN`); later 429s cut it by
  :data:`CUT_FACTOR`, but only once the requests sent before the last cut are
  all over (their 429s say nothing about the new rate), and while requests are
  held back without a 429 for :data:`PROBE_QUIET_SECONDS` it grows by
  :data:`PROBE_PER_SECOND` per second.
* ``x-ratelimit-remaining-*`` caps what the buckets hold (the request bucket at what
  the server holds now, carried from when the answered request reached it over our
  sends since, less the share of its burst kept for jitter); usage reported by the
  server corrects the token estimate, never above the bucket's capacity.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from hush.providers.bucket import BURST_SECONDS, MIN_RATE, Bucket, server_level
from hush.providers.headers import RateLimitHeaders

__all__ = ["BURST_SECONDS", "HEADROOM", "INITIAL_WINDOW", "Bucket", "Limits", "RateState"]

HEADROOM = 0.97
"""Share of a configured limit aimed at until the server's headers confirm it: room for
clock jitter between us and a bucket we cannot see."""
BURST_SHARE = 0.1
"""Share of the burst the server's headers show it allows (``remaining`` plus ``reset`` of
refill) that our bucket holds once they show it: the rest absorbs jitter on the way."""
MAX_BURST_SECONDS = 1.0
"""Most seconds of refill a server's burst is taken to be (a per-minute budget is spent
over the minute, not at once)."""
INITIAL_WINDOW = 16
"""Requests in flight before the first answer when no limit is known."""
MEASURE_SECONDS = 5.0
"""Window over which the accepted rate is measured."""
DISCOVERY_MARGIN = 0.8
"""Share of the measured accepted rate taken as the rate after the first 429."""
CUT_FACTOR = 0.85
"""Cut of a discovered rate for each further round trip that meets a 429."""
PROBE_PER_SECOND = 0.02
"""Growth of a discovered rate per second while requests are held back without 429s."""
PROBE_QUIET_SECONDS = 2.0
"""A discovered rate grows only after this long without a 429."""
SQUEEZE_SHARE = 0.05
"""Share of 429s among recent answers above which a known limit's aim is lowered."""
SQUEEZE_FACTOR = 0.97
MIN_SQUEEZE = 0.5
DEFAULT_429_PAUSE = 1.0
"""Pause after a 429 that says neither ``Retry-After`` nor when the budget resets."""
MAX_RESET_PAUSE = 5.0
"""Longest pause taken from an ``x-ratelimit-reset-*`` header."""
_EPSILON = 1e-4


@dataclass(frozen=True, slots=True)
class Limits:
    """What a resource is configured with."""

    rpm: int | None = None
    tpm: int | None = None
    max_in_flight: int = 256
    learn_from_headers: bool = True


class _Limit:
    """Where one bucket's rate comes from: configuration, headers, or 429s."""

    __slots__ = ("configured", "cut_at", "discovered", "learned", "probed_at", "throttled_at")

    def __init__(self, configured: float | None) -> None:
        self.configured = configured
        self.learned: float | None = None
        self.discovered: float | None = None
        self.cut_at = -math.inf
        self.throttled_at = -math.inf
        self.probed_at = -math.inf

    @property
    def known(self) -> float | None:
        """The limit the server has (from its headers, else the configuration)."""
        return self.learned if self.learned is not None else self.configured


class RateState:
    """Everything one resource knows and holds; every method takes the time ``now``."""

    def __init__(self, limits: Limits, now: float) -> None:
        self.limits = limits
        self.max_in_flight = limits.max_in_flight
        self._limits = {
            "requests": _Limit(float(limits.rpm) if limits.rpm else None),
            "tokens": _Limit(float(limits.tpm) if limits.tpm else None),
        }
        self.requests = Bucket("requests", None, now)
        self.tokens = Bucket("tokens", None, now)
        self.squeeze = 1.0
        self.in_flight = 0
        self.window: int | None = None if limits.rpm or limits.tpm else INITIAL_WINDOW
        """In-flight window while no limit is known (``None`` once one is)."""
        self.paused_until = 0.0
        self._cut_at = -math.inf
        self._before_cut = 0
        """Requests sent before the last cut still in flight: their 429s say nothing new."""
        self._sends: deque[float] = deque()
        """Times of the requests sent over the last :data:`MEASURE_SECONDS`."""
        self._server_burst = {"requests": 0.0, "tokens": 0.0}
        """The largest burst the server's headers showed, per bucket (units)."""
        self._answers: deque[tuple[float, int, bool]] = deque()
        """Recent answers: (time, tokens, rate limited)."""
        self._apply(now)

    # ---- deciding --------------------------------------------------------------------

    def wait(self, tokens: int, now: float) -> float | None:
        """0 if a request of ``tokens`` may go now, else seconds to wait, or ``None`` when
        the in-flight cap holds it (a release or an answer changes that)."""
        if now < self.paused_until:
            return self.paused_until - now
        cap = self.max_in_flight if self.window is None else min(self.window, self.max_in_flight)
        if self.in_flight >= cap:
            return None
        self.requests.refill(now)
        self.tokens.refill(now)
        wait_requests = self.requests.delay(1)
        wait_tokens = self.tokens.delay(tokens)
        if wait_requests > 0:
            self._limits["requests"].throttled_at = now
        if wait_tokens > 0:
            self._limits["tokens"].throttled_at = now
        wait = max(wait_requests, wait_tokens)
        return 0.0 if wait <= _EPSILON else wait

    def take(self, tokens: int, now: float | None = None) -> None:
        """A request of ``tokens`` goes now (at ``now``: noted for :meth:`_mirror`)."""
        self.requests.level -= 1
        self.tokens.level -= tokens
        self.in_flight += 1
        if now is not None:
            self._sends.append(now)
            while self._sends[0] < now - MEASURE_SECONDS:
                self._sends.popleft()

    def release(self, sent_at: float = math.inf) -> None:
        """A request sent at ``sent_at`` is over (answered or not)."""
        self.in_flight = max(0, self.in_flight - 1)
        if sent_at < self._cut_at:
            self._before_cut = max(0, self._before_cut - 1)

    # ---- learning --------------------------------------------------------------------

    def answered(
        self,
        charged: int,
        actual: int,
        info: RateLimitHeaders | None,
        now: float,
        sent_at: float | None = None,
    ) -> None:
        """A request (sent at ``sent_at``) succeeded; ``actual`` tokens counted (``charged``
        were taken up front)."""
        self.tokens.refill(now)
        self.tokens.give_back(charged - actual)
        self._note(now, actual, False)
        if self.window is not None:
            self.window += 1
        self._learn(info, now, sent_at)
        self._probe(now)

    def rate_limited(
        self,
        charged: int,
        info: RateLimitHeaders | None,
        retry_after: float | None,
        sent_at: float,
        now: float,
    ) -> float:
        """A request got a 429; returns how long the resource pauses."""
        self.tokens.refill(now)
        self.tokens.give_back(charged)
        self._note(now, 0, True)
        learned = self._learn(info, now, sent_at)
        requests_out = (
            info is not None
            and info.remaining_requests is not None
            and (info.remaining_requests < 1)
        )
        tokens_out = (
            info is not None
            and info.remaining_tokens is not None
            and (info.remaining_tokens < charged)
        )
        blamed = ["tokens"] if tokens_out and not requests_out else ["requests"]
        if tokens_out and requests_out:
            blamed.append("tokens")
        for name in blamed:
            limit = self._limits[name]
            if limit.known is not None or learned:
                self._squeeze_if_frequent(now)
            elif sent_at >= self._cut_at and self._before_cut == 0:
                limit.cut_at = self._cut_at = now
                self._before_cut = self.in_flight
                measured = self._measured(name, now) * DISCOVERY_MARGIN
                limit.discovered = (
                    measured if limit.discovered is None else limit.discovered * CUT_FACTOR
                )
                limit.discovered = max(MIN_RATE[name], limit.discovered)
                limit.probed_at = now
        self._apply(now)
        pause = retry_after
        if pause is None and info is not None:
            resets = [
                reset
                for out, reset in (
                    (requests_out, info.reset_requests),
                    (tokens_out, info.reset_tokens),
                )
                if out and reset is not None
            ]
            pause = min(max(resets), MAX_RESET_PAUSE) if resets else None
        pause = DEFAULT_429_PAUSE if pause is None else pause
        self.paused_until = max(self.paused_until, now + pause)
        for name in blamed:
            bucket = self.requests if name == "requests" else self.tokens
            bucket.hold(1.0 if name == "requests" else charged, pause, now)
        return pause

    def failed(self, info: RateLimitHeaders | None, now: float) -> None:
        """A request failed otherwise (5xx, timeout, connection, malformed reply)."""
        self._learn(info, now)

    # ---- reporting -------------------------------------------------------------------

    @property
    def rpm(self) -> float | None:
        """The request rate aimed at, per minute (``None``: not paced)."""
        return self.requests.rate

    @property
    def tpm(self) -> float | None:
        """The token rate aimed at, per minute (``None``: not paced)."""
        return self.tokens.rate

    def limit(self, name: str) -> float | None:
        """The known limit of ``requests`` or ``tokens`` (server's, else configured)."""
        return self._limits[name].known

    # ---- internals -------------------------------------------------------------------

    def _learn(
        self, info: RateLimitHeaders | None, now: float, sent_at: float | None = None
    ) -> bool:
        if info is None or not self.limits.learn_from_headers:
            return False
        changed = False
        for name, limit in (("requests", info.limit_requests), ("tokens", info.limit_tokens)):
            state = self._limits[name]
            if limit is not None and limit > 0 and limit != state.learned:
                state.learned = float(limit)
                changed = True
        if changed:
            self.window = None
            self._apply(now)
        for bucket, known, remaining, reset in (
            (self.requests, self.limit("requests"), info.remaining_requests, info.reset_requests),
            (self.tokens, self.limit("tokens"), info.remaining_tokens, info.reset_tokens),
        ):
            if remaining is None or bucket.rate is None:
                continue
            bucket.refill(now)
            if (
                known is None
                or reset is None
                or not self._mirror(bucket, known / 60.0, remaining, reset, sent_at, now)
            ):
                bucket.level = min(bucket.level, float(remaining))
        return changed

    def _mirror(
        self,
        bucket: Bucket,
        per_second: float,
        remaining: int,
        reset: float,
        sent_at: float | None,
        now: float,
    ) -> bool:
        """Hold :data:`BURST_SHARE` of the burst the server's headers show (what remains
        plus what refills until it is full), the rest kept for jitter. The request bucket
        never holds more than the server does now less that rest: what it held when the
        request sent at ``sent_at`` reached it, carried over the refill and our sends
        since (at once, ``remaining`` is a moment old). ``False`` when that cannot be
        said (the caller then caps the bucket at ``remaining``)."""
        burst = min(remaining + reset * per_second, per_second * MAX_BURST_SECONDS)
        server_burst = self._server_burst[bucket.name] = max(self._server_burst[bucket.name], burst)
        bucket.burst = max(bucket.burst, BURST_SHARE * server_burst / per_second)
        if bucket.name != "requests" or sent_at is None or not self._sends:
            return False
        if sent_at < self._sends[0]:
            return False  # sends after it were forgotten
        # ``remaining`` is rounded down; what it still lacks to be full is exact.
        held = max(float(remaining), server_burst - reset * per_second)
        server = server_level(held, server_burst, per_second, sent_at, self._sends, now)
        bucket.level = min(bucket.level, server - (server_burst - bucket.capacity))
        return True

    def _apply(self, now: float) -> None:
        """Set each bucket's rate from where its limit comes from."""
        for name, bucket in (("requests", self.requests), ("tokens", self.tokens)):
            state = self._limits[name]
            if state.known is not None:
                # The server's bucket is the truth: a limit its headers state is aimed at
                # exactly; only a configured, unconfirmed one keeps room for clock jitter.
                aim = 1.0 if state.learned is not None else HEADROOM
                rate: float | None = state.known * aim * self.squeeze
            else:
                rate = state.discovered
            if rate != bucket.rate:
                bucket.set_rate(rate, now)
        if self.window is not None and (
            self._limits["requests"].discovered is not None
            or self._limits["tokens"].discovered is not None
        ):
            self.window = None

    def _probe(self, now: float) -> None:
        """Grow a discovered rate while it holds requests back and no 429 comes."""
        grew = False
        for state in self._limits.values():
            if state.known is not None or state.discovered is None:
                continue
            elapsed = min(now - state.probed_at, 1.0)
            state.probed_at = now
            held_back = now - state.throttled_at <= 1.0
            if held_back and elapsed > 0 and not self._recent_429(now, PROBE_QUIET_SECONDS):
                state.discovered *= 1.0 + PROBE_PER_SECOND * elapsed
                grew = True
        if self.squeeze < 1.0 and not self._recent_429(now):
            self.squeeze = min(1.0, self.squeeze + 0.001)
            grew = True
        if grew:
            self._apply(now)

    def _squeeze_if_frequent(self, now: float) -> None:
        recent = [a for a in self._answers if a[0] >= now - MEASURE_SECONDS]
        limited = sum(1 for a in recent if a[2])
        if len(recent) >= 20 and limited / len(recent) > SQUEEZE_SHARE:
            self.squeeze = max(MIN_SQUEEZE, self.squeeze * SQUEEZE_FACTOR)
            self._answers.clear()

    def _recent_429(self, now: float, seconds: float = MEASURE_SECONDS) -> bool:
        return any(a[2] for a in self._answers if a[0] >= now - seconds)

    def _note(self, now: float, tokens: int, limited: bool) -> None:
        self._answers.append((now, tokens, limited))
        while self._answers and self._answers[0][0] < now - MEASURE_SECONDS:
            self._answers.popleft()

    def _measured(self, name: str, now: float) -> float:
        """Units per minute the server accepted over the last :data:`MEASURE_SECONDS`."""
        accepted = [a for a in self._answers if not a[2] and a[0] >= now - MEASURE_SECONDS]
        if not accepted:
            return MIN_RATE[name] * 60.0
        span = max(1.0, now - accepted[0][0])
        total = sum(a[1] for a in accepted) if name == "tokens" else len(accepted)
        return total / span * 60.0
