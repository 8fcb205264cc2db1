"""Every stream: one page, several pages, a first sync, a resumed sync, record shape."""

from __future__ import annotations

import jsonschema
import pytest

from tap_klaviyo.stream import load_schema
from tap_klaviyo.tap import TapKlaviyo
from tap_klaviyo.windows import WHOLE_RANGE
from tests.tap.conftest import CONFIG, run_sync
from tests.tap.fake_klaviyo import (
    FakeKlaviyo,
    campaign,
    event,
    member,
    profile,
    review,
    simple,
    ts,
)

# stream -> (collection path, resource factory taking (id, day), filter field, lower-bound operator)
INCREMENTAL = {
    "events": ("/api/events", lambda i, d: event(i, ts(d)), "datetime", "greater-or-equal"),
    "profiles": ("/api/profiles", lambda i, d: profile(i, ts(d)), "updated", "greater-than"),
    "flows": (
        "/api/flows",
        lambda i, d: simple("flow", i, ts(d), status="live", archived=False, trigger_type="Metric"),
        "updated",
        "greater-or-equal",
    ),
    "lists": (
        "/api/lists",
        lambda i, d: simple("list", i, ts(d), opt_in_process="single_opt_in"),
        "updated",
        "greater-than",
    ),
    "segments": (
        "/api/segments",
        lambda i, d: simple(
            "segment", i, ts(d), definition=None, is_active=True, is_processing=False, is_starred=False
        ),
        "updated",
        "greater-than",
    ),
}


# Sorted streams that can bound their filter make one extra "tail" request for
# records dated after the run started (future-dated ones exist in Klaviyo).
TAIL_PASS = {"events": 1, "profiles": 1, "flows": 1, "lists": 0, "segments": 0}
# Flows are read live, then archived (Klaviyo hides archived ones unless asked): each pass
# makes its own requests; the archived one finds nothing here.
PASSES = {"flows": 2}


def live_bookmark(state: dict, stream: str) -> str:
    """The bookmark of the stream, or of its live pass when it has an archived one."""
    bookmarks = state["bookmarks"][stream]
    for partition in bookmarks.get("partitions", []):
        if partition["context"] == {"archived": False}:
            return partition["replication_key_value"]
    return bookmarks["replication_key_value"]


def seed(fake: FakeKlaviyo, stream: str, days: list[int]) -> None:
    path, factory, *_ = INCREMENTAL[stream]
    fake.add(path, *(factory(f"{stream[:2]}{day}", day) for day in days))


def assert_conforms(stream: str, records: list[dict]) -> None:
    validator = jsonschema.Draft7Validator(load_schema(stream))
    for record in records:
        validator.validate(record)


@pytest.mark.parametrize("stream", sorted(INCREMENTAL))
def test_one_page_is_read_flattened_and_conforms_to_the_schema(fake, stream):
    seed(fake, stream, [3, 4, 5])
    result = run_sync(stream)
    assert [r["id"] for r in result.records] == [f"{stream[:2]}{d}" for d in (3, 4, 5)]
    assert_conforms(stream, result.records)
    assert len(fake.requests) == (1 + TAIL_PASS[stream]) * PASSES.get(stream, 1)


@pytest.mark.parametrize("stream", sorted(INCREMENTAL))
def test_several_pages_follow_links_next_with_the_filter_kept(mocker, stream):
    fake = FakeKlaviyo(mocker, page_cap=2)
    seed(fake, stream, [3, 4, 5, 6, 7])
    result = run_sync(stream)
    assert len(result.records) == 5
    assert len(fake.requests) == 3 + TAIL_PASS[stream] + (1 + TAIL_PASS[stream]) * (PASSES.get(stream, 1) - 1)
    first_filter = fake.params(0)["filter"]
    assert all(fake.params(i)["filter"] == first_filter for i in range(3))
    assert "page[cursor]" in fake.params(2)
    # Every page's request carries the stream's headers and the credentials.
    for request in fake.requests:
        assert request.headers["revision"] and request.headers["Accept"] == "application/vnd.api+json"
        assert request.headers["Authorization"] == f"Klaviyo-API-Key {CONFIG['api_key']}"


@pytest.mark.parametrize("stream", sorted(INCREMENTAL))
def test_first_sync_filters_from_start_date_at_the_largest_page_size(fake, stream):
    seed(fake, stream, [3])
    run_sync(stream, config={"start_date": "2024-01-02T00:00:00Z"})
    _, _, field, operator = INCREMENTAL[stream]
    params = fake.params(0)
    bound = "2024-01-01T23:59:59+00:00" if operator == "greater-than" else "2024-01-02T00:00:00+00:00"
    assert f"{operator}({field},{bound})" in params["filter"]
    expected_size = {"events": "1000", "profiles": "100", "flows": "50", "lists": "10", "segments": "10"}[stream]
    assert params["page[size]"] == expected_size


