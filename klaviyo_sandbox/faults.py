"""Deterministic fault injection: the n-th request's fault depends only on (seed, n)."""

from __future__ import annotations

import threading

from .util import h, mix, salt

SLOW_RANGE = (1.0, 2.0)
BURST_429 = 3  # a 429 fault answers this many consecutive requests with 429


class FaultInjector:
    def __init__(self, seed: int, rate: float, kinds: tuple):
        self.rate, self.kinds = rate, tuple(kinds)
        self.base = h(seed, salt("faults"))
        self.n = 0
        self.burst_left = 0
        self.lock = threading.Lock()

    def pick(self) -> tuple[str | None, float]:
        """(fault kind or None, a deterministic uniform in [0,1) for parameters like delays)."""
        with self.lock:
            if self.burst_left:  # a 429 burst continues whatever the rate
                self.burst_left -= 1
                return "429", 0.0
            if self.rate <= 0 or not self.kinds:
                return None, 0.0
            self.n += 1
            x = mix(self.base ^ self.n)
            u = (x >> 11) / float(1 << 53)
            if u >= self.rate:
                return None, 0.0
            kind = self.kinds[mix(x) % len(self.kinds)]
            if kind == "429":
                self.burst_left = BURST_429 - 1
            return kind, (mix(x ^ 1) >> 11) / float(1 << 53)

    @staticmethod
    def slow_seconds(u: float) -> float:
        return SLOW_RANGE[0] + u * (SLOW_RANGE[1] - SLOW_RANGE[0])
