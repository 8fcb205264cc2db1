"""Report rows join to the content streams: one Klaviyo account, one set of ids.

Through the CLI against the sandbox, as a warehouse loads them: the content streams
(campaign_messages, flow_actions, flow_messages, forms) in one run, the report streams in
another; every message and form a report names is a record of its content stream, with
the same campaign, flow and channel.
"""

from __future__ import annotations

import typing as t

import pytest

from klaviyo_sandbox import Sandbox, SandboxConfig
from tests.tap.test_reports import END, records, sync

pytestmark = pytest.mark.slow  # a module fixture runs for seconds (pyproject: markers)

CONTENT = ("campaign_messages", "flow_actions", "flow_messages", "forms")
REPORTS = ("campaign_values_report", "flow_values_report", "flow_series_report", "form_series_report")
SEND_CHANNEL = {"email": "email", "sms": "sms", "mobile_push": "push-notification"}


@pytest.fixture(scope="module")
def box() -> t.Iterator[t.Any]:
    with Sandbox(SandboxConfig(seed=4, scale=0.05, rate_limit_scale=0.0)) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def loaded(box, tmp_path_factory) -> dict[str, list[dict]]:
    """Every record of the content and report streams, from two CLI runs."""
    base = {"api_key": box.api_key, "base_url": box.base_url, "discover_custom_fields": False}
    content = sync(tmp_path_factory.mktemp("content"), base, *CONTENT)  # no start_date: every record
    assert content.code == 0, content.stderr[-2000:]
    report_config = {
        **base,
        "end_date": END,
        "start_date": "2025-08-01T00:00:00Z",
        "report_interval": "monthly",
        "report_values_window_days": 365,
    }
    report = sync(tmp_path_factory.mktemp("reports"), report_config, *REPORTS)
    assert report.code == 0, report.stderr[-2000:]
    return {name: records(content, name) for name in CONTENT} | {name: records(report, name) for name in REPORTS}


def test_campaign_report_messages_are_campaign_messages_records(loaded):
    messages = {m["id"]: m for m in loaded["campaign_messages"]}
    rows = loaded["campaign_values_report"]
    assert rows and any(row["conversions"] for row in rows)
    for row in rows:
        message = messages[row["campaign_message_id"]]
        assert message["campaign_id"] == row["campaign_id"]
        assert SEND_CHANNEL[message["channel"]] == row["send_channel"]


@pytest.mark.parametrize("stream", ["flow_values_report", "flow_series_report"])
def test_flow_report_messages_are_flow_messages_records_of_the_same_flow(loaded, stream):
    actions = {a["id"]: a for a in loaded["flow_actions"]}
    messages = {m["id"]: m for m in loaded["flow_messages"]}
    rows = loaded[stream]
    assert rows and sum(row["delivered"] for row in rows) > 0
    for row in rows:
        message = messages[row["flow_message_id"]]
        assert actions[message["flow_action_id"]]["flow_id"] == row["flow_id"]
        assert message["channel"] == row["send_channel"]
    # SMS flow messages (and A/B tests' second messages) are reported too, not only the first email
    assert {row["send_channel"] for row in rows} == {"email", "sms"}


def test_form_series_rows_are_forms_records_with_real_numbers(loaded):
    forms = {f["id"]: f for f in loaded["forms"]}
    rows = loaded["form_series_report"]
    assert rows and {row["form_id"] for row in rows} <= set(forms)
    assert all(forms[row["form_id"]]["status"] == "live" for row in rows)  # drafts are never shown
    assert sum(row["viewed_form"] for row in rows) > 0 and sum(row["submits"] for row in rows) > 0
    for row in rows:
        assert row["viewed_form_uniques"] <= row["viewed_form"]
        assert row["submit_rate"] == (round(row["submits"] / row["viewed_form"], 6) if row["viewed_form"] else 0.0)
