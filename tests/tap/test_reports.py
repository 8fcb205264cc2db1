"""Report streams through the CLI against the sandbox: real values, budget, deferral and resume.

Expected values are recomputed here from the events, campaigns and metrics the sandbox
lists through its API, with the attribution rule documented in klaviyo_sandbox/messages.py.
"""

from __future__ import annotations

import datetime as dt
import json
import typing as t
from zoneinfo import ZoneInfo

import pytest

from klaviyo_sandbox import Sandbox, SandboxConfig
from tap_klaviyo import reports
from tap_klaviyo.tap import TapKlaviyo
from tests.conftest import CliRun, run_cli, select
from tests.sandbox.client import Client

NY = ZoneInfo("America/New_York")  # the sandbox account's timezone: Klaviyo reads timeframes in it
END = "2026-07-15T00:00:00Z"  # the sandbox's data ends near its fixed "now", 2026-07-15T12:00Z
REPORTS = (
    "campaign_values_report",
    "flow_values_report",
    "flow_series_report",
    "form_series_report",
    "segment_series_report",
    "metric_aggregates",
)


def config_for(box: t.Any, **settings: t.Any) -> dict:
    return {
        "api_key": box.api_key,
        "base_url": box.base_url,
        "discover_custom_fields": False,
        "end_date": END,
        **settings,
    }


def sync(tmp_path, config: dict, *streams: str, state: dict | None = None) -> CliRun:
    catalog = select(TapKlaviyo(config=config).catalog_dict, *streams)
    (tmp_path / "catalog.json").write_text(json.dumps(catalog))
    args = ["--catalog", str(tmp_path / "catalog.json")]
    if state is not None:
        (tmp_path / "state.json").write_text(json.dumps(state))
        args += ["--state", str(tmp_path / "state.json")]
    return run_cli("tap-klaviyo", *args, config=config, tmp_path=tmp_path)


def records(run: CliRun, stream: str) -> list[dict]:
    return [m["record"] for m in run.messages() if m["type"] == "RECORD" and m["stream"] == stream]


def last_state(run: CliRun) -> dict:
    return [m["value"] for m in run.messages() if m["type"] == "STATE"][-1]


def report_requests(box: t.Any) -> list[str]:
    return [r["op"] for r in box.store.request_log if (r["op"] or "").startswith("query_")]


# -- what the sandbox's API lists ------------------------------------------------------


def every_page(client: Client, path: str, **params: str) -> list[dict]:
    page = client.get(path, **params).json()
    found = list(page["data"])
    while page["links"].get("next"):
        page = client.get(page["links"]["next"]).json()
        found += page["data"]
    return found


def metric_id(client: Client, name: str) -> str:
    return next(m["id"] for m in every_page(client, "/api/metrics") if m["attributes"]["name"] == name)


def events(client: Client) -> list[dict]:
    """Every event, with its metric's name."""
    names = {m["id"]: m["attributes"]["name"] for m in every_page(client, "/api/metrics")}
    found = every_page(client, "/api/events", **{"page[size]": "1000"})
    for event in found:
        event["metric_name"] = names[event["relationships"]["metric"]["data"]["id"]]
    return found


def tally(found: list[dict], message_id: str, conversion_metric: str) -> dict:
    """The documented attribution: $message on engagement, $attributed_message on conversions."""
    delivered = opens = conversions = 0
    openers, converters, value = set(), set(), 0.0
    for event in found:
        props, who = event["attributes"]["event_properties"], event["relationships"]["profile"]["data"]["id"]
        if props.get("$message") == message_id:
            if event["metric_name"] in ("Received Email", "Received SMS"):
                delivered += 1
            elif event["metric_name"] == "Opened Email":
                opens += 1
                openers.add(who)
        if (
            event["relationships"]["metric"]["data"]["id"] == conversion_metric
            and props.get("$attributed_message") == message_id
        ):
            conversions += 1
            converters.add(who)
            value += props.get("$value", 0)
    return {
        "delivered": delivered,
        "opens": opens,
        "opens_unique": len(openers),
        "conversions": conversions,
        "conversion_uniques": len(converters),
        "conversion_value": round(value, 2),
        "open_rate": round(len(openers) / delivered, 6) if delivered else 0.0,
    }


