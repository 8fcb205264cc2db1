"""klaviyo_core.dates: the one parser of Klaviyo's timestamps, settings and bookmarks."""

from __future__ import annotations

import datetime as dt

import pytest

from klaviyo_core import dates

UTC = dt.timezone.utc


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-31T10:20:30Z", dt.datetime(2024, 1, 31, 10, 20, 30, tzinfo=UTC)),
        ("2024-01-31T10:20:30+00:00", dt.datetime(2024, 1, 31, 10, 20, 30, tzinfo=UTC)),
        ("2024-01-31T12:20:30+02:00", dt.datetime(2024, 1, 31, 10, 20, 30, tzinfo=UTC)),
        ("2024-01-31T10:20:30", dt.datetime(2024, 1, 31, 10, 20, 30, tzinfo=UTC)),  # no offset: UTC
        ("2024-01-31", dt.datetime(2024, 1, 31, tzinfo=UTC)),  # a date: its midnight, UTC
        (" 2024-01-31T10:20:30.123456Z ", dt.datetime(2024, 1, 31, 10, 20, 30, 123456, tzinfo=UTC)),
    ],
)
def test_iso_text_is_read_in_utc(text, expected):
    parsed = dates.parse(text)
    assert parsed == expected
    assert parsed is not None and parsed.utcoffset() == dt.timedelta(0)


def test_a_datetime_is_taken_as_is_and_a_naive_one_as_utc():
    aware = dt.datetime(2024, 1, 31, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert dates.parse(aware) == dt.datetime(2024, 1, 31, 10, tzinfo=UTC)
    assert dates.parse(dt.datetime(2024, 1, 31, 10)) == dt.datetime(2024, 1, 31, 10, tzinfo=UTC)


@pytest.mark.parametrize("value", [None, ""])
def test_nothing_is_none(value):
    assert dates.parse(value) is None


@pytest.mark.parametrize("text", ["last tuesday", "2024-13-45", "31/01/2024"])
def test_other_text_raises_or_is_none_on_request(text):
    with pytest.raises(ValueError):
        dates.parse(text)
    assert dates.parse_or_none(text) is None


def test_epoch_round_trip():
    moment = dt.datetime(2024, 1, 31, 10, 20, 30, tzinfo=UTC)
    assert dates.from_epoch(dates.epoch(moment)) == moment
    assert dates.epoch(None) is None
    assert dates.from_epoch(None) is None
    assert dates.utc_now().tzinfo is UTC
