"""Long runs say, per stream, how much of their time window is done and about how long is left."""

from __future__ import annotations

import calendar
import logging

from tap_klaviyo.progress import Progress


def _epoch(day: str) -> float:
    return float(calendar.timegm(tuple(map(int, day.split("-"))) + (0, 0, 0)))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_quarter_done_in_an_hour_leaves_about_three_hours(caplog) -> None:
    clock = Clock()
    progress = Progress("events", logging.getLogger("test-progress"), interval=15, clock=clock)
    progress.window(_epoch("2024-01-01"), _epoch("2024-01-05"))
    progress.at(_epoch("2024-01-01"))
    clock.now += 3600
    progress.add(1000)
    progress.at(_epoch("2024-01-02"))

    with caplog.at_level(logging.INFO, logger="test-progress"):
        progress.log()

    assert "window 2024-01-01..2024-01-05 25% done, about 3 h 00 min left" in caplog.text


def test_without_a_lower_bound_the_window_starts_at_the_first_record() -> None:
    clock = Clock()
    progress = Progress("profiles", logging.getLogger("test-progress"), clock=clock)
    progress.window(None, _epoch("2024-01-11"))
    progress.at(_epoch("2024-01-01"))
    clock.now += 60
    progress.at(_epoch("2024-01-06"))

    assert progress.window_done() == "window 2024-01-01..2024-01-11 50% done, about 1 min left"


def test_no_window_part_before_a_record_or_for_streams_without_one() -> None:
    progress = Progress("metrics", logging.getLogger("test-progress"))
    assert progress.window_done() is None
    progress.window(_epoch("2024-01-01"), _epoch("2024-01-02"))
    assert progress.window_done() is None
