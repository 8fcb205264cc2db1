"""A hard day at Klaviyo, through the CLIs against the sandbox (issue 18, issue 16 items 4-5).

A quota mostly used by other integrations, keys without some scopes, targets started
together, odd input, DEBUG logs, kills during membership streams, and hosts that cannot
be reached or whose TLS fails. See docs/hard-day.md.
"""

from __future__ import annotations

import json
import socket
import threading
import typing as t

import pytest

from klaviyo_core.client import KlaviyoConnection
from target_klaviyo import lists as target_lists
from tests.faults.harness import (
    FIGURES,
    Output,
    plugin_env,
    run_tap,
    run_target,
    sandbox,
    tap_config,
    write_json,
)

SEED = 18
LIMITED_KEY = "pk_limited0123456789abcdef0123456789"
READ_ONLY_KEY = "pk_readonly0123456789abcdef012345678"
EMAILS = [f"hard.day.{i}@example.com" for i in range(5)]


def people(emails: t.Sequence[str] = EMAILS, extra: t.Sequence[dict] = ()) -> str:
    messages = [
        {"type": "SCHEMA", "stream": "people",
         "schema": {"type": "object", "properties": {"email": {"type": "string"}}}, "key_properties": ["email"]},
        *({"type": "RECORD", "stream": "people", "record": {"email": email}} for email in emails),
        *extra,
        {"type": "STATE", "value": {"people": "done"}},
    ]  # fmt: skip
    return "".join(json.dumps(message) + "\n" for message in messages)


def select(catalog: dict, names: t.Iterable[str]) -> dict:
    names = set(names)
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = entry["tap_stream_id"] in names
    return catalog


def discover(config: dict, workdir) -> dict:
    run = run_tap(config, workdir, args=["--discover"])
    assert run.code == 0, run.stderr[-2000:]
    return json.loads(run.stdout)


def lists_named(box, name: str) -> list[str]:
    document = json.loads(
        KlaviyoConnection({"api_key": box.api_key, "base_url": box.base_url})
        .request("GET", "/api/lists", params={"filter": f"equals(name,'{name}')"})
        .content
    )
    return [item["id"] for item in document["data"]]


# -- 1. rate-limit storms --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("concurrency", [8, 16])
def test_a_sync_on_a_twentieth_of_the_quota_finishes_with_few_429s(tmp_path, concurrency):
    streams = ("profiles", "list_members", "segment_members")
    with sandbox(SEED) as clean_box:
        catalog = select(discover(tap_config(clean_box, discover_custom_fields=False), tmp_path / "d"), streams)
        clean = run_tap(
            tap_config(clean_box, discover_custom_fields=False),
            tmp_path / "clean",
            args=["--catalog", str(write_json(tmp_path / "catalog.json", catalog))],
        )
    assert clean.code == 0, clean.stderr[-2000:]
    # rate_limit_share stays 1: the tap paces to Klaviyo's published limits and must learn the real ones
    with sandbox(SEED, rate_limit_scale=0.05) as box:
        config = tap_config(box, discover_custom_fields=False, max_concurrency=concurrency)
        run = run_tap(config, tmp_path / "storm", args=["--catalog", str(tmp_path / "catalog.json")], timeout=400)
        counters = dict(box.store.counters)
    requests = sum(v for k, v in counters.items() if k.startswith("op:"))
    throttled = counters.get("status:429", 0)
    assert run.code == 0, run.stderr[-3000:]
    assert Output(run.messages).records == Output(clean.messages).records
    assert "gave up" not in run.stderr
    assert throttled / requests < 0.1, (throttled, requests)
    FIGURES.add(f"storm_c{concurrency}_requests", requests)
    FIGURES.add(f"storm_c{concurrency}_429s", throttled)


# -- 2. missing scopes -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scoped_box():
    grants = {LIMITED_KEY: ("accounts:read", "events:read", "lists:read"),
              READ_ONLY_KEY: ("accounts:read", "lists:read", "profiles:read")}  # fmt: skip
    with sandbox(SEED, key_scopes=grants) as box:
        yield box


def test_discovery_leaves_out_and_names_what_the_key_cannot_read(scoped_box, tmp_path):
    config = {**tap_config(scoped_box), "api_key": LIMITED_KEY}
    run = run_tap(config, tmp_path, args=["--discover"])
    assert run.code == 0, run.stderr[-2000:]
    streams = {entry["tap_stream_id"]: entry for entry in json.loads(run.stdout)["streams"]}
    assert set(streams) == {"events", "lists"}
    assert "profiles (needs profiles:read)" in run.stderr and "campaigns (needs campaigns:read)" in run.stderr
    # still types what it can: the events' custom fields were scanned
    assert streams["events"]["schema"]["properties"]["event_properties"].get("properties")