@pytest.mark.parametrize("stream", sorted(INCREMENTAL))
def test_a_resumed_sync_filters_from_the_bookmark_and_keeps_same_second_records(fake, stream):
    seed(fake, stream, [3, 4, 5])
    state = {"bookmarks": {stream: {"replication_key": INCREMENTAL[stream][2], "replication_key_value": ts(4)}}}
    result = run_sync(stream, state=state)
    _, _, field, operator = INCREMENTAL[stream]
    bound = "2024-01-03T23:59:59+00:00" if operator == "greater-than" else ts(4)
    assert f"{operator}({field},{bound})" in fake.params(0)["filter"]
    # the record sharing the bookmark's timestamp is emitted again, older ones are not
    assert [r["id"] for r in result.records] == [f"{stream[:2]}4", f"{stream[:2]}5"]
    assert live_bookmark(result.states[-1], stream) == ts(5)


def test_events_carry_metric_and_profile_ids(fake):
    fake.add("/api/events", event("e1", ts(2)))
    (record,) = run_sync("events").records
    assert record["metric_id"] == "m1" and record["profile_id"] == "p1"
    assert record["event_properties"] == {"value": 9.5, "sku": "A1"}


def test_profiles_ask_for_subscriptions_but_not_predictive_analytics_by_default(fake):
    fake.add("/api/profiles", profile("p1", ts(2)))
    (record,) = run_sync("profiles").records
    assert fake.params(0)["additional-fields[profile]"] == "subscriptions"
    assert record["subscriptions"]["email"]["marketing"]["consent"] == "SUBSCRIBED"
    assert record["properties"] == {"plan": "pro", "orders": 3}


def test_predictive_analytics_is_requested_only_when_enabled(fake):
    fake.add("/api/profiles", profile("p1", ts(2), predictive_analytics={"historic_clv": 10.5}))
    (record,) = run_sync("profiles", config={"include_predictive_analytics": True}).records
    assert fake.params(0)["additional-fields[profile]"] == "subscriptions,predictive_analytics"
    assert record["predictive_analytics"] == {"historic_clv": 10.5}


def test_campaigns_make_one_pass_per_channel_with_a_bookmark_each(fake):
    fake.add(
        "/api/campaigns",
        campaign("c1", ts(5), "email"),
        campaign("c2", ts(3), "email"),
        campaign("c3", ts(4), "sms"),
        campaign("c4", ts(6), "mobile_push"),
    )
    fake.add("/api/campaigns", campaign("c5", ts(7), "sms", archived=True))
    result = run_sync("campaigns")
    filters = [fake.params(i)["filter"] for i in range(6)]
    passes = [(channel, archived) for channel in ("email", "sms", "mobile_push") for archived in ("false", "true")]
    for (channel, archived), expression in zip(passes, filters):
        assert expression.startswith(
            f'equals(messages.channel,"{channel}"),equals(archived,{archived}),greater-or-equal(updated_at,'
        )
    assert {r["id"]: r["channel"] for r in result.records} == {
        "c1": "email",
        "c2": "email",
        "c3": "sms",
        "c4": "mobile_push",
        "c5": "sms",
    }
    assert [r["archived"] for r in result.records if r["id"] == "c5"] == [True]
    assert_conforms("campaigns", result.records)
    partitions = result.states[-1]["bookmarks"]["campaigns"]["partitions"]
    assert {
        (p["context"]["channel"], p["context"].get("archived", False)): p.get("replication_key_value")
        for p in partitions
    } == {
        ("email", False): ts(5),
        ("sms", False): ts(4),
        ("mobile_push", False): ts(6),
        ("email", True): None,
        ("sms", True): ts(7),
        ("mobile_push", True): None,
    }


def test_campaigns_resume_from_each_channels_bookmark(fake):
    fake.add("/api/campaigns", campaign("c1", ts(5), "email"), campaign("c2", ts(3), "email"))
    state = {
        "bookmarks": {
            "campaigns": {
                "partitions": [
                    {"context": {"channel": "email"}, "replication_key": "updated_at", "replication_key_value": ts(4)}
                ]
            }
        }
    }
    result = run_sync("campaigns", state=state)
    assert f"greater-or-equal(updated_at,{ts(4)})" in fake.params(0)["filter"]
    assert [r["id"] for r in result.records] == ["c1"]


