"""One account: the messages and forms events and reports name are the ones the content endpoints serve."""

from __future__ import annotations

import collections
import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from .client import Client

CHANNELS = ("email", "sms", "mobile_push")
SEND_CHANNEL = {"email": "email", "sms": "sms", "mobile_push": "push-notification"}
NY = ZoneInfo("America/New_York")  # the account's timezone: report intervals are its months
FORM_STATISTIC = {"Viewed Form": "viewed_form", "Closed Form": "closed_form", "Submitted Form": "submits"}


def included(client: Client, path: str, include: str, **params) -> list[dict]:
    return [r for doc in client.pages(path, include=include, **params) for r in doc.get("included", [])]


@pytest.fixture(scope="module")
def served(client) -> dict[str, dict]:
    """Message id -> (channel, campaign or flow id), from the campaign and flow content endpoints."""
    found = {}
    for channel in CHANNELS:
        for archived in ("false", "true"):  # archived campaigns and flows are served when asked for
            where = f"and(equals(messages.channel,'{channel}'),equals(archived,{archived}))"
            for message in included(client, "/api/campaigns", "campaign-messages", filter=where):
                found[message["id"]] = (
                    message["attributes"]["definition"]["channel"],
                    message["relationships"]["campaign"]["data"]["id"],
                )
    for archived in ("false", "true"):
        actions = included(client, "/api/flows", "flow-actions", filter=f"equals(archived,{archived})")
        for action in actions:
            flow_id = action["relationships"]["flow"]["data"]["id"]
            for message in client.all(f"/api/flow-actions/{action['id']}/flow-messages"):
                found[message["id"]] = (message["attributes"]["channel"], flow_id)
    return found


@pytest.fixture(scope="module")
def events(client) -> list[dict]:
    names = {m["id"]: m["attributes"]["name"] for m in client.all("/api/metrics")}
    found = client.all("/api/events", **{"page[size]": "1000"})
    for event in found:
        event["metric_name"] = names[event["relationships"]["metric"]["data"]["id"]]
    return found


def test_every_attributed_message_is_a_served_campaign_or_flow_message(served, events):
    named = collections.Counter()
    for event in events:
        props = event["attributes"]["event_properties"]
        for message_key, flow_key in (("$message", "$flow"), ("$attributed_message", "$attributed_flow")):
            if message_key in props:
                channel, owner = served[props[message_key]]
                named[channel] += 1
                assert props.get(flow_key, owner) == owner  # a flow message's event names its flow
    # flow SMS messages and push campaign messages are credited too, not only emails
    assert set(named) == set(CHANNELS)


def test_form_events_name_served_forms_and_their_versions(client, events):
    forms = {f["id"]: f for f in client.all("/api/forms")}
    form_events = [e for e in events if e["metric_name"] in FORM_STATISTIC]
    assert form_events
    for event in form_events:
        props = event["attributes"]["event_properties"]
        form = forms[props["form_id"]]
        assert form["attributes"]["status"] == "live"
        assert props["form_version_id"] in {v["id"] for v in form["relationships"]["form-versions"]["data"]}


def test_report_groupings_are_served_ids(client, served):
    metrics = client.all("/api/metrics")
    placed_order = next(m["id"] for m in metrics if m["attributes"]["name"] == "Placed Order")
    frame = {"start": "2025-07-16T00:00:00", "end": "2026-07-15T00:00:00"}
    for rtype, message_key, owner_key in (
        ("campaign-values-report", "campaign_message_id", "campaign_id"),
        ("flow-values-report", "flow_message_id", "flow_id"),
    ):
        doc = client.post(
            f"/api/{rtype}s",
            {
                "data": {
                    "type": rtype,
                    "attributes": {
                        "statistics": ["delivered"],
                        "timeframe": frame,
                        "conversion_metric_id": placed_order,
                    },
                }
            },
        )
        assert doc.status == 200, doc
        results = doc.json()["data"]["attributes"]["results"]
        assert results
        for result in results:
            channel, owner = served[result["groupings"][message_key]]
            assert result["groupings"][owner_key] == owner
            assert result["groupings"]["send_channel"] == SEND_CHANNEL[channel]


def test_form_series_counts_the_form_events(client, events):
    frame = {"start": "2026-01-01T00:00:00", "end": "2026-07-01T00:00:00"}
    doc = client.post(
        "/api/form-series-reports",
        {
            "data": {
                "type": "form-series-report",
                "attributes": {
                    "statistics": ["viewed_form", "viewed_form_uniques", "submits", "closed_form", "submit_rate"],
                    "interval": "monthly",
                    "timeframe": frame,
                    "group_by": ["form_id", "form_version_id"],
                },
            }
        },
    )
    assert doc.status == 200, doc
    attributes = doc.json()["data"]["attributes"]
    months = [d[:7] for d in attributes["date_times"]]
    assert months == [f"2026-0{m}" for m in range(1, 7)]
    expected: dict = {}
    for event in events:
        if event["metric_name"] not in FORM_STATISTIC:
            continue
        when = dt.datetime.fromisoformat(event["attributes"]["datetime"]).astimezone(NY).isoformat()[:7]
        props = event["attributes"]["event_properties"]
        key = (props["form_id"], props["form_version_id"])
        cells = expected.setdefault(key, {name: [0] * 6 for name in FORM_STATISTIC.values()})
        if when in months:
            cells[FORM_STATISTIC[event["metric_name"]]][months.index(when)] += 1
    expected = {key: cells for key, cells in expected.items() if any(map(any, cells.values()))}
    got = {
        (r["groupings"]["form_id"], r["groupings"]["form_version_id"]): r["statistics"] for r in attributes["results"]
    }
    assert set(got) == set(expected) and expected
    for key, cells in expected.items():
        for name, values in cells.items():
            assert got[key][name] == values, (key, name)
        rates = [round(s / v, 6) if v else 0.0 for s, v in zip(cells["submits"], cells["viewed_form"])]
        assert got[key]["submit_rate"] == rates
        assert all(u <= n for u, n in zip(got[key]["viewed_form_uniques"], got[key]["viewed_form"]))
