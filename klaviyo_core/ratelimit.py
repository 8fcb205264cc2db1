"""Client-side pacing to Klaviyo's per-endpoint limits, shared by every thread.

Klaviyo counts requests per account and endpoint in a one-second (burst) and a
one-minute (steady) window. A sliding-window log keeps any such window, fixed or
sliding, under both limits, so a run alone on an account never sees a 429. The
``share`` lets two pipelines split an account's quota.
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
        while self._sent and now - self._sent[0] >= self.window:
            self._sent.popleft()
        if len(self._sent) < self.limit:
            return 0.0
        return self._sent[0] + self.window - now

    def record(self, now: float) -> None:
        self._sent.append(now)


class EndpointLimiter:
    """Burst and steady limits of one endpoint, plus pauses Klaviyo asks for."""

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
        self._windows = (
            SlidingWindowLimiter(burst_per_second, 1.0),
            SlidingWindowLimiter(steady_per_minute, 60.0),
        )
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._paused_until = 0.0
        self.waited_seconds = 0.0
        self.waits = 0

    def acquire(self) -> None:
        """Block until one request may be sent, then count it as sent."""
        while True:
            with self._lock:
                now = self._clock()
                delay = max([self._paused_until - now] + [w.wait_time(now) for w in self._windows])
                if delay <= 0:
                    for window in self._windows:
                        window.record(now)
                    return
                self.waited_seconds += delay
                self.waits += 1
            self._sleep(delay)

    def pause(self, seconds: float) -> None:
        """Hold every thread back for ``seconds`` (Retry-After, or an exhausted quota)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def observe(self, headers: t.Mapping[str, str]) -> None:
        """Follow ``RateLimit-Remaining``/``RateLimit-Reset`` when Klaviyo sends them."""
        remaining = _as_float(headers.get("RateLimit-Remaining"))
        reset = _as_float(headers.get("RateLimit-Reset"))
        if remaining is not None and reset is not None and remaining <= 0:
            self.pause(reset)


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
