"""One progress line in the log every so often while a stream syncs (records, requests, window done)."""

from __future__ import annotations

import logging
import time
import typing as t


class Progress:
    """One INFO line every ``interval`` seconds while a stream syncs.

    ``events: 1,204,000 records (40,100/s; last 15 s: 41,800/s), 1,210 requests
    (40.3/s of 58.3/s steady limit), 3 rate-limit waits (2.1 thread-s), 0 429s, 12 pages buffered,
    window 2024-01-01..2026-12-02 42% done, about 1 h 10 min left``

    The window part appears for sorted incremental streams (``window`` and ``at`` are given): how far
    the records emitted are through the stream's time window, and the time left at this run's pace.
    """

    def __init__(
        self,
        stream: str,
        logger: logging.Logger,
        *,
        interval: float = 15.0,
        counters: t.Callable[[], dict[str, float]] | None = None,
        clock: t.Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.logger = logger
        self.interval = interval
        self._counters = counters or dict
        self._clock = clock
        self.started = clock()
        self.records = 0
        self._last_at = self.started
        self._last_records = 0
        self._base = dict(self._counters())
        self._window: tuple[float | None, float] | None = None
        self._window_started = self.started
        self._first: float | None = None
        self._position: float | None = None

    def window(self, lower: float | None, upper: float) -> None:
        """The time window (epoch seconds) this sync covers; ``lower`` None: from the first record."""
        self._window = (lower, upper)
        self._first = self._position = None
        self._window_started = self._clock()

    def at(self, position: float | None) -> None:
        """The replication-key value (epoch seconds) of the latest record emitted."""
        if position is None:
            return
        if self._first is None:
            self._first = position
        self._position = position

    def window_done(self) -> str | None:
        """``window 2024-01-01..2026-12-02 42% done, about 1 h 10 min left``, or None when unknown."""
        if self._window is None or self._position is None:
            return None
        lower, upper = self._window
        start = self._first if lower is None else lower
        if start is None or upper <= start:
            return None
        done = min(max((self._position - start) / (upper - start), 0.0), 1.0)
        text = f"window {_day(start)}..{_day(upper)} {done:.0%} done"
        elapsed = self._clock() - self._window_started
        if 0 < done < 1 and elapsed > 0:
            text += f", about {_duration(elapsed * (1 - done) / done)} left"
        return text

    def add(self, records: int) -> None:
        self.records += records

    def tick(self) -> None:
        """Log if the interval has passed (cheap enough to call per page)."""
        now = self._clock()
        if now - self._last_at >= self.interval:
            self.log(now)

    def log(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        elapsed = max(now - self.started, 1e-9)
        recent = max(now - self._last_at, 1e-9)
        counters = self._counters()
        delta = {k: v - self._base.get(k, 0) for k, v in counters.items()}
        requests = int(delta.get("requests", 0))
        parts = [
            f"{self.stream}: {self.records:,} records ({self.records / elapsed:,.0f}/s; "
            f"last {recent:.0f} s: {(self.records - self._last_records) / recent:,.0f}/s)",
        ]
        limit = counters.get("steady_per_minute")
        rate = f"{requests / elapsed:.1f}/s"
        if limit:
            rate += f" of {limit / 60:.1f}/s steady limit"
        parts.append(f"{requests:,} requests ({rate})")
        parts.append(f"{int(delta.get('waits', 0))} rate-limit waits ({delta.get('waited_seconds', 0):.1f} thread-s)")
        parts.append(f"{int(delta.get('throttled', 0))} 429s")
        if "buffered_pages" in counters:
            parts.append(f"{int(counters['buffered_pages'])} pages buffered")
        window = self.window_done()
        if window:
            parts.append(window)
        self.logger.info(", ".join(parts))
        self._last_at, self._last_records = now, self.records


def _day(epoch: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(epoch))


def _duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3 h 05 min``: precise enough for an estimate."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(int(seconds) // 60, 60)
    return f"{hours} h {minutes:02d} min"