def test_metrics_are_read_whole_from_the_api(fake):
    fake.add("/api/metrics", *(simple("metric", f"m{i}", ts(1), integration={"name": "Shopify"}) for i in range(3)))
    result = run_sync("metrics")
    assert [r["id"] for r in result.records] == ["m0", "m1", "m2"]
    assert "filter" not in fake.params(0) and "page[size]" not in fake.params(0)
    assert_conforms("metrics", result.records)


def test_reviews_stop_reading_at_the_first_review_older_than_the_bookmark(mocker):
    fake = FakeKlaviyo(mocker, page_cap=2)
    fake.add("/api/reviews", *(review(f"r{d}", ts(1), ts(d)) for d in (2, 3, 4, 5, 6, 7)))
    state = {"bookmarks": {"reviews": {"replication_key": "updated", "replication_key_value": ts(5)}}}
    result = run_sync("reviews", state=state)
    assert fake.params(0)["sort"] == "-updated" and "filter" not in fake.params(0)
    assert [r["id"] for r in result.records] == ["r7", "r6", "r5"]
    assert len(fake.requests) == 2  # the third page is never asked for
    assert result.states[-1]["bookmarks"]["reviews"]["replication_key_value"] == ts(7)
    assert_conforms("reviews", result.records)


@pytest.mark.parametrize(
    ("stream", "group", "key"), [("list_members", "lists", "list_id"), ("segment_members", "segments", "segment_id")]
)
def test_members_are_keyed_by_group_and_profile_across_every_group(fake, stream, group, key):
    fake.add(f"/api/{group}", simple(group[:-1], "G1", ts(1)), simple(group[:-1], "G2", ts(1)))
    fake.add(f"/api/{group}/G1/profiles", member("p1", ts(2)), member("p2", ts(3)))
    fake.add(f"/api/{group}/G2/profiles", member("p1", ts(4)))
    result = run_sync(stream)
    assert sorted((r[key], r["profile_id"], r["joined_group_at"]) for r in result.records) == [
        ("G1", "p1", ts(2)),
        ("G1", "p2", ts(3)),
        ("G2", "p1", ts(4)),
    ]
    member_request = next(r for r in fake.requests if r.url.split("?")[0].endswith("/G1/profiles"))
    assert "fields%5Bprofile%5D=joined_group_at" in member_request.url
    assert_conforms(stream, result.records)


def test_a_future_dated_record_is_emitted_but_does_not_move_the_bookmark_past_now(fake):
    fake.add("/api/events", event("e1", ts(2)), event("future", "2099-01-01T00:00:00+00:00"))
    result = run_sync("events")
    assert [r["id"] for r in result.records] == ["e1", "future"]
    bookmark = result.states[-1]["bookmarks"]["events"]["replication_key_value"]
    assert ts(2) < bookmark < "2099"
    assert "less-than(datetime," in fake.params(0)["filter"]  # main pass stops at the run's start
    assert fake.params(1)["filter"].startswith("greater-or-equal(datetime,")  # tail pass


def test_a_bookmark_left_in_the_future_resumes_at_the_run_start(fake):
    fake.add("/api/events", event("e1", ts(2)))
    state = {
        "bookmarks": {"events": {"replication_key": "datetime", "replication_key_value": "2099-01-01T00:00:00+00:00"}}
    }
    run_sync("events", state=state)
    assert "2099" not in fake.params(0)["filter"]


def test_end_date_bounds_the_run(fake):
    fake.add("/api/events", event("e1", ts(2)), event("e2", ts(9)))
    result = run_sync("events", config={"end_date": "2024-01-05T00:00:00Z"})
    assert [r["id"] for r in result.records] == ["e1"]
    assert "less-than(datetime,2024-01-05T00:00:00+00:00)" in fake.params(0)["filter"]
    assert len(fake.requests) == 1  # no tail pass beyond an explicit end


def test_a_next_page_request_is_a_get_of_links_next_with_headers_of_its_own():
    stream = TapKlaviyo(config=CONFIG).streams["events"]
    url = "https://a.klaviyo.com/api/events?filter=greater-or-equal%28datetime%2C2024-01-01%29&page%5Bcursor%5D=b2"
    first = stream.build_request(None, WHOLE_RANGE, url)
    first.headers["Authorization"] = "Klaviyo-API-Key changed"  # as credentials are added when sent
    second = stream.build_request(None, WHOLE_RANGE, url)
    assert (second.method, second.url, second.body) == ("GET", url, None)
    assert "Authorization" not in second.headers
    assert dict(second.headers) == {**stream.http_headers}
