"""Client-side pacing to Klaviyo's per-endpoint limits, shared by every thread.

Klaviyo counts requests per account and endpoint in a one-second (burst) and a
one-minute (steady) window. Five things pace a request here:

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
  discovery run, into the same minute) from earning 429s. When the count runs out just
  as the published limits do, the run's own requests used it up: the sliding windows
  pace the next ones, without waiting for Klaviyo's reset (whole seconds, rounded up).
* Probes (with ``slow_start``): the first request to an endpoint of a generous burst limit
  goes alone, and so does the first after a window resets whose count ran out before the
  published limits did; the others wait for its answer, whose count says how much of the
  quota others left. Without them, 16 threads starting on 12 lists' members sent 12
  requests at once against a burst quota of 4 left to the run, and again each time the
  window reset.
* Pauses: ``Retry-After`` of a 429 (or an exhausted quota) holds every thread back.
* Learned pacing (:class:`AdaptivePace`): other integrations share the account's quota,
  so the limit a run really gets can be a small fraction of the published one. A 429
  lowers a learned rate (requests spaced evenly, so a burst window is not emptied at
  once) and the number of requests in flight; answers that succeed raise both again,
  slowly, until the published limits bind once more.

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
#: Seconds between looks at the number of requests in flight when it is at its learned maximum.
_IN_FLIGHT_POLL = 0.05
#: The longest a request waits for a place among the requests in flight.
_IN_FLIGHT_MAX_WAIT = 30.0


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


class AdaptivePace:
    """What 429s taught about the quota really left: a rate and a number of requests in flight.

    Additive increase, multiplicative decrease (as TCP does): a 429 halves the number
    of requests in flight and sets the rate below what was sent in the window that
    ran out (the burst window when Klaviyo asks to wait a second or less, else the
    steady one); each success adds a little back. ``None`` means "not learned": only
    the published limits bind.
    """

    #: Growth per successful answer: ~1 % more rate, 1/n of a request more in flight.
    RATE_GROWTH = 1.01
    #: After a 429, pace at this fraction of what the exhausted window admitted.
    BACK_OFF = 0.5
    #: Requests in flight on an endpoint's first contact ("slow start", as TCP): each
    #: success adds one (doubling per round trip) until the first 429 or the cap, so a
    #: quota smaller than published costs a few 429s, not one per thread.
    SLOW_START = 4.0
    #: ...or this share of the published burst limit, when larger: an endpoint that admits
    #: 75 requests a second (profiles) starts with 22 in flight, so a discovery scan's
    #: windows go out at once instead of in three round trips, while the first flight
    #: still leaves 70% of a second's quota to others on the account.
    SLOW_START_BURST_SHARE = 0.3
    #: In flight beyond this, only the published limits (and max_concurrency) bind.
    UNBOUNDED = 64.0

    def __init__(self, burst_per_second: int, *, slow_start: bool = False) -> None:
        self.ceiling = float(burst_per_second)
        self.rate: float | None = None  # requests per second
        self.first_flight = max(self.SLOW_START, float(int(burst_per_second * self.SLOW_START_BURST_SHARE)))
        self.in_flight: float | None = self.first_flight if slow_start else None  # requests in flight
        self.slow_start = slow_start

    def throttled(
        self, sent_last_second: int, sent_last_minute: int, in_flight: int, retry_after: float | None
    ) -> None:
        observed = (
            sent_last_minute / 60.0  # the steady window ran out
            if retry_after is not None and retry_after > 1.0
            else float(sent_last_second)  # the burst window ran out
        )
        proposal = max(1.0 / 60.0, observed * self.BACK_OFF)
        self.rate = proposal if self.rate is None else min(self.rate, proposal)
        self.slow_start = False
        current = self.in_flight if self.in_flight is not None else float(max(1, in_flight))
        self.in_flight = max(1.0, min(current, float(max(1, in_flight))) / 2)

    def succeeded(self) -> None:
        if self.rate is not None:
            self.rate *= self.RATE_GROWTH
            if self.rate >= self.ceiling:
                self.rate = None  # the published burst limit binds again
        if self.in_flight is not None:
            self.in_flight += 1.0 if self.slow_start else 1.0 / self.in_flight
            if self.in_flight >= self.UNBOUNDED:
                self.in_flight = None

    def interval(self) -> float:
        """Seconds between two sends (0: no learned rate)."""
        return 1.0 / self.rate if self.rate else 0.0

    def admits(self, in_flight: int) -> bool:
        return self.in_flight is None or in_flight < int(self.in_flight)


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
        slow_start: bool = False,
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
        self._gate = threading.Lock()  # held by the one thread waiting for the next request's turn
        self._paused_until = 0.0
        self._tickets = 0
        self._outstanding: set[int] = set()  # tickets sent and not yet answered
        #: (ticket of the answered request, requests left after it, until when) from headers.
        self._budget: tuple[int, float, float] | None = None
        self.pace = AdaptivePace(self.burst_per_second, slow_start=slow_start)
        self._probes = slow_start  # callers report answers, so a request can wait for one
        #: The next request goes alone and the others wait for its answer: first, where the first
        #: flight is a share of a generous burst limit. Not where it is the 4 of slow start: flow
        #: messages (3 a second) then went out in two waves a second, 1.4 s of a 14 s full sync.
        self._probe_due = slow_start and self.pace.first_flight > AdaptivePace.SLOW_START
        self._probe: int | None = None  # the ticket of the probe in flight
        self._shared_window_reset = False  # probe when Klaviyo's current window resets
        self._last_sent = float("-inf")
        # Counters (read without the lock: approximate values are fine for logs).
        self.requests = 0
        self.waits = 0
        self.waited_seconds = 0.0
        self.throttled = 0

    def acquire(self) -> int:
        """Block until one request may be sent, count it as sent, and return its ticket."""
        # One thread at a time sleeps until the next request may go; the others wait for it
        # on the gate, woken one by one. Each sleeping on its own, every waiting thread woke
        # for every request sent, found no room left, and slept again.
        with self._gate:
            return self._acquire()

    def _acquire(self) -> int:
        blocked_at: float | None = None
        while True:
            with self._lock:
                now = self._clock()
                delay = self._delay(now, waited=0.0 if blocked_at is None else now - blocked_at)
                if delay <= 0:
                    for window in self._windows:
                        window.record(now)
                    self._last_sent = now
                    self._tickets += 1
                    self._outstanding.add(self._tickets)
                    if self._probe_due:
                        self._probe_due, self._probe = False, self._tickets
                    self._note_if_used_up(now)
                    self.requests += 1
                    if blocked_at is not None:
                        self.waited_seconds += now - blocked_at
                    return self._tickets
                if blocked_at is None:
                    blocked_at = now
                    self.waits += 1
            self._sleep(delay)

    def _delay(self, now: float, waited: float = 0.0) -> float:
        delay = max(self._paused_until - now, *(w.wait_time(now) for w in self._windows))
        delay = max(delay, self._last_sent + self.pace.interval() - now)
        if self._budget is not None:
            ticket, remaining, until = self._budget
            if now >= until:  # Klaviyo's window has reset: what is left of the next is unknown
                self._budget = None
                self._probe_due = self._probe_due or self._shared_window_reset
                self._shared_window_reset = False
            elif self._tickets - ticket >= remaining:
                delay = max(delay, until - now)
        # Wait for an answer (a probe's, or one to free a place), but not forever: a caller that
        # never reports its answer (or a hung request) must not stop every other thread.
        if delay <= 0 and waited < _IN_FLIGHT_MAX_WAIT and self._waits_for_an_answer():
            delay = _IN_FLIGHT_POLL
        return delay

    def _note_if_used_up(self, now: float) -> None:
        """When Klaviyo's count of its window has just run out: whose requests used it up?

        Where the published limits ran out as well, ours did: the sliding windows pace the next
        requests (they admit no more than Klaviyo's fixed windows would), without waiting for
        Klaviyo's reset, which it rounds up to whole seconds (flow messages, 3 a second, went 3
        every 1.3-1.65 s at 300 ms latency), and without a probe. Where they still admit, others
        use the quota (or it is smaller than published): the count holds until the window
        resets, and the first request after goes alone.
        """
        if self._budget is None:
            return
        ticket, remaining, until = self._budget
        if self._tickets - ticket < remaining or now >= until:
            return
        shared = all(w.wait_time(now) <= 0 for w in self._windows)
        self._shared_window_reset = shared and self._probes
        if not shared:
            self._budget = None

    def _waits_for_an_answer(self) -> bool:
        return self._probe is not None or not self.pace.admits(len(self._outstanding))

    def pause(self, seconds: float) -> None:
        """Hold every thread back for ``seconds`` (Retry-After, or an exhausted quota)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def throttled_for(self, seconds: float | None) -> None:
        """A 429: count it, learn a slower pace, and pause for its ``Retry-After`` when given."""
        with self._lock:
            self.throttled += 1
            now = self._clock()
            burst, steady = self._windows
            self.pace.throttled(
                sum(1 for sent in burst._sent if sent > now - 1.0),  # noqa: SLF001 - same module
                sum(1 for sent in steady._sent if sent > now - 60.0),  # noqa: SLF001
                len(self._outstanding),
                seconds,
            )
        if seconds is not None:
            self.pause(seconds)

    def succeeded(self) -> None:
        """An answer that was not a 429: let the learned pace grow back."""
        with self._lock:
            self.pace.succeeded()

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
                self._note_if_used_up(now)

    def answered(self, ticket: int | None) -> None:
        """The request with this ticket has its answer (or failed): it is no longer in flight."""
        if ticket is not None:
            with self._lock:
                self._outstanding.discard(ticket)
                if ticket == self._probe:
                    self._probe = None

    def stats(self) -> dict[str, t.Any]:
        return {
            "endpoint": self.name,
            "requests": self.requests,
            "waits": self.waits,
            "waited_seconds": round(self.waited_seconds, 3),
            "throttled": self.throttled,
            "learned_rate_per_second": round(self.pace.rate, 2) if self.pace.rate else None,
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

    def __init__(
        self, share: float = 1.0, *, clock: Clock = _now, sleep: Sleep = _sleep, slow_start: bool = False
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError("share must be in (0, 1]")
        self.share = share
        #: Start each endpoint with a few requests in flight (callers must report answers).
        self.slow_start = slow_start
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
                    slow_start=self.slow_start,
                )
                self._limiters[name] = limiter
            return limiter

    def all(self) -> list[EndpointLimiter]:
        with self._lock:
            return list(self._limiters.values())
