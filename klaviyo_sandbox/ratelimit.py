"""Per-operation rate limits (burst per second, steady per minute, optional daily cap).

Limits come from the spec's `x-klaviyo-ratelimit`, multiplied by `rate_limit_scale`.
Klaviyo documents fixed windows; a sliding log is available for stricter testing.
Rejected requests don't consume quota.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque


class RateLimiter:
    def __init__(self, scale: float, mode: str = "fixed", clock=time.monotonic):
        self.scale, self.mode, self.clock = scale, mode, clock
        self.lock = threading.Lock()
        self.fixed: dict = {}  # (key, window) -> [window start, count]
        self.logs: dict = {}  # (key, window) -> deque of timestamps

    @property
    def enabled(self) -> bool:
        return self.scale > 0

    def limits(self, burst: int, steady: int, daily: int = 0) -> list:
        out = [(max(1, round(burst * self.scale)), 1), (max(1, round(steady * self.scale)), 60)]
        if daily:
            out.append((max(1, round(daily * self.scale)), 86400))
        return out

    def check(self, key: str, burst: int, steady: int, daily: int = 0):
        """Returns (True, headers) or (False, retry_after_seconds)."""
        windows = self.limits(burst, steady, daily)
        with self.lock:
            now = self.clock()
            states = [self._state(key, limit, w, now) for limit, w in windows]
            blocked = [(reset, limit) for (used, reset), (limit, _) in zip(states, windows) if used >= limit]
            if blocked:
                return False, max(1, math.ceil(max(r for r, _ in blocked)))
            for _limit, w in windows:
                self._consume(key, w, now)
            # Report the window closest to running out (what a client should pace against).
            remaining, limit, reset = min(
                (limit - used - 1, limit, reset) for (used, reset), (limit, _) in zip(states, windows)
            )
        return True, {
            "RateLimit-Limit": str(limit),
            "RateLimit-Remaining": str(max(0, remaining)),
            "RateLimit-Reset": str(max(0, math.ceil(reset))),
        }

    def _state(self, key, limit, w, now):
        """(used in current window, seconds until a slot frees)."""
        if self.mode == "fixed":
            start, count = self.fixed.get((key, w), (None, 0))
            cur = math.floor(now / w) * w
            if start != cur:
                count = 0
            return count, cur + w - now
        log = self.logs.setdefault((key, w), deque())
        while log and log[0] <= now - w:
            log.popleft()
        reset = (log[0] + w - now) if len(log) >= limit else (log[0] + w - now if log else w)
        return len(log), reset

    def _consume(self, key, w, now):
        if self.mode == "fixed":
            cur = math.floor(now / w) * w
            start, count = self.fixed.get((key, w), (None, 0))
            self.fixed[(key, w)] = [cur, (count if start == cur else 0) + 1]
        else:
            self.logs[(key, w)].append(now)
