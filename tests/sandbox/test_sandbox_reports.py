"""The sandbox's Reporting API and metric aggregates: validation, limits, values from events."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from klaviyo_sandbox import Sandbox, SandboxConfig

from .client import Client

NY = ZoneInfo("America/New_York")  # the sandbox account's timezone


def body(rtype: str, **attributes) -> dict:
    return {"data": {"type": rtype, "attributes": attributes}}


def series(**overrides) -> dict:
    attributes = {
        "statistics": ["viewed_form"],
        "interval": "daily",
        "timeframe": {"start": "2026-07-01T00:00:00", "end": "2026-07-08T00:00:00"},
    }
    return body("form-series-report", **{**attributes, **overrides})


@pytest.fixture(scope="module")
def placed_order(client) -> str:
    metrics = client.get("/api/metrics").json()["data"]
    return next(m["id"] for m in metrics if m["attributes"]["name"] == "Placed Order")


def detail(resp) -> tuple[str, str]:
    error = resp.json()["errors"][0]
    return error["detail"], error["source"].get("pointer", "")


@pytest.mark.parametrize(
    ("overrides", "words", "pointer"),
    [
        ({"statistics": ["viewed_form", "opens"]}, "'opens' is not a valid choice", "/data/attributes/statistics"),
        ({"statistics": []}, "non-empty", "/data/attributes/statistics"),
        ({"interval": "yearly"}, "not a valid interval", "/data/attributes/interval"),
        ({"interval": None}, "'interval' is a required field", "/data/attributes/interval"),
        ({"timeframe": {"key": "last_2_days"}}, "not a valid timeframe key", "/data/attributes/timeframe/key"),
        (
            {"timeframe": {"start": "2025-01-01T00:00:00", "end": "2026-07-01T00:00:00"}, "interval": "monthly"},
            "longer than 1 year",
            "/data/attributes/timeframe",
        ),
        (
            {"timeframe": {"start": "2026-07-08T00:00:00", "end": "2026-07-01T00:00:00"}},
            "end must be after",
            "/data/attributes/timeframe",
        ),
        (
            {"timeframe": {"start": "2026-01-01T00:00:00", "end": "2026-07-01T00:00:00"}},
            "too long for the daily",
            "/data/attributes/interval",
        ),
        (
            {"timeframe": {"start": "2026-07-01T00:00:00", "end": "2026-07-09T00:00:00"}, "interval": "hourly"},
            "too long for the hourly",
            "/data/attributes/interval",
        ),
    ],
)
def test_series_requests_are_validated_like_klaviyo(client, overrides, words, pointer):
    resp = client.post("/api/form-series-reports", series(**overrides))
    assert resp.status == 400
    text, where = detail(resp)
    assert words in text and where == pointer


def test_campaign_and_flow_reports_require_a_conversion_metric(client, placed_order):
    attributes = {"statistics": ["opens"], "timeframe": {"key": "last_30_days"}}
    resp = client.post("/api/campaign-values-reports", body("campaign-values-report", **attributes))
    assert resp.status == 400 and detail(resp) == (
        "'conversion_metric_id' is a required field.",
        "/data/attributes/conversion_metric_id",
    )
    resp = client.post(
        "/api/flow-values-reports", body("flow-values-report", **attributes, conversion_metric_id="NoSuch")
    )
    assert resp.status == 400 and "does not exist" in detail(resp)[0]
    resp = client.post(
        "/api/flow-values-reports",
        body("flow-values-report", **attributes, conversion_metric_id=placed_order, group_by=["send_channel"]),
    )
    assert resp.status == 400 and "required: flow_id, flow_message_id" in detail(resp)[0]
    resp = client.post(
        "/api/flow-values-reports", body("flow-values-report", **attributes, conversion_metric_id=placed_order)
    )
    assert resp.status == 200


def test_wrong_type_and_segment_data_before_june_2023_are_refused(client):
    resp = client.post("/api/form-series-reports", {"data": {"type": "flow-series-report", "attributes": {}}})
    assert resp.status == 400 and detail(resp)[1] == "/data/type"
    old = body(
        "segment-series-report",
        statistics=["total_members"],
        interval="monthly",
        timeframe={"start": "2023-01-01T00:00:00", "end": "2023-12-01T00:00:00"},
    )
    resp = client.post("/api/segment-series-reports", old)
    assert resp.status == 400 and "June 1st, 2023" in detail(resp)[0]


def test_series_intervals_are_days_of_the_company_timezone(client):
    doc = client.post("/api/form-series-reports", series()).json()
    # The offset of a custom timeframe is ignored: midnights in New York, not UTC.
    assert doc["data"]["attributes"]["date_times"] == [f"2026-07-0{d}T00:00:00-04:00" for d in range(1, 8)]
    forms = {f["id"] for f in client.all("/api/forms")}
    results = doc["data"]["attributes"]["results"]  # grouped by form_id unless asked otherwise
    assert results and all(set(r["groupings"]) == {"form_id"} and r["groupings"]["form_id"] in forms for r in results)


def test_segment_series_counts_members_by_their_join_time(sb, client):
    frame = {"start": "2026-06-01T00:00:00", "end": "2026-07-01T00:00:00"}
    doc = client.post(
        "/api/segment-series-reports",
        body(
            "segment-series-report", statistics=["total_members", "members_added"], interval="weekly", timeframe=frame
        ),
    ).json()["data"]["attributes"]
    edges = [dt.datetime.fromisoformat(d).timestamp() for d in doc["date_times"]][1:]
    end = dt.datetime(2026, 7, 1, tzinfo=NY).timestamp()
    for result in doc["results"]:
        segment_id = result["groupings"]["segment_id"]
        joined = []
        url = f"/api/segments/{segment_id}/profiles?fields[profile]=joined_group_at&page[size]=100"
        while url:
            page = client.get(url).json()
            joined += [dt.datetime.fromisoformat(p["attributes"]["joined_group_at"]).timestamp() for p in page["data"]]
            url = page["links"].get("next")
        assert result["statistics"]["total_members"] == [sum(j < e for j in joined) for e in [*edges, end]]


def test_metric_aggregates_count_sum_and_unique_by_dimension(client, placed_order):
    resp = client.post(
        "/api/metric-aggregates",
        body(
            "metric-aggregate",
            metric_id=placed_order,
            measurements=["count", "sum_value", "unique"],
            by=["$attributed_message"],
            interval="day",
            filter=["greater-or-equal(datetime,2026-07-01T00:00:00)", "less-than(datetime,2026-07-04T00:00:00)"],
        ),
    )
    assert resp.status == 200, resp
    attributes = resp.json()["data"]["attributes"]
    events = client.get(
        "/api/events",
        **{
            "filter": f"and(equals(metric_id,'{placed_order}'),greater-or-equal(datetime,2026-07-01T00:00:00Z),"
            "less-than(datetime,2026-07-04T00:00:00Z))",
            "page[size]": "1000",
        },
    ).json()["data"]
    expected: dict = {}
    for event in events:
        props = event["attributes"]["event_properties"]
        day = attributes["dates"].index(event["attributes"]["datetime"][:10] + "T00:00:00+00:00")
        cells = expected.setdefault(props.get("$attributed_message", ""), [[0, 0.0] for _ in range(3)])
        cells[day][0] += 1
        cells[day][1] += props.get("$value", 0)
    got = {g["dimensions"][0]: g["measurements"] for g in attributes["data"]}
    assert set(got) == set(expected) and len(events) > 0
    for key, cells in expected.items():
        assert got[key]["count"] == [c[0] for c in cells]
        assert got[key]["sum_value"] == [round(c[1], 2) for c in cells]


def test_reports_have_the_spec_limits_including_225_a_day():
    clock = [1_000_000.0]
    with Sandbox(SandboxConfig(seed=5, scale=0.02, rate_limit_scale=1.0)) as box:
        box.app.limiter.clock = lambda: clock[0]
        client = Client(box.base_url, box.api_key)
        first, second, third = (client.post("/api/form-series-reports", series()).status for _ in range(3))
        assert (first, second, third) == (200, 429, 429)  # 1 a second
        statuses = []
        for _ in range(230):
            clock[0] += 31  # within 2 a minute
            statuses.append(client.post("/api/form-series-reports", series()))
        assert [r.status for r in statuses].count(200) == 224  # 225 a day, the first one included
        refused = statuses[224]
        assert refused.status == 429 and int(refused.headers["retry-after"]) > 3600