def local(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(NY)


@pytest.fixture(scope="module")
def box() -> t.Iterator[t.Any]:
    with Sandbox(SandboxConfig(seed=3, scale=0.05, rate_limit_scale=0.0)) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def client(box: t.Any) -> Client:
    return Client(box.base_url, box.api_key)


# -- tests ------------------------------------------------------------------------------


def test_reports_are_discovered_but_not_selected_by_default(tmp_path, box):
    result = run_cli("tap-klaviyo", "--discover", config=config_for(box), tmp_path=tmp_path)
    streams = {s["tap_stream_id"]: s for s in json.loads(result.stdout)["streams"]}
    for name in REPORTS:
        root = next(m["metadata"] for m in streams[name]["metadata"] if m["breadcrumb"] == [])
        assert root["selected-by-default"] is False
        # selecting the stream selects its columns, as for every other stream
        assert all(
            m["metadata"].get("selected-by-default") is not False for m in streams[name]["metadata"] if m["breadcrumb"]
        )
    assert streams["flow_series_report"]["key_properties"] == [
        "flow_id",
        "flow_message_id",
        "send_channel",
        "date_time",
    ]
    assert streams["campaign_values_report"]["key_properties"] == ["campaign_id", "campaign_message_id", "send_channel"]
    # every statistic the spec allows is a column
    assert {"opens_unique", "conversion_value", "text_message_roi"} <= set(
        streams["campaign_values_report"]["schema"]["properties"]
    )


def test_campaign_values_are_those_of_the_events(tmp_path, box, client):
    run = sync(tmp_path, config_for(box, report_values_window_days=365), "campaign_values_report")
    assert run.code == 0, run.stderr
    rows = records(run, "campaign_values_report")
    placed_order = metric_id(client, "Placed Order")
    found = events(client)
    window = (dt.datetime(2025, 7, 16, tzinfo=NY), dt.datetime(2026, 7, 16, tzinfo=NY))
    expected_messages = set()
    for channel in ("email", "sms", "mobile_push"):
        for campaign in every_page(client, "/api/campaigns", filter=f"equals(messages.channel,'{channel}')"):
            a = campaign["attributes"]
            if a["status"] in ("Sent", "Sending") and window[0] <= local(a["send_time"]) < window[1]:
                expected_messages |= {m["id"] for m in campaign["relationships"]["campaign-messages"]["data"]}
    assert {row["campaign_message_id"] for row in rows} == expected_messages and rows
    for row in rows:
        assert row["conversion_metric_id"] == placed_order
        assert (row["timeframe_start"], row["timeframe_end"]) == (
            "2025-07-16T00:00:00+00:00",
            "2026-07-16T00:00:00+00:00",
        )
        expected = tally(found, row["campaign_message_id"], placed_order)
        assert {key: row[key] for key in expected} == expected
    assert any(row["conversions"] for row in rows) and any(row["opens"] for row in rows)
    assert report_requests(box).count("query_campaign_values") == 1  # one request for every campaign


def test_flow_series_values_move_forward_from_state_with_a_lookback(tmp_path, box, client):
    config = config_for(box, start_date="2026-06-01T00:00:00Z")
    before = len(report_requests(box))
    run = sync(tmp_path, config, "flow_series_report")
    assert run.code == 0, run.stderr
    rows = records(run, "flow_series_report")
    assert len(report_requests(box)) == before + 1  # 45 days: one daily request
    placed_order = metric_id(client, "Placed Order")
    found = events(client)
    days = sorted({row["date_time"] for row in rows})
    assert days[0] == "2026-06-01T00:00:00-04:00" and days[-1] == "2026-07-15T00:00:00-04:00" and len(days) == 45
    for row in rows:
        day = dt.datetime.fromisoformat(row["date_time"])
        in_day = [e for e in found if day <= local(e["attributes"]["datetime"]) < day + dt.timedelta(days=1)]
        expected = tally(in_day, row["flow_message_id"], placed_order)
        assert {key: row[key] for key in expected} == expected, row["date_time"]
    assert sum(row["conversions"] for row in rows) > 0 and sum(row["delivered"] for row in rows) > 0
    state = last_state(run)["bookmarks"]["flow_series_report"]
    assert state["next_start"] == "2026-07-15T00:00:00+00:00"

    again = sync(tmp_path, config, "flow_series_report", state=last_state(run))
    assert again.code == 0, again.stderr
    # the next run re-reads the 3 days before the interval it stopped in, and that one
    assert sorted({row["date_time"] for row in records(again, "flow_series_report")}) == [
        f"2026-07-{d}T00:00:00-04:00" for d in (12, 13, 14, 15)
    ]


def test_a_spent_daily_budget_defers_the_rest_and_the_next_day_resumes(tmp_path):
    with Sandbox(SandboxConfig(seed=3, scale=0.02, rate_limit_scale=0.0)) as sandbox:
        config = config_for(sandbox, start_date="2026-03-01T00:00:00Z", report_daily_request_budget=1)
        first = sync(tmp_path, config, "segment_series_report")
        assert first.code == 0, first.stderr
        assert report_requests(sandbox) == ["query_segment_series"]
        deferred = [line for line in first.stderr.splitlines() if "deferred" in line]
        assert len(deferred) == 1 and "report_daily_request_budget" in deferred[0]
        assert "2 request(s) left" in deferred[0]  # 3 timeframes of at most 60 days; 1 done
        state = last_state(first)
        entry = state["bookmarks"]["segment_series_report"]
        assert entry["report_requests"]["requests"] == 1
        assert entry["next_start"] == "2026-04-30T00:00:00+00:00"
        assert max(r["date_time"] for r in records(first, "segment_series_report")) == "2026-04-29T00:00:00-04:00"

        same_day = sync(tmp_path, config, "segment_series_report", state=state)
        assert same_day.code == 0 and "deferred" in same_day.stderr
        assert report_requests(sandbox) == ["query_segment_series"]  # nothing more today
        assert records(same_day, "segment_series_report") == []

        entry["report_requests"]["day"] = "2000-01-01"  # as if the next UTC day had come
        next_day = sync(tmp_path, config, "segment_series_report", state=state)
        assert next_day.code == 0, next_day.stderr
        assert report_requests(sandbox) == ["query_segment_series"] * 2
        dates = sorted({r["date_time"] for r in records(next_day, "segment_series_report")})
        assert dates[0] == "2026-04-27T00:00:00-04:00"  # resumed, three days of lookback
        assert last_state(next_day)["bookmarks"]["segment_series_report"]["next_start"] == "2026-06-26T00:00:00+00:00"


def test_klaviyo_daily_cap_reached_elsewhere_defers_without_waiting(tmp_path):
    clock = [1_000_000.0]
    with Sandbox(SandboxConfig(seed=3, scale=0.02, rate_limit_scale=1.0)) as sandbox:
        sandbox.app.limiter.clock = lambda: clock[0]
        other_app = Client(sandbox.base_url, sandbox.api_key)
        frame = {"start": "2026-07-01T00:00:00", "end": "2026-07-02T00:00:00"}
        for _ in range(225):  # another app spends the account's 225 requests of the day
            clock[0] += 31
            request = {
                "data": {
                    "type": "form-series-report",
                    "attributes": {"statistics": ["submits"], "interval": "daily", "timeframe": frame},
                }
            }
            assert other_app.post("/api/form-series-reports", request).status == 200
        clock[0] += 31
        run = sync(tmp_path, config_for(sandbox, start_date="2026-07-01T00:00:00Z"), "form_series_report")
        assert run.code == 0, run.stderr
        assert "deferred" in run.stderr and "quota for this endpoint is spent" in run.stderr
        entry = last_state(run)["bookmarks"]["form_series_report"]
        assert entry["report_requests"]["requests"] == reports.DEFAULT_DAILY_BUDGET  # no more tries today
        assert "next_start" not in entry


def test_metric_aggregates_by_dimension_are_those_of_the_events(tmp_path, box, client):
    config = config_for(box, start_date="2026-07-10T00:00:00Z", metric_aggregates_by=["$attributed_message"])
    run = sync(tmp_path, config, "metric_aggregates")
    assert run.code == 0, run.stderr
    rows = records(run, "metric_aggregates")
    placed_order = metric_id(client, "Placed Order")
    expected: dict = {}
    for event in events(client):
        when = event["attributes"]["datetime"]
        if event["relationships"]["metric"]["data"]["id"] == placed_order and "2026-07-10" <= when < "2026-07-16":
            key = (event["attributes"]["event_properties"].get("$attributed_message", ""), when[:10])
            expected[key] = expected.get(key, 0) + 1
    got = {(row["attributed_message"], row["date"][:10]): row["count"] for row in rows if row["count"]}
    assert got == expected and expected
    assert {row["metric_id"] for row in rows} == {placed_order}


def test_conversion_metric_by_id_and_a_missing_one_is_one_line(tmp_path, box, client):
    viewed = metric_id(client, "Viewed Product")
    run = sync(tmp_path, config_for(box, report_conversion_metric=viewed), "flow_values_report")
    assert run.code == 0, run.stderr
    assert {row["conversion_metric_id"] for row in records(run, "flow_values_report")} == {viewed}

    missing = sync(tmp_path, config_for(box, report_conversion_metric="Bought Yacht"), "flow_values_report")
    assert missing.code == 1
    errors = [line for line in missing.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "report_conversion_metric" in errors[0] and "'Bought Yacht'" in errors[0]
    assert "Traceback" not in missing.stderr


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"report_daily_request_budget": 226}, "report_daily_request_budget"),
        ({"report_values_window_days": 0}, "report_values_window_days"),
        ({"report_interval": "yearly"}, "report_interval"),
        ({"metric_aggregates_by": ["Colour"]}, "metric_aggregates_by"),
    ],
)
def test_bad_report_settings_are_one_line(tmp_path, settings, named):
    result = run_cli("tap-klaviyo", "--discover", config={"api_key": "pk_abc", **settings}, tmp_path=tmp_path)
    assert result.code == 1
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert errors and named in errors[0] and "Traceback" not in result.stderr


