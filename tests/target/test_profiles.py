"""Row to profile mapping: what each column becomes, and which values are refused."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from target_klaviyo.jobs import job_body, split_for_jobs
from target_klaviyo.profiles import PreparedProfile, encoded_size, normalise_phone, profile_attributes
from target_klaviyo.rejects import RowRejected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+14155550123", "+14155550123"),
        ("+1 (415) 555-0123", "+14155550123"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+33.1.23.45.67.89", "+33123456789"),
        ("+491234567890123", "+491234567890123"),  # 15 digits: the E.164 maximum
    ],
)
def test_phone_numbers_lose_only_spaces_dashes_dots_and_parentheses(raw, expected):
    assert normalise_phone(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "4155550123",  # no country code: never guessed
        "001 415 555 0123",  # international prefix instead of +
        "+1 415 555 0123 ext 4",
        "+4912345678901234",  # 16 digits
        "+0 415 555 0123",  # country codes do not start with 0
        "+1/415/555/0123",  # slashes are not in the list of removable characters
        14155550123,
        "",
    ],
)
def test_phone_numbers_that_are_not_e164_are_rejected(raw):
    with pytest.raises(RowRejected, match="phone_number"):
        normalise_phone(raw)


def test_standard_columns_become_attributes_and_the_rest_properties():
    row = {
        "email": " ann@example.com ",
        "external_id": Decimal("42"),
        "first_name": "Ann",
        "title": "CTO",
        "organization": "Acme",
        "locale": "en-US",
        "image": "https://example.com/a.png",
        "location": {"city": "Paris", "latitude": Decimal("48.8566")},
        "country": "FR",
        "longitude": "2.3522",
        "zip": 75001,
        "plan": "pro",
        "seats": Decimal("3"),
        "ratio": Decimal("0.25"),
        "renews": dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc),
        "tags": ["a", "b"],
        "properties": {"source": "warehouse"},
        "_sdc_batched_at": "2026-01-01T00:00:00Z",
        "empty": "  ",
        "nothing": None,
    }

    assert profile_attributes(row) == {
        "email": "ann@example.com",
        "external_id": "42",
        "first_name": "Ann",
        "organization": "Acme",
        "title": "CTO",
        "locale": "en-US",
        "image": "https://example.com/a.png",
        "location": {"city": "Paris", "latitude": 48.8566, "country": "FR", "longitude": "2.3522", "zip": "75001"},
        "properties": {
            "source": "warehouse",
            "plan": "pro",
            "seats": 3,
            "ratio": 0.25,
            "renews": "2026-05-01T12:00:00+00:00",
            "tags": ["a", "b"],
        },
    }


def test_a_profile_never_carries_subscriptions_even_from_a_column_of_that_name():
    attributes = profile_attributes({"email": "a@example.com", "subscriptions": {"email": "SUBSCRIBED"}})

    assert "subscriptions" not in attributes
    assert attributes["properties"] == {"subscriptions": {"email": "SUBSCRIBED"}}


@pytest.mark.parametrize(
    ("row", "kind"),
    [
        ({"email": "a@example.com", "location": "Paris"}, "location not an object"),
        ({"email": "a@example.com", "location": {"planet": "Mars"}}, "unknown location field"),
        ({"email": "a@example.com", "first_name": {"given": "A"}}, "first_name not text"),
        ({"email": "a@example.com", "score": float("inf")}, "value not JSON"),
        ({"email": "a@example.com", "blob": object()}, "value not JSON"),
        ({"email": "two@@example.com"}, "invalid email"),
        ({"email": "no-domain@example"}, "invalid email"),
        ({"email": 42}, "invalid email"),
        ({"email": "   "}, "missing email"),
    ],
)
def test_rows_that_cannot_be_a_profile_are_rejected_with_a_kind(row, kind):
    with pytest.raises(RowRejected) as caught:
        profile_attributes(row)
    assert caught.value.kind == kind


def _prepared(i: int, size: int) -> PreparedProfile:
    resource = {"type": "profile", "attributes": {"email": f"p{i}@example.com", "properties": {"x": "y" * size}}}
    return PreparedProfile(row={}, resource=resource, size=encoded_size(resource))


def test_split_for_jobs_respects_the_count_limit():
    profiles = [_prepared(i, 1) for i in range(7)]

    groups = split_for_jobs(profiles, "L1", max_profiles=3)

    assert [len(g) for g in groups] == [3, 3, 1]


def test_split_for_jobs_measures_the_exact_encoded_body():
    profiles = [_prepared(i, 1000) for i in range(10)]
    one_body = encoded_size(job_body([p.resource for p in profiles[:4]], "L1"))

    groups = split_for_jobs(profiles, "L1", max_bytes=one_body)

    assert [len(g) for g in groups] == [4, 4, 2]
    assert all(encoded_size(job_body([p.resource for p in g], "L1")) <= one_body for g in groups)
