"""Client-side pacing to Klaviyo's per-endpoint limits, shared by every thread.

Klaviyo counts requests per account and endpoint in a one-second (burst) and a
one-minute (steady) window. Three things pace a request here:

* A sliding-window log per window. Any interval of one window's length then holds
  at most ``limit`` requests, so Klaviyo's fixed windows (and the sandbox's fixed or
  sliding ones) can never see more, however the requests are spread: a run alone
  on an account gets no 429. The windows are widened slightly
  (``_WINDOW_MARGIN``) so that jitter in network latency cannot move two windows'
  worth of requests into one of Klaviyo's.
* Klaviyo's own count, from the ``RateLimit-Remaining``/``RateLimit-Reset``
  headers of each answer: after an answer says ``n`` requests remain for ``s``
  seconds, at most ``n`` more requests are sent in those seconds, counting the ones
  sent after the answered one (already in flight) and, since they may reach Klaviyo
  after it, the ones sent before it and not yet answered. This keeps a run that
  shares the account with another client (or follows another process, such as a
  discovery run, into the same minute) from earning 429s.
* Pauses: ``Retry-After`` of a 429 (or an exhausted quota) holds every thread back.

``share`` lets several pipelines split an account's quota. Every limiter keeps
counters (requests, waits, seconds waited, 429s) for progress logs and benchmarks.
"""

from __future__ import annotations

import collections
import threading
import time
import typing as t

Clock = t.Callable[[], float]
Sleep = t.Callable[[float], None]


def _now() -> float:
    return time.monotonic()  # looked up per call, so tests can run on a virtual clock


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


# Requests reach Klaviyo a little after we send them; widen the windows slightly so
# jitter in latency cannot squeeze two windows' worth of requests into one.
_WINDOW_MARGIN = 1.05


class SlidingWindowLimiter:
    """Admit at most ``limit`` calls in any ``window`` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = max(1, limit)
        self.window = window * _WINDOW_MARGIN
        self._sent: collections.deque[float] = collections.deque()

    def wait_time(self, now: float) -> float:
        """Seconds until a call would be admitted (0 when admissible now)."""
        # One expression decides both whether a call has left the window and how long
        # until it does: with two (``now - sent >= window`` and ``sent + window - now``)
        # float rounding let a full window answer "wait 0 s" and admit without limit.
        while self._sent and self._sent[0] + self.window <= now:
            self._sent.popleft()
        if len(self._sent) < self.limit:
            return 0.0
        return self._sent[0] + self.window - now

    def record(self, now: float) -> None:
        self._sent.append(now)


class EndpointLimiter:
    """Burst and steady limits of one endpoint, Klaviyo's own count, and pauses it asks for.

    ``acquire`` returns a ticket (the request's sequence number); pass it back to
    ``observe`` with the answer's headers so the limiter knows which requests the
    answer's ``RateLimit-Remaining`` already counted.
    """

    def __init__(
        self,
        name: str,
        burst_per_second: int,
        steady_per_minute: int,
        *,
        clock: Clock = _now,
        sleep: Sleep = _sleep,
    ) -> None:
        self.name = name
        self.burst_per_second = max(1, burst_per_second)
        self.steady_per_minute = max(1, steady_per_minute)
        self._windows = (
            SlidingWindowLimiter(self.burst_per_second, 1.0),
            SlidingWindowLimiter(self.steady_per_minute, 60.0),
        )
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._paused_until = 0.0
        self._tickets = 0
        self._outstanding: set[int] = set()  # tickets sent and not yet answered
        #: (ticket of the answered request, requests left after it, until when) from headers.
        self._budget: tuple[int, float, float] | None = None
        # Counters (read without the lock: approximate values are fine for logs).
        self.requests = 0
        self.waits = 0
        self.waited_seconds = 0.0
        self.throttled = 0

    def acquire(self) -> int:
        """Block until one request may be sent, count it as sent, and return its ticket."""
        blocked_at: float | None = None
        while True:
            with self._lock:
                now = self._clock()
                delay = self._delay(now)
                if delay <= 0:
                    for window in self._windows:
                        window.record(now)
                    self._tickets += 1
                    self._outstanding.add(self._tickets)
                    self.requests += 1
                    if blocked_at is not None:
                        self.waited_seconds += now - blocked_at
                    return self._tickets
                if blocked_at is None:
                    blocked_at = now
                    self.waits += 1
            self._sleep(delay)

    def _delay(self, now: float) -> float:
        delay = max(self._paused_until - now, *(w.wait_time(now) for w in self._windows))
        if self._budget is not None:
            ticket, remaining, until = self._budget
            if now >= until:
                self._budget = None  # Klaviyo's window has reset
            elif self._tickets - ticket >= remaining:
                delay = max(delay, until - now)
        return delay

    def pause(self, seconds: float) -> None:
        """Hold every thread back for ``seconds`` (Retry-After, or an exhausted quota)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def throttled_for(self, seconds: float | None) -> None:
        """A 429: count it, and pause for its ``Retry-After`` when given."""
        self.throttled += 1
        if seconds is not None:
            self.pause(seconds)

    def observe(self, headers: t.Mapping[str, str], ticket: int | None = None) -> None:
        """Follow ``RateLimit-Remaining``/``RateLimit-Reset`` when Klaviyo sends them.

        ``ticket`` is the one ``acquire`` returned for the answered request (None:
        assume the answer counted every request sent so far).
        """
        remaining = _as_float(headers.get("RateLimit-Remaining"))
        reset = _as_float(headers.get("RateLimit-Reset"))
        if remaining is None or reset is None:
            return
        with self._lock:
            now = self._clock()
            ticket = self._tickets if ticket is None else ticket
            current = self._budget
            # The answer to the most recently sent request knows the most.
            if current is None or ticket >= current[0] or now >= current[2]:
                # Requests sent before this one and still unanswered may reach Klaviyo after it.
                earlier = sum(1 for sent in self._outstanding if sent < ticket)
                self._budget = (ticket, max(0.0, remaining - earlier), now + max(0.0, reset))

    def answered(self, ticket: int | None) -> None:
        """The request with this ticket has its answer (or failed): it is no longer in flight."""
        if ticket is not None:
            with self._lock:
                self._outstanding.discard(ticket)

    def stats(self) -> dict[str, t.Any]:
        return {
            "endpoint": self.name,
            "requests": self.requests,
            "waits": self.waits,
            "waited_seconds": round(self.waited_seconds, 3),
            "throttled": self.throttled,
            "burst_per_second": self.burst_per_second,
            "steady_per_minute": self.steady_per_minute,
        }


def _as_float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class RateLimiters:
    """One limiter per endpoint, created on first use and shared by all threads."""

    def __init__(self, share: float = 1.0, *, clock: Clock = _now, sleep: Sleep = _sleep) -> None:
        if not 0 < share <= 1:
            raise ValueError("share must be in (0, 1]")
        self.share = share
        self._clock = clock
        self._sleep = sleep
        self._limiters: dict[str, EndpointLimiter] = {}
        self._lock = threading.Lock()

    def get(self, name: str, burst_per_second: int, steady_per_minute: int) -> EndpointLimiter:
        with self._lock:
            limiter = self._limiters.get(name)
            if limiter is None:
                limiter = EndpointLimiter(
                    name,
                    max(1, int(burst_per_second * self.share)),
                    max(1, int(steady_per_minute * self.share)),
                    clock=self._clock,
                    sleep=self._sleep,
                )
                self._limiters[name] = limiter
            return limiter

    def all(self) -> list[EndpointLimiter]:
        with self._lock:
            return list(self._limiters.values())