def test_same_named_metrics_prefer_ecommerce_then_the_oldest(caplog):
    def metric(ident: str, category: str, created: str) -> dict:
        return {
            "id": ident,
            "attributes": {"name": "Placed Order", "created": created, "integration": {"category": category}},
        }

    metrics = [
        metric("api1", "API", "2020-01-01"),
        metric("shop2", "eCommerce", "2022-01-01"),
        metric("shop1", "eCommerce", "2021-01-01"),
    ]
    import logging

    logger = logging.getLogger("test")
    assert reports.resolve_metric(metrics, "Placed Order", "report_conversion_metric", logger) == "shop1"
    assert reports.resolve_metric(metrics, "api1", "report_conversion_metric", logger) == "api1"
    with pytest.raises(reports.KlaviyoError, match="no metric with the id or name 'Placed Order'"):
        reports.resolve_metric([], "Placed Order", "report_conversion_metric", logger)


def test_series_timeframes_are_cut_to_the_interval_limits():
    utc = dt.timezone.utc
    start, end = dt.datetime(2025, 7, 1, tzinfo=utc), dt.datetime(2026, 7, 1, tzinfo=utc)
    daily = reports.chunks(start, end, "daily")
    assert len(daily) == 7 and all(b - a <= dt.timedelta(days=60) for a, b in daily)
    assert daily[0][0] == start and daily[-1][1] == end
    assert all(daily[i][1] == daily[i + 1][0] for i in range(len(daily) - 1))
    hourly = reports.chunks(end - dt.timedelta(days=8), end, "hourly")
    assert [b - a for a, b in hourly] == [dt.timedelta(days=7), dt.timedelta(days=1)]
    assert len(reports.chunks(start, end, "monthly")) == 2  # 52 weeks at most: 11 months, then 1