def test_a_sync_names_every_missing_scope_in_one_line_before_any_record(scoped_box, tmp_path):
    full = discover(tap_config(scoped_box, discover_custom_fields=False), tmp_path / "d")
    catalog = write_json(tmp_path / "catalog.json", select(full, ["events", "profiles", "segments", "list_members"]))
    config = {**tap_config(scoped_box, discover_custom_fields=False), "api_key": LIMITED_KEY}
    run = run_tap(config, tmp_path / "sync", args=["--catalog", str(catalog)])
    assert run.code == 1
    (line,) = run.error_lines
    assert "profiles:read (for list_members, profiles)" in line and "segments:read (for segments)" in line
    assert not [m for m in run.messages if m["type"] == "RECORD"]

    test = run_tap(config, tmp_path / "test", args=["--test", "--catalog", str(catalog)])
    assert test.code == 1
    assert "Scope events:read: granted (streams events)" in test.stderr
    assert "Scope profiles:read: MISSING (streams list_members, profiles)" in test.stderr


@pytest.mark.parametrize("catalog_first", [False, True])
def test_the_connection_test_passes_for_a_key_that_can_read_the_selected_streams(scoped_box, tmp_path, catalog_first):
    full = discover(tap_config(scoped_box, discover_custom_fields=False), tmp_path / "d")
    catalog = write_json(tmp_path / "catalog.json", select(full, ["events", "lists"]))
    config = {**tap_config(scoped_box), "api_key": LIMITED_KEY}
    args = ["--catalog", str(catalog), "--test"] if catalog_first else ["--test", "--catalog", str(catalog)]
    run = run_tap(config, tmp_path / "test", args=args)
    assert run.code == 0, run.stderr[-2000:]
    assert "Test passed: 2 streams can be synced" in run.stderr
    assert not run.stdout.strip()  # no record is synced


def test_test_schema_prints_the_schemas_and_syncs_nothing(scoped_box, tmp_path):
    run = run_tap(tap_config(scoped_box, discover_custom_fields=False), tmp_path / "schema", args=["--test=schema"])
    assert run.code == 0, run.stderr[-2000:]
    assert {m["type"] for m in run.messages} == {"SCHEMA"}
    assert "events" in {m["stream"] for m in run.messages}


def test_the_target_checks_write_scopes_before_creating_the_list(scoped_box, tmp_path):
    config = {"api_key": READ_ONLY_KEY, "base_url": scoped_box.base_url, "list_name": "Never created",
              "rejects_file": str(tmp_path / "rejects.jsonl")}  # fmt: skip
    run = run_target(config, tmp_path, people())
    assert run.code == 1
    (line,) = run.error_lines
    assert "lists:write" in line and "profiles:write" in line and "nothing was changed" in line
    assert lists_named(scoped_box, "Never created") == []


# -- 3. concurrent runs ---------------------------------------------------------------------------


@pytest.mark.slow
def test_three_targets_started_together_with_a_new_list_name_make_one_list(tmp_path):
    with sandbox(SEED, latency_ms=30) as box:
        config = {
            "api_key": box.api_key,
            "base_url": box.base_url,
            "list_name": "Started together",
            "wait_for_completion": True,
        }
        runs: dict[int, t.Any] = {}
        threads = [
            threading.Thread(target=lambda i=i: runs.__setitem__(i, run_target(
                {**config, "rejects_file": str(tmp_path / f"r{i}.jsonl")}, tmp_path / f"t{i}", people())))
            for i in range(3)
        ]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [run.code for run in runs.values()] == [0, 0, 0], [r.stderr[-1500:] for r in runs.values()]
        (list_id,) = lists_named(box, "Started together")
        assert len(box.store.member_ids(list_id)) == len(EMAILS)


