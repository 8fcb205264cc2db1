"""The per-endpoint limiter on a simulated clock: never over burst or steady, whatever the callers."""

from __future__ import annotations

import bisect
import random
import threading
import time

import pytest

from klaviyo_core.ratelimit import _WINDOW_MARGIN, EndpointLimiter, RateLimiters


class VirtualClock:
    """Time moves only when someone sleeps; safe to share between threads."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += max(seconds, 0.0)


def max_in_any_window(times: list[float], window: float) -> int:
    """The most admissions inside any half-open interval of ``window`` seconds."""
    times = sorted(times)
    return max((bisect.bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


def admit(limiter: EndpointLimiter, clock: VirtualClock, count: int) -> list[float]:
    times = []
    for _ in range(count):
        limiter.acquire()
        times.append(clock())
    return times


@pytest.mark.parametrize(("burst", "steady"), [(350, 3500), (75, 750), (10, 150), (3, 60), (1, 15)])
def test_never_more_than_burst_per_second_or_steady_per_minute(burst, steady):
    clock = VirtualClock()
    limiter = EndpointLimiter("op", burst, steady, clock=clock, sleep=clock.sleep)
    times = admit(limiter, clock, steady * 3 + 7)
    assert max_in_any_window(times, 1.0) <= burst
    assert max_in_any_window(times, 60.0) <= steady
    # and it does use the quota: a whole steady limit within one (widened) minute
    assert max_in_any_window(times, 60.0 * _WINDOW_MARGIN + 0.001) >= steady


def test_many_threads_share_one_limiter_and_stay_within_both_windows():
    clock = VirtualClock()
    limiter = EndpointLimiter("op", 20, 100, clock=clock, sleep=clock.sleep)
    times: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(40):
            limiter.acquire()
            with lock:
                times.append(clock())  # admissions happen under the limiter's lock, then return

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(times) == 320
    assert limiter.requests == 320
    assert max_in_any_window(times, 1.0) <= 20
    assert max_in_any_window(times, 60.0) <= 100


def test_a_share_of_the_limit_scales_both_windows():
    clock = VirtualClock()
    limiters = RateLimiters(0.5, clock=clock, sleep=clock.sleep)
    limiter = limiters.get("get_profiles", 75, 750)
    times = admit(limiter, clock, 1200)
    assert max_in_any_window(times, 1.0) <= 37
    assert max_in_any_window(times, 60.0) <= 375


def test_klaviyo_saying_nothing_remains_holds_requests_until_its_window_resets():
    clock = VirtualClock()
    limiter = EndpointLimiter("op", 100, 1000, clock=clock, sleep=clock.sleep)
    first = limiter.acquire()
    limiter.observe({"RateLimit-Limit": "60", "RateLimit-Remaining": "0", "RateLimit-Reset": "12"}, first)
    start = clock()
    limiter.acquire()
    assert clock() - start >= 12
    assert limiter.waits == 1


def test_requests_already_in_flight_count_against_what_klaviyo_says_remains():
    clock = VirtualClock()
    limiter = EndpointLimiter("op", 100, 1000, clock=clock, sleep=clock.sleep)
    tickets = [limiter.acquire() for _ in range(5)]  # five in flight
    # the answer to the first says 3 remain: the four sent after it already used them
    limiter.observe({"RateLimit-Remaining": "3", "RateLimit-Reset": "30"}, tickets[0])
    start = clock()
    limiter.acquire()
    assert clock() - start >= 30


def test_an_older_answer_does_not_override_a_newer_one():
    clock = VirtualClock()
    limiter = EndpointLimiter("op", 100, 1000, clock=clock, sleep=clock.sleep)
    old, new = limiter.acquire(), limiter.acquire()
    limiter.observe({"RateLimit-Remaining": "50", "RateLimit-Reset": "30"}, new)
    limiter.observe({"RateLimit-Remaining": "0", "RateLimit-Reset": "30"}, old)  # arrives late
    start = clock()
    limiter.acquire()
    assert clock() == start


def test_retry_after_pauses_every_caller_and_counts_the_429():
    clock = VirtualClock()
    limiter = EndpointLimiter("op", 100, 1000, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    limiter.throttled_for(45)
    start = clock()
    limiter.acquire()
    assert clock() - start >= 45
    assert limiter.throttled == 1
    assert limiter.stats()["throttled"] == 1


def test_random_mix_of_callers_and_headers_never_breaks_the_windows():
    rng = random.Random(5)
    clock = VirtualClock()
    limiter = EndpointLimiter("op", 10, 150, clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(700):
        ticket = limiter.acquire()
        times.append(clock())
        if rng.random() < 0.2:
            limiter.observe(
                {"RateLimit-Remaining": str(rng.randrange(0, 20)), "RateLimit-Reset": str(rng.randrange(1, 5))}, ticket
            )
        clock.sleep(rng.choice([0, 0, 0.01, 0.3]))
    assert max_in_any_window(times, 1.0) <= 10
    assert max_in_any_window(times, 60.0) <= 150


def test_unanswered_requests_sent_earlier_count_against_what_remains():
    clock = VirtualClock()
    limiter = EndpointLimiter("op", 100, 1000, clock=clock, sleep=clock.sleep)
    early = [limiter.acquire() for _ in range(3)]  # in flight; may reach Klaviyo after the next one
    answered = limiter.acquire()
    limiter.observe({"RateLimit-Remaining": "4", "RateLimit-Reset": "20"}, answered)
    limiter.answered(answered)
    start = clock()
    limiter.acquire()  # 4 remain, minus the 3 unanswered earlier ones: 1 more may go
    assert clock() == start
    limiter.acquire()
    assert clock() - start >= 20
    for ticket in early:
        limiter.answered(ticket)


# -- learned pace: a quota smaller than published (issue 18) -------------------------------------


def answer_probe(limiter: EndpointLimiter, headers: dict[str, str] | None = None) -> None:
    """Send a request and answer it as a success (an endpoint of a generous burst limit: its probe)."""
    probe = limiter.acquire()
    limiter.observe(headers or {}, probe)
    limiter.succeeded()
    limiter.answered(probe)


def test_a_429_halves_the_requests_in_flight_and_paces_below_what_the_window_admitted():
    clock = VirtualClock()
    limiter = EndpointLimiter("op", 10, 600, clock=clock, sleep=clock.sleep, slow_start=True)
    answer_probe(limiter)
    tickets = [limiter.acquire() for _ in range(5)]  # slow start: 4 in flight, +1 for the probe's success
    assert limiter.pace.in_flight == 5.0
    limiter.throttled_for(1.0)  # burst window ran out after 6 sends in this second
    for ticket in tickets:
        limiter.answered(ticket)
    assert limiter.pace.in_flight == 2.5
    assert limiter.pace.rate == 3.0  # half of the 6 the burst window admitted
    start = clock()
    first, second = limiter.acquire(), limiter.acquire()
    assert clock() - start >= 1.0 + 1 / 3  # the Retry-After, then evenly spaced at 3/s
    limiter.answered(first)
    limiter.answered(second)


def test_successes_grow_the_pace_back_until_the_published_limits_bind_again():
    limiter = EndpointLimiter("op", 10, 600, slow_start=True)
    limiter.throttled_for(None)
    assert limiter.pace.rate is not None
    for _ in range(3000):  # additive growth of the number in flight: ~n successes per step at n
        limiter.succeeded()
    assert limiter.pace.rate is None and limiter.pace.in_flight is None


def test_slow_start_doubles_per_round_trip_until_the_first_429():
    limiter = EndpointLimiter("op", 10, 600, slow_start=True)
    for _ in range(4):
        limiter.succeeded()
    assert limiter.pace.in_flight == 8.0
    limiter.throttled_for(1.0)
    limiter.succeeded()
    assert limiter.pace.in_flight < 4.5  # now additive: a fraction per success


def test_the_first_flight_is_a_share_of_a_generous_burst_limit():
    clock = VirtualClock()
    profiles = EndpointLimiter("get_profiles", 75, 750, clock=clock, sleep=clock.sleep, slow_start=True)
    answer_probe(profiles)
    start = clock()
    tickets = [profiles.acquire() for _ in range(23)]  # a discovery scan's windows, at once
    assert clock() == start and profiles.pace.in_flight == 23.0  # 22, +1 for the probe's success
    assert not profiles.pace.admits(23)  # the 24th waits for an answer
    for ticket in tickets:
        profiles.answered(ticket)
    assert EndpointLimiter("op", 10, 150, slow_start=True).pace.in_flight == 4.0  # small limits: 4


def test_an_endpoints_first_request_goes_alone_and_its_count_bounds_the_first_flight():
    # 16 threads starting on 12 lists' members once sent 12 requests at once against a burst
    # quota of 4 that other integrations had left: 8 429s before any answer could say so.
    clock = VirtualClock()
    limiter = EndpointLimiter("op", 75, 750, clock=clock, sleep=clock.sleep, slow_start=True)
    probe = limiter.acquire()
    start = clock()
    limiter.acquire()  # nothing answered the probe: waits for it, but not forever
    assert 29.0 <= clock() - start <= 31.0
    limiter.answered(probe)

    limiter = EndpointLimiter("op", 75, 750, clock=clock, sleep=clock.sleep, slow_start=True)
    answer_probe(limiter, {"RateLimit-Remaining": "3", "RateLimit-Reset": "1"})
    start = clock()
    for _ in range(3):
        limiter.acquire()
    assert clock() == start  # what Klaviyo said remains goes at once
    limiter.acquire()
    assert clock() - start >= 1.0  # the fourth waits for the window to reset


def test_after_a_window_used_up_below_the_published_limits_resets_one_request_probes_it_again():
    clock = VirtualClock()
    limiter = EndpointLimiter("op", 75, 750, clock=clock, sleep=clock.sleep, slow_start=True)
    answer_probe(limiter, {"RateLimit-Remaining": "1", "RateLimit-Reset": "1"})
    early = limiter.acquire()
    start = clock()
    probe = limiter.acquire()  # waited for the reset: goes alone
    assert clock() - start >= 1.0
    start = clock()
    limiter.acquire()
    assert clock() - start >= 29.0  # waits on the probe's answer (here: never comes)
    for ticket in (early, probe):
        limiter.answered(ticket)


def test_a_window_our_own_requests_used_up_is_paced_by_the_published_limits_alone():
    # flow messages (3 a second): waiting for Klaviyo's reset, rounded up to whole seconds, sent
    # 3 every 1.3-1.65 s; probing each window would cost a round trip more
    clock = VirtualClock()
    limiter = EndpointLimiter("op", 3, 750, clock=clock, sleep=clock.sleep, slow_start=True)
    answer_probe(limiter, {"RateLimit-Remaining": "2", "RateLimit-Reset": "2"})
    start = clock()
    for ticket in [limiter.acquire() for _ in range(2)]:
        limiter.answered(ticket)
    tickets = [limiter.acquire() for _ in range(3)]  # when the published window frees, all three
    assert clock() - start == pytest.approx(_WINDOW_MARGIN)
    for ticket in tickets:
        limiter.answered(ticket)

    # a window that was not used up leaves no probe behind either
    limiter = EndpointLimiter("op", 75, 750, clock=clock, sleep=clock.sleep, slow_start=True)
    answer_probe(limiter, {"RateLimit-Remaining": "5", "RateLimit-Reset": "1"})
    clock.sleep(2.0)
    start = clock()
    tickets = [limiter.acquire() for _ in range(4)]
    assert clock() == start
    for ticket in tickets:
        limiter.answered(ticket)


def test_without_slow_start_nothing_waits_for_an_answer():
    clock = VirtualClock()
    limiter = EndpointLimiter("op", 75, 750, clock=clock, sleep=clock.sleep)
    start = clock()
    for _ in range(10):
        limiter.acquire()
    assert clock() == start


def test_requests_wait_for_a_place_in_flight_but_never_forever():
    clock = VirtualClock()
    limiter = EndpointLimiter("op", 10, 600, clock=clock, sleep=clock.sleep, slow_start=True)
    start = clock()
    for _ in range(4):
        limiter.acquire()  # never answered (a hung request)
    assert clock() == start  # a small first flight goes without a probe
    start = clock()
    limiter.acquire()
    assert 29.0 <= clock() - start <= 31.0


def test_one_thread_at_a_time_sleeps_for_the_next_turn_the_others_queue_behind_it():
    # Each sleeping on its own, every blocked thread woke for every request sent and slept
    # again: wake-ups grew with the threads. Real time here: the sleeps must overlap to count.
    sleeping, peak = 0, 0
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        nonlocal sleeping, peak
        with lock:
            sleeping += 1
            peak = max(peak, sleeping)
        time.sleep(seconds)
        with lock:
            sleeping -= 1

    limiter = EndpointLimiter("op", 10, 1000, sleep=sleep)
    threads = [threading.Thread(target=lambda: [limiter.acquire() for _ in range(5)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert limiter.requests == 20 and limiter.waits >= 1
    assert peak == 1