def _schedule_script() -> t.Any:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "report_schedule.py"
    spec = importlib.util.spec_from_file_location("report_schedule", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_hourly_schedule_stays_within_the_daily_budget_and_resumes_next_day():
    script = _schedule_script()
    with Sandbox(SandboxConfig(seed=3, scale=0.02, rate_limit_scale=0.0)) as sandbox:
        runs = script.schedule(dt.timedelta(hours=1), 1)
        runs += [runs[-1] + dt.timedelta(hours=1), runs[-1] + dt.timedelta(hours=2)]  # into the next UTC day
        per_day = script.simulate(
            sandbox, runs, ["segment_series_report"], report_daily_request_budget=10, start_date="2026-07-01T00:00:00Z"
        )
    assert {day: counts["query_segment_series"] for day, counts in per_day.items()} == {
        "2026-07-12": 10,
        "2026-07-13": 2,
    }  # 24 runs, 10 allowed; a new budget after midnight UTC


def test_a_broken_report_bookmark_is_one_line(tmp_path, box):
    state = {"bookmarks": {"flow_series_report": {"next_start": "yesterday"}}}
    run = sync(tmp_path, config_for(box), "flow_series_report", state=state)
    assert run.code == 1 and "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "next_start" in errors[0] and "flow_series_report" in errors[0]


def test_an_unreadable_request_count_counts_as_spent():
    budget = reports.DailyBudget({"report_requests": {"day": "2026-12-02", "requests": "many"}}, 5, "2026-12-02")
    assert budget.take() is False
    fresh = reports.DailyBudget({"report_requests": {"day": "2026-12-01", "requests": 5}}, 5, "2026-12-02")
    assert fresh.take() is True and fresh.entry == {"day": "2026-12-02", "requests": 1}