def test_runs_on_different_machines_converge_on_the_oldest_list(monkeypatch):
    """No shared lock file (another machine): every run creates a list, then all but one delete theirs."""
    monkeypatch.setattr(target_lists, "fcntl", None)
    with sandbox(SEED) as box:
        config = {"api_key": box.api_key, "base_url": box.base_url, "list_name": "Two machines"}
        start = threading.Barrier(3)
        chosen: list[str] = []

        def one_run() -> None:
            connection = KlaviyoConnection(config)
            start.wait()  # all three looked the name up and found nothing
            found = target_lists._create_list(connection, config, "Two machines", _quiet())
            chosen.append(target_lists._single(found, "Two machines", _quiet()))

        threads = [threading.Thread(target=one_run) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        remaining = lists_named(box, "Two machines")
    assert len(remaining) == 1 and chosen == remaining * 3


def _quiet():
    import logging

    return logging.getLogger("tests.hard_day")


# -- 4. odd input ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_unknown_message_type_is_logged_and_skipped(tmp_path):
    with sandbox(SEED) as box:
        config = {"api_key": box.api_key, "base_url": box.base_url, "list_name": "Odd input",
                  "wait_for_completion": True, "rejects_file": str(tmp_path / "rejects.jsonl")}  # fmt: skip
        run = run_target(config, tmp_path, people(extra=[{"type": "HEARTBEAT", "stream": "people"}] * 3))
        (list_id,) = lists_named(box, "Odd input")
        members = box.store.member_ids(list_id)
    assert run.code == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert run.stderr.count("Singer message type 'HEARTBEAT' is unknown to this target") == 1
    assert len(members) == len(EMAILS)


@pytest.mark.parametrize(
    ("setting", "needle"),
    [
        ({"rejects_file": "."}, "rejects_file: . is a folder"),
        ({"list_name": " Padded "}, "starts or ends with spaces"),
        ({"base_url": "BASE/api"}, "must not end in /api"),
    ],
)
def test_odd_settings_stop_the_target_with_one_line(tmp_path, setting, needle):
    with sandbox(SEED) as box:
        config = {"api_key": box.api_key, "base_url": box.base_url, "list_name": "Odd settings", **setting}
        config["base_url"] = config["base_url"].replace("BASE", box.base_url)
        run = run_target(config, tmp_path, people())
        made = lists_named(box, "Odd settings") + lists_named(box, " Padded ")
    assert run.code == 1
    assert len(run.error_lines) == 1 and needle in run.error_lines[0], run.stderr[-1500:]
    assert made == []


def test_a_base_url_ending_in_api_stops_discovery_with_one_line(tmp_path):
    with sandbox(SEED) as box:
        run = run_tap(tap_config(box, base_url=box.base_url + "/api/"), tmp_path, args=["--discover"])
    assert run.code == 1 and "must not end in /api" in run.stderr and "Traceback" not in run.stderr


def test_a_start_date_in_the_future_is_warned_about(tmp_path):
    with sandbox(SEED) as box:
        full = discover(tap_config(box, discover_custom_fields=False), tmp_path / "d")
        catalog = write_json(tmp_path / "catalog.json", select(full, ["events"]))
        run = run_tap(tap_config(box, start_date="2999-01-01T00:00:00Z"), tmp_path, args=["--catalog", str(catalog)])
    assert run.code == 0
    assert "Setting start_date 2999-01-01T00:00:00+00:00 is in the future" in run.stderr


# -- 5. quiet logs stay clean ---------------------------------------------------------------------


@pytest.mark.slow
def test_debug_logs_hold_no_email_key_or_token(tmp_path):
    with sandbox(SEED) as box:
        add = {"api_key": box.api_key, "base_url": box.base_url, "list_name": "Debug",
               "rejects_file": str(tmp_path / "rejects.jsonl")}  # fmt: skip
        env = plugin_env(tmp_path, LOGLEVEL="DEBUG")
        added = run_target(add, tmp_path / "add", people(), env=env)
        removed = run_target({**add, "operation": "remove"}, tmp_path / "remove", people(), env=env)
        tapped = run_tap(tap_config(box, discover_custom_fields=False), tmp_path / "tap", args=["--discover"], env=env)
    for run in (added, removed, tapped):
        assert run.code == 0, run.stderr[-2000:]
    assert "urllib3" in removed.stderr or "connectionpool" in removed.stderr  # DEBUG lines were written
    for run in (added, removed, tapped):
        assert box.api_key not in run.stderr and box.api_key[:16] not in run.stderr
        assert not [email for email in EMAILS if email in run.stderr or email.replace("@", "%40") in run.stderr]


# -- 6. cheaper resumes ---------------------------------------------------------------------------


@pytest.mark.slow
def test_state_comes_about_every_page_and_a_resumed_membership_stream_skips_groups_read_in_full(tmp_path):
    with sandbox(SEED) as box:
        config = tap_config(box, discover_custom_fields=False)
        full = discover(config, tmp_path / "d")
        catalog = write_json(tmp_path / "catalog.json", select(full, ["events", "list_members"]))
        run = run_tap(config, tmp_path / "full", args=["--catalog", str(catalog)])
        assert run.code == 0, run.stderr[-2000:]
        output = Output(run.messages)
        events = len(output.records["events"])
        states = [m for m in run.messages if m["type"] == "STATE"]
        assert len(states) >= events // 1000 + len(output.records["list_members"]) // 100
        assert "groups_done" not in json.dumps(states[-1])  # a complete run leaves nothing to skip

        # the state a run killed after three lists would have left behind
        lists = [p["context"]["list_id"] for p in states[-1]["value"]["bookmarks"]["list_members"]["partitions"]]
        interrupted = {"bookmarks": {"list_members": {"groups_done": lists[:3]}}}
        before = box.store.counters["op:get_profiles_for_list"]
        resumed = run_tap(config, tmp_path / "resumed", state=interrupted, args=["--catalog", str(catalog)])
        fetched = box.store.counters["op:get_profiles_for_list"] - before
    assert resumed.code == 0, resumed.stderr[-2000:]
    assert "3 lists already read in full are skipped" in resumed.stderr
    skipped = {r["list_id"] for r in Output(resumed.messages).records["list_members"]}
    assert not skipped & set(lists[:3])
    assert fetched < len(lists) + 5


# -- 7 and issue 16.4: no connection, TLS failures ------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    ("base_url", "needle"),
    [
        ("https://klaviyo.invalid", "could not reach Klaviyo at https://klaviyo.invalid"),
        ("CLOSED", "could not reach Klaviyo at http://127.0.0.1:"),
        ("TLS", "the TLS connection to Klaviyo at https://127.0.0.1:"),
    ],
)
@pytest.mark.parametrize("args", [["--test"], ["--discover"]])
def test_no_connection_on_the_first_request_fails_within_seconds_with_one_line(tmp_path, base_url, needle, args):
    with sandbox(SEED) as box:
        port = box.base_url.rsplit(":", 1)[1]
        url = {"CLOSED": f"http://127.0.0.1:{_closed_port()}", "TLS": f"https://127.0.0.1:{port}"}.get(
            base_url, base_url
        )
        run = run_tap({"api_key": box.api_key, "base_url": url}, tmp_path, args=args, timeout=60)
    assert run.code == 1
    assert run.elapsed < 8, run.elapsed
    assert len(run.error_lines) == 1 and needle in run.error_lines[0], run.stderr[-1500:]
    assert "Retrying" not in run.stderr and "Traceback" not in run.stderr


