"""Dates and times for both plugins: the one place that parses and makes timestamps.

Standard library only (no pendulum): Klaviyo's timestamps and the settings are ISO 8601,
which ``datetime.fromisoformat`` reads once a trailing ``Z`` is spelled ``+00:00``
(Python 3.10's parser does not take ``Z``). Every value comes back timezone-aware in UTC;
a value without an offset is taken as UTC (Klaviyo's and Singer's convention).
"""

from __future__ import annotations

import datetime as dt
import typing as t

UTC = dt.timezone.utc


def utc_now() -> dt.datetime:
    return dt.datetime.now(UTC)


def as_utc(value: dt.datetime) -> dt.datetime:
    """``value`` in UTC; a naive value is taken as UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse(value: t.Any) -> dt.datetime | None:
    """An ISO 8601 date or date-time (or a datetime) in UTC; None for None or "".

    Raises ValueError for any other text.
    """
    if not value:
        return None
    if isinstance(value, dt.datetime):
        return as_utc(value)
    return as_utc(dt.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00")))


def parse_or_none(value: t.Any) -> dt.datetime | None:
    """``parse``, with None also for text that is not a date (for checks that report it)."""
    try:
        return parse(value)
    except (TypeError, ValueError):
        return None


def epoch(value: dt.datetime | None) -> float | None:
    """Seconds since 1970 (None stays None): what the parallel reader compares."""
    return value.timestamp() if value else None


def from_epoch(value: float | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(value, tz=UTC) if value is not None else None
