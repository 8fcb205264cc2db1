"""upsert, subscribe, unsubscribe, suppress, unsuppress, track and dry_run through the CLI, against the sandbox.

The sandbox validates every request body against the spec's request schema and applies
Klaviyo's rules (limits per request, E.164, consented_at only with historical_import...),
so a body the target builds wrongly fails these tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import klaviyo_sandbox as sandbox
import target_klaviyo.jobs as jobs
import target_klaviyo.sender as sender
from tests.target.conftest import singer_lines

TEXT = {"type": ["string", "null"]}
ANY = {}


@pytest.fixture
def box(monkeypatch):
    monkeypatch.setattr(jobs, "sleep", lambda seconds: None)  # sandbox jobs finish at once
    monkeypatch.setattr(sender, "sleep", lambda seconds: None)
    config = sandbox.SandboxConfig(seed=3, scale=0.01, rate_limit_scale=0.0, job_seconds=0.0)
    with sandbox.Sandbox(config) as running:
        yield running


def settings(box, **more):
    return {"api_key": box.api_key, "base_url": box.base_url, **more}


#: The operations the target's write-scope probes go through (klaviyo_core.scopes): a POST
#: whose body is deliberately incomplete, refused with 400, so nothing changes.
PROBE_OPERATIONS = {"create_list", "bulk_import_profiles"}


def _is_scope_probe(entry: dict) -> bool:
    return entry["method"] == "POST" and entry["op"] in PROBE_OPERATIONS and entry["status"] == 400


def scope_probes(box) -> list[str]:
    return [e["op"] for e in box.store.request_log if _is_scope_probe(e)]


def writes(box) -> list[str]:
    """The requests that can change something: every non-GET but the scope probes."""
    return [e["op"] for e in box.store.request_log if e["method"] != "GET" and e["op"] and not _is_scope_probe(e)]


def email_consent(box, email):
    profile = box.store.find_profile("email", email)
    return box.store.subscriptions(profile)["email"]["marketing"]


# ----------------------------------------------------------------------------- upsert


def test_upsert_matches_any_identifier_keeps_ids_out_of_properties_and_touches_no_list(box, run_target):
    known = box.store.upsert_profile({"email": "known@example.com", "properties": {"tier": "gold", "old": 1}})[0]
    rows = [
        {
            "email": "ann@example.com",
            "phone_number": None,
            "external_id": None,
            "profile_id": None,
            "plan": "pro",
            "secret": "x",
            "tier": None,
        },
        {
            "email": None,
            "phone_number": "+44 20 7946 0958",
            "external_id": None,
            "profile_id": None,
            "plan": "free",
            "secret": "y",
            "tier": None,
        },
        {
            "email": None,
            "phone_number": None,
            "external_id": "crm-7",
            "profile_id": None,
            "plan": "team",
            "secret": "z",
            "tier": None,
        },
        {
            "email": None,
            "phone_number": None,
            "external_id": None,
            "profile_id": known["id"],
            "plan": "vip",
            "secret": "w",
            "tier": None,
        },
        {
            "email": None,
            "phone_number": None,
            "external_id": None,
            "profile_id": None,
            "plan": "lost",
            "secret": "v",
            "tier": None,
        },
    ]
    columns = dict.fromkeys(rows[0], TEXT)
    config = settings(box, operation="upsert", property_columns=["plan", "tier"], null_clears_properties=True)

    run = run_target(config, singer_lines("people", rows, columns, state={"v": 1}))

    assert run.exit_code == 0, run.log
    assert run.states == [{"v": 1}]
    store = box.store
    assert store.find_profile("email", "ann@example.com")["attributes"]["properties"] == {"plan": "pro"}
    assert store.find_profile("phone_number", "+442079460958")["attributes"]["properties"] == {"plan": "free"}
    assert store.find_profile("external_id", "crm-7")["attributes"]["properties"] == {"plan": "team"}
    # the profile_id column is the identity, never a property; a null in `tier` cleared it; `old` stays
    assert store.get_profile(known["id"])["attributes"]["properties"] == {"plan": "vip", "old": 1}
    assert [r["reason"] for r in run.rejects()] == [
        "email, phone_number, external_id, profile_id are all empty or missing"
    ]
    assert set(writes(box)) == {"bulk_import_profiles"}
    assert not store.added and not store.consent  # no list, no consent


def test_upsert_never_changes_consent_even_with_a_subscriptions_column(box, run_target):
    rows = [{"email": "c@example.com", "subscriptions": "SUBSCRIBED"}]
    run = run_target(settings(box, operation="upsert"), singer_lines("p", rows, {"email": TEXT, "subscriptions": TEXT}))

    assert run.exit_code == 0
    assert box.store.consent == {}


# ----------------------------------------------------------------------------- subscribe / unsubscribe

CONSENT_COLUMNS = {"email": TEXT, "phone_number": TEXT, "consented_at": TEXT, "channels": ANY}


def test_subscribe_by_channel_with_history_into_a_list_and_a_rerun_changes_nothing(box, run_target):
    rows = [
        {"email": "e@example.com", "phone_number": None, "consented_at": None, "channels": None},
        {"email": None, "phone_number": "+1 415 555 0101", "consented_at": "2024-03-01T10:00:00Z", "channels": None},
        {
            "email": "both@example.com",
            "phone_number": "+14155550102",
            "consented_at": None,
            "channels": ["sms_transactional"],
        },
        {"email": "later@example.com", "phone_number": None, "consented_at": "2999-01-01T00:00:00Z", "channels": None},
        {"email": "sms@example.com", "phone_number": None, "consented_at": None, "channels": "sms_marketing"},
        {"email": None, "phone_number": "4155550103", "consented_at": None, "channels": None},
    ]
    config = settings(box, operation="subscribe", list_name="Warehouse opt-ins e2e")

    first = run_target(config, singer_lines("optins", rows, CONSENT_COLUMNS))
    state = json.dumps(box.store.consent, sort_keys=True)
    second = run_target(config, singer_lines("optins", rows, CONSENT_COLUMNS))

    assert first.exit_code == second.exit_code == 0, first.log
    store = box.store
    e = store.find_profile("email", "e@example.com")
    phone = store.find_profile("phone_number", "+14155550101")
    both = store.find_profile("email", "both@example.com")
    assert store.consent[e["id"]]["email_marketing"]["consent"] == "SUBSCRIBED"
    assert "sms_marketing" not in store.consent[e["id"]]
    assert store.consent[phone["id"]]["sms_marketing"] == {"consent": "SUBSCRIBED", "timestamp": "2024-03-01T10:00:00Z"}
    assert set(store.consent[both["id"]]) == {"suppression", "sms_transactional"}
    (list_id,) = list(store.new_lists)
    assert sorted(store.member_ids(list_id)) == sorted([e["id"], phone["id"], both["id"]])
    assert sorted(r["reason"] for r in first.rejects()) == [
        "channel sms_marketing needs a phone_number and the row has none",
        "consented_at must be in the past",
        "phone_number is not E.164: + then country code and number, 7 to 15 digits",
    ]
    assert json.dumps(store.consent, sort_keys=True) == state  # the rerun: same state
    assert len(store.new_lists) == 1
    ops = writes(box)
    assert ops.count("bulk_subscribe_profiles") == 4  # per run: a normal and a historical_import request


def test_unsubscribe_sets_the_channels_unsubscribed(box, run_target):
    box.store.upsert_profile({"email": "bye@example.com"})
    rows = [{"email": "bye@example.com", "phone_number": None, "consented_at": None, "channels": None}]
    run_target(settings(box, operation="subscribe"), singer_lines("s", rows, CONSENT_COLUMNS))

    run = run_target(settings(box, operation="unsubscribe"), singer_lines("s", rows, CONSENT_COLUMNS))

    assert run.exit_code == 0, run.log
    assert email_consent(box, "bye@example.com")["consent"] == "UNSUBSCRIBED"


# ----------------------------------------------------------------------------- suppress / unsuppress


def test_suppress_then_unsuppress_wait_for_their_jobs(box, run_target):
    rows = [{"email": f"s{i}@example.com", "phone_number": None} for i in range(150)]
    rows.append({"email": None, "phone_number": "+14155550199"})
    columns = {"email": TEXT, "phone_number": TEXT}
    config = settings(box, operation="suppress", wait_for_completion=True)

    suppressed = run_target(config, singer_lines("s", rows, columns, state={"s": 1}))

    assert suppressed.exit_code == 0, suppressed.log
    assert email_consent(box, "s149@example.com")["suppression"][0]["reason"] == "USER_SUPPRESSED"
    assert writes(box).count("bulk_suppress_profiles") == 2  # 100 emails a request
    assert "Klaviyo suppress job" in suppressed.log and "complete, 100 of 100" in suppressed.log
    assert [r["reason"] for r in suppressed.rejects()] == ["email is empty or missing"]

    lifted = run_target({**config, "operation": "unsuppress"}, singer_lines("s", rows, columns))

    assert lifted.exit_code == 0
    assert email_consent(box, "s0@example.com")["suppression"] == []


# ----------------------------------------------------------------------------- track

EVENT_COLUMNS = {
    "email": TEXT,
    "metric_name": TEXT,
    "time": TEXT,
    "value": {"type": ["number", "null"]},
    "unique_id": TEXT,
    "properties": ANY,
    "sku": TEXT,
    "first_name": TEXT,
}


def test_track_sends_events_once_even_when_run_again(box, run_target):
    rows = [
        {
            "email": "buyer@example.com",
            "metric_name": None,
            "time": "2026-07-01T09:30:00Z",
            "value": 42.5,
            "unique_id": "order-1",
            "properties": {"items": 2},
            "sku": "A1",
            "first_name": "Bea",
        },
        {
            "email": "buyer@example.com",
            "metric_name": "Renewed",
            "time": "2026-07-02T09:30:00",
            "value": None,
            "unique_id": None,
            "properties": None,
            "sku": None,
            "first_name": None,
        },
        {
            "email": "buyer@example.com",
            "metric_name": None,
            "time": "1985-01-01T00:00:00Z",
            "value": 1,
            "unique_id": "old",
            "properties": None,
            "sku": None,
            "first_name": None,
        },
        {
            "email": "buyer@example.com",
            "metric_name": None,
            "time": "2026-07-01T09:30:00Z",
            "value": 42.5,
            "unique_id": "order-1",
            "properties": None,
            "sku": None,
            "first_name": None,
        },
    ]
    config = settings(box, operation="track", metric_name="Placed Order")

    first = run_target(config, singer_lines("orders", rows, EVENT_COLUMNS))
    second = run_target(config, singer_lines("orders", rows, EVENT_COLUMNS))

    assert first.exit_code == second.exit_code == 0, first.log
    events = box.store.tracked_events
    assert [(e["metric"], e["unique_id"][:7], e["time"], e["value"]) for e in events] == [
        ("Placed Order", "order-1", "2026-07-01T09:30:00Z", 42.5),
        ("Renewed", events[1]["unique_id"][:7], "2026-07-02T09:30:00Z", None),
    ]
    assert events[0]["properties"] == {"items": 2, "sku": "A1"}  # first_name went to the profile
    assert box.store.find_profile("email", "buyer@example.com")["attributes"]["first_name"] == "Bea"
    assert sorted(r["reason"] for r in first.rejects()) == [
        "an earlier row has the same unique_id, metric and profile: Klaviyo records that event once",
        "time must be after 1990 and at most one year ahead",
    ]


def test_track_without_a_metric_name_setting_or_column_stops_before_any_request(box, run_target):
    run = run_target(settings(box, operation="track"), singer_lines("o", [{"email": "a@example.com"}], {"email": TEXT}))

    assert run.exit_code == 1
    assert "has no `metric_name` column and the metric_name setting is not set" in run.log
    assert writes(box) == []


EXECUTABLE = str(Path(sys.executable).parent / "target-klaviyo")  # the venv's console script: never skipped


def test_track_through_a_singer_pipe_of_the_console_script(box, tmp_path):
    rows = [{"email": f"p{i}@example.com", "metric_name": "Viewed", "unique_id": f"v{i}"} for i in range(2500)]
    columns = {"email": TEXT, "metric_name": TEXT, "unique_id": TEXT}
    config = tmp_path / "config.json"
    config.write_text(json.dumps(settings(box, operation="track", max_concurrency=4)))

    done = subprocess.run(
        [EXECUTABLE, "--config", str(config)],
        input=singer_lines("views", rows, columns, state={"views": 1}),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    assert [json.loads(line) for line in done.stdout.splitlines()] == [{"views": 1}]
    assert len(box.store.tracked_events) == 2500
    assert writes(box).count("bulk_create_events") == 3  # 1,000 events a request


# ----------------------------------------------------------------------------- dry run and settings


def test_dry_run_checks_rows_and_reports_requests_but_writes_nothing(box, run_target):
    rows = [
        {"email": f"d{i}@example.com", "phone_number": None, "consented_at": None, "channels": None}
        for i in range(1500)
    ] + [{"email": "bad", "phone_number": None, "consented_at": None, "channels": None}]
    config = settings(box, operation="subscribe", list_name="Not there yet", dry_run=True)

    run = run_target(config, singer_lines("optins", rows, CONSENT_COLUMNS))

    assert run.exit_code == 0, run.log
    assert writes(box) == [] and not box.store.new_lists and not box.store.consent
    # a probe changes nothing, so a dry run checks the scopes a real run needs too
    assert sorted(scope_probes(box)) == ["bulk_import_profiles", "create_list"]
    assert "a real run would create it" in run.log
    assert (
        "Dry run, stream 'optins': subscribe would send 1500 rows in "
        "2 x POST /api/profile-subscription-bulk-create-jobs"
    ) in run.log
    assert [r["reason"] for r in run.rejects()] == ["email is not an email address"]


@pytest.mark.parametrize(
    ("operation", "extra", "endpoint"),
    [
        ("upsert", {}, "1 x POST /api/profile-bulk-import-jobs"),
        ("track", {"metric_name": "Viewed"}, "1 x POST /api/event-bulk-create-jobs"),
        ("suppress", {}, "1 x POST /api/profile-suppression-bulk-create-jobs"),
        ("add", {"list_name": "Dry run add e2e"}, "1 x POST /api/profile-bulk-import-jobs"),
    ],
)
def test_every_operation_has_a_dry_run(box, run_target, operation, extra, endpoint):
    rows = [{"email": f"x{i}@example.com"} for i in range(20)]

    run = run_target(
        settings(box, operation=operation, dry_run=True, **extra), singer_lines("s", rows, {"email": TEXT})
    )

    assert run.exit_code == 0, run.log
    assert f"Dry run, stream 's': {operation} would send 20 rows in {endpoint}" in run.log
    assert writes(box) == [] and not box.store.new_lists


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"operation": "upsert", "list_id": "X"}, "Setting list_id: operation upsert takes no list"),
        ({"operation": "add", "metric_name": "M", "list_id": "X"}, "Setting metric_name is only for operation track"),
        ({"operation": "track", "consent_channels": ["email_marketing"]}, "Setting consent_channels is only for"),
        ({"operation": "subscribe", "consent_channels": ["push"]}, "(not 'push')"),
    ],
)
def test_settings_that_do_not_fit_the_operation_are_one_line(box, run_target, config, message):
    run = run_target(settings(box, **config), singer_lines("s", [{"email": "a@example.com"}], {"email": TEXT}))

    assert run.exit_code == 1
    assert message in run.log
    assert writes(box) == []


def test_consent_channels_setting_uses_the_channels_each_row_has_an_address_for(box, run_target):
    rows = [
        {"email": "mail.only@example.com", "phone_number": None, "consented_at": None, "channels": None},
        {"email": None, "phone_number": "+14155550177", "consented_at": None, "channels": None},
        {"email": "both@example.com", "phone_number": "+14155550178", "consented_at": None, "channels": []},
    ]
    config = settings(box, operation="subscribe", consent_channels=["email_marketing", "sms_transactional"])

    run = run_target(config, singer_lines("c", rows, CONSENT_COLUMNS))

    assert run.exit_code == 0, run.log
    store = box.store
    assert set(store.consent[store.find_profile("email", "mail.only@example.com")["id"]]) == {
        "suppression",
        "email_marketing",
    }
    assert set(store.consent[store.find_profile("phone_number", "+14155550177")["id"]]) == {
        "suppression",
        "sms_transactional",
    }
    assert [r["reason"] for r in run.rejects()] == ["the channels column is empty: no channel to change"]


@pytest.mark.slow
def test_lost_answers_and_throttling_are_retried_and_no_event_or_row_is_doubled(run_target, monkeypatch):
    """Truncated answers come after the sandbox applied the request: the retry sends it again, and
    unique_id keeps the event single. 5xx, resets and 429 bursts are retried."""
    monkeypatch.setattr(sender, "sleep", lambda seconds: None)
    faults = ("500", "reset", "truncated", "429")
    config = sandbox.SandboxConfig(
        seed=3, scale=0.01, rate_limit_scale=0.0, job_seconds=0.0, fault_rate=0.3, faults=faults
    )
    rows = [{"email": f"f{i}@example.com", "metric_name": "Viewed", "unique_id": f"v{i}"} for i in range(3000)]
    columns = {"email": TEXT, "metric_name": TEXT, "unique_id": TEXT}
    with sandbox.Sandbox(config) as box:
        run = run_target(
            settings(box, operation="track", max_concurrency=4), singer_lines("v", rows, columns, state={"v": 1})
        )
        events = list(box.store.tracked_events)
        counters = dict(box.store.counters)

    assert run.exit_code == 0, run.log
    assert run.states == [{"v": 1}]
    assert sorted(e["unique_id"] for e in events) == sorted(f"v{i}" for i in range(3000))
    assert counters.get("fault:truncated", 0) >= 1, f"an answer was lost after the events were applied: {counters}"