def test_the_help_says_what_test_does(tmp_path):
    from tests.faults.harness import TAP

    run = run_plugin_help(TAP, tmp_path)
    assert "check the credentials and the read scope of each selected stream" in " ".join(run.split())
    assert "sync a single record" not in run


def run_plugin_help(executable: str, workdir) -> str:
    import subprocess

    return subprocess.run(
        [executable, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=workdir,
        env=plugin_env(workdir),
    ).stdout


@pytest.mark.slow
def test_a_resume_that_skips_the_last_group_still_clears_the_groups_done(tmp_path):
    with sandbox(SEED) as box:
        config = tap_config(box, discover_custom_fields=False)
        catalog = write_json(tmp_path / "catalog.json", select(discover(config, tmp_path / "d"), ["segment_members"]))
        first = run_tap(config, tmp_path / "first", args=["--catalog", str(catalog)])
        segments = [
            p["context"]["segment_id"]
            for p in first.messages[-1]["value"]["bookmarks"]["segment_members"]["partitions"]
        ]
        state = {"bookmarks": {"segment_members": {"groups_done": segments}}}
        resumed = run_tap(config, tmp_path / "resumed", state=state, args=["--catalog", str(catalog)])
    assert resumed.code == 0, resumed.stderr[-2000:]
    assert not Output(resumed.messages).records.get("segment_members")
    assert "groups_done" not in json.dumps(resumed.messages[-1])


def test_discovery_leaves_out_group_streams_the_key_cannot_read(scoped_box, tmp_path):
    config = {**tap_config(scoped_box, list_and_segment_streams=True, discover_custom_fields=False),
              "api_key": LIMITED_KEY}  # fmt: skip
    run = run_tap(config, tmp_path, args=["--discover"])
    assert run.code == 0, run.stderr[-2000:]
    names = {entry["tap_stream_id"] for entry in json.loads(run.stdout)["streams"]}
    assert names == {"events", "lists"}
    assert "list_and_segment_streams is on but the credentials lack profiles:read segments:read" in run.stderr


def test_the_target_fails_within_seconds_when_klaviyo_cannot_be_reached(tmp_path):
    config = {"api_key": "pk_test_0123456789abcdef", "base_url": f"http://127.0.0.1:{_closed_port()}",
              "list_name": "Unreachable", "rejects_file": str(tmp_path / "rejects.jsonl")}  # fmt: skip
    run = run_target(config, tmp_path, people(), timeout=60)
    assert run.code == 1 and run.elapsed < 8, (run.elapsed, run.stderr[-1500:])
    assert len(run.error_lines) == 1 and "could not reach Klaviyo at http://127.0.0.1:" in run.error_lines[0]
