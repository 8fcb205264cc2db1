"""Typed custom fields: discovery, the catalog it makes, and conforming records at sync time."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import typing as t
from contextlib import redirect_stdout

import jsonschema
import pytest
from singer_sdk.exceptions import ConfigValidationError

from tap_klaviyo.tap import TapKlaviyo
from tests.conftest import run_cli, select
from tests.tap.conftest import CONFIG
from tests.tap.fake_klaviyo import event, profile, ts

ON = {"discover_custom_fields": True}

S = {"type": ["string", "null"]}
I = {"type": ["integer", "null"]}  # noqa: E741
N = {"type": ["number", "null"]}
B = {"type": ["boolean", "null"]}
D = {"type": ["string", "null"], "format": "date"}
DT = {"type": ["string", "null"], "format": "date-time"}


def obj(**properties: dict) -> dict:
    return {"type": ["object", "null"], "properties": properties}


def arr(items: dict) -> dict:
    return {"type": ["array", "null"], "items": items}


# -- helpers ------------------------------------------------------------------------------


def discover(config: dict | None = None) -> dict:
    """The catalog discovery makes, as ``--discover`` would print it."""
    return TapKlaviyo(config={**CONFIG, **ON, **(config or {})}, setup_mapper=False).catalog_dict


class Run(t.NamedTuple):
    messages: list[dict]

    def records(self, stream: str) -> list[dict]:
        return [m["record"] for m in self.messages if m["type"] == "RECORD" and m["stream"] == stream]

    def schema(self, stream: str) -> dict:
        return next(m["schema"] for m in self.messages if m["type"] == "SCHEMA" and m["stream"] == stream)


def sync(catalog: dict | None, config: dict | None = None) -> Run:
    """Sync in-process; every record is checked against its stream's SCHEMA message."""
    out = io.StringIO()
    with redirect_stdout(out):
        TapKlaviyo(config={**CONFIG, **ON, **(config or {})}, catalog=catalog).sync_all()
    run = Run([json.loads(line) for line in out.getvalue().splitlines() if line.strip()])
    assert_records_fit_their_schema_messages(run.messages)
    return run


def assert_records_fit_their_schema_messages(messages: list[dict]) -> None:
    validators = {}
    for message in messages:
        if message["type"] == "SCHEMA":
            validators[message["stream"]] = jsonschema.Draft7Validator(
                message["schema"], format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
            )
        elif message["type"] == "RECORD":
            validators[message["stream"]].validate(message["record"])


def stream_schema(catalog: dict, name: str) -> dict:
    return next(s["schema"] for s in catalog["streams"] if s["tap_stream_id"] == name)


def scans(fake: t.Any, source: str = "profile") -> list[dict]:
    field = {"profile": "properties", "event": "event_properties"}[source]
    params = [fake.params(i) for i in range(len(fake.requests))]
    return [p for p in params if (p.get(f"fields[{source}]") or "").split(",")[0] == field]


def with_event_properties(id_: str, when: str, properties: t.Any) -> dict:
    resource = event(id_, when)
    resource["attributes"]["event_properties"] = properties
    return resource


# Profiles whose custom properties mix types, nest, are sparse and conflict.
MIXED = [
    {
        "plan": "pro",
        "orders": 3,
        "ltv": 10,
        "vip": True,
        "signup": "2024-01-02",
        "seen": "2024-01-02T03:04:05+00:00",
        "code": 123,
        "prefs": {"colour": "red", "sizes": [1, 2]},
        "tags": [],
        "nothing": None,
        "flag": True,
    },
    {
        "plan": "free",
        "orders": 4,
        "ltv": 12.5,
        "vip": False,
        "signup": "2023-12-31",
        "seen": "2024-01-03T00:00:00Z",
        "code": "A1",
        "prefs": {"colour": "blue", "sizes": [], "deep": {"x": 1.5}},
        "tags": ["a"],
        "nothing": None,
        "flag": 1,
        "referral": "R1",
    },
    {"plan": "pro"},
    {},
]
MIXED_SCHEMA = obj(
    code=S,  # 123 and "A1": string
    flag=S,  # true and 1: string (a boolean is never a number)
    ltv=N,  # 10 and 12.5: number
    nothing=S,  # only ever null: nullable string, can hold anything seen later
    orders=I,
    plan=S,
    prefs=obj(colour=S, deep=obj(x=N), sizes=arr(I)),
    referral=S,  # sparse
    seen=DT,
    signup=D,
    tags=arr(S),
    vip=B,
)


def seed_mixed(fake: t.Any) -> None:
    fake.add("/api/profiles", *(profile(f"p{i}", ts(2 + i), properties=p) for i, p in enumerate(MIXED)))
    fake.add(
        "/api/events",
        with_event_properties("e1", ts(2), {"value": 9.5, "sku": "A1"}),
        with_event_properties("e2", ts(3), {"value": 3, "items": [{"name": "Mug", "qty": 1}]}),
    )


# -- discovery and the catalog ---------------------------------------------------------------


def test_discovery_types_mixed_nested_sparse_and_conflicting_fields(fake):
    seed_mixed(fake)
    catalog = discover()

    profiles = stream_schema(catalog, "profiles")["properties"]
    assert profiles["properties"] == MIXED_SCHEMA
    assert list(profiles["properties"]["properties"]) == sorted(MIXED_SCHEMA["properties"])
    assert profiles["properties_unmapped"]["type"] == ["object", "null"]
    assert "properties" not in profiles["properties_unmapped"]  # free-form
    names = list(profiles)
    assert names.index("properties_unmapped") == names.index("properties") + 1

    events = stream_schema(catalog, "events")["properties"]
    assert events["event_properties"] == obj(items=arr(obj(name=S, qty=I)), sku=S, value=N)
    assert events["event_properties_unmapped"]["type"] == ["object", "null"]


def test_discovered_fields_are_selectable_in_the_catalog_metadata(fake):
    seed_mixed(fake)
    entry = next(s for s in discover()["streams"] if s["tap_stream_id"] == "profiles")
    breadcrumbs = {tuple(m["breadcrumb"]) for m in entry["metadata"]}
    assert ("properties", "properties", "properties", "plan") in breadcrumbs
    assert ("properties", "properties_unmapped") in breadcrumbs


def test_scans_read_the_most_recent_records_at_the_largest_page_asking_only_for_the_custom_field_and_time(fake):
    seed_mixed(fake)
    discover()
    (profile_scan,) = scans(fake, "profile")
    (event_scan,) = scans(fake, "event")
    # the time key too: a deep scan cuts the past into windows read at once (see _WindowedScan)
    assert profile_scan == {"fields[profile]": "properties,updated", "sort": "-updated", "page[size]": "100"}
    assert event_scan == {"fields[event]": "event_properties,datetime", "sort": "-datetime", "page[size]": "1000"}
    assert len(fake.requests) == 2  # nothing else is read to make the catalog


def test_discovery_logs_records_scanned_and_fields_found(fake, caplog):
    seed_mixed(fake)
    with caplog.at_level(logging.INFO):
        discover()
    assert (
        "Custom fields of profiles.properties: scanned 4 record(s) (row_scan_depth 1000), found 12 field(s), "
        "16 counting nested ones." in caplog.text
    )  # prefs: 3, prefs.deep: 1
    assert "Custom fields of events.event_properties: scanned 2 record(s)" in caplog.text


def test_discovery_off_keeps_properties_free_form_without_an_unmapped_column(fake):
    seed_mixed(fake)
    catalog = discover({"discover_custom_fields": False})
    assert stream_schema(catalog, "profiles")["properties"]["properties"] == {"type": ["object", "null"]}
    assert "properties_unmapped" not in stream_schema(catalog, "profiles")["properties"]
    assert "event_properties_unmapped" not in stream_schema(catalog, "events")["properties"]
    assert fake.requests == []


def test_the_same_data_gives_a_byte_identical_catalog(fake):
    seed_mixed(fake)
    first = TapKlaviyo(config={**CONFIG, **ON}, setup_mapper=False).catalog_json_text
    fake.collections["/api/profiles"].reverse()  # storage order does not matter either
    second = TapKlaviyo(config={**CONFIG, **ON}, setup_mapper=False).catalog_json_text
    assert first == second


def _many_profiles(fake: t.Any, n: int) -> None:
    start = dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)
    fake.add(
        "/api/profiles",
        *(
            profile(
                f"p{i:03}",
                (start + dt.timedelta(minutes=i)).isoformat(),
                properties={"n": i, **({"old_only": "x"} if i < 50 else {})},
            )
            for i in range(n)
        ),
    )


@pytest.mark.parametrize(
    ("depth", "requests", "page_size", "scanned"),
    # 150: the newest page, then two windows of about half a page and the rest of the past, at once
    [(150, 4, "100", 150), (100, 1, "100", 100), (50, 1, "50", 50), (0, 3, "100", 250)],
)
def test_row_scan_depth_limits_the_records_read_and_the_requests_made(
    fake, caplog, depth, requests, page_size, scanned
):
    _many_profiles(fake, 250)
    with caplog.at_level(logging.INFO):
        catalog = discover({"row_scan_depth": depth})
    profile_scans = scans(fake, "profile")
    assert len(profile_scans) == requests
    assert profile_scans[0]["page[size]"] == page_size
    assert f"profiles.properties: scanned {scanned} record(s)" in caplog.text
    # the most recent records are the ones read: a field only the 50 oldest have needs a deep scan
    discovered = stream_schema(catalog, "profiles")["properties"]["properties"]["properties"]
    assert ("old_only" in discovered) == (depth == 0)


def test_a_negative_row_scan_depth_is_a_config_error():
    with pytest.raises(ConfigValidationError) as failed:
        TapKlaviyo(config={**CONFIG, **ON, "row_scan_depth": -1}, setup_mapper=False)
    assert "-1 is less than the minimum of 0 in config['row_scan_depth']" in " ".join(failed.value.errors)


def test_each_source_is_scanned_once_per_tap_instance(fake):
    seed_mixed(fake)
    fake.add("/api/lists", {"type": "list", "id": "L1", "attributes": {"name": "VIP"}})
    tap = TapKlaviyo(config={**CONFIG, **ON, "list_and_segment_streams": True})
    tap.catalog_dict  # noqa: B018 - builds the catalog
    tap.catalog_dict  # noqa: B018 - and again
    tap.mapper  # noqa: B018 - and the mapper, from the same streams
    assert tap.streams["list_vip"].schema["properties"]["properties"] == MIXED_SCHEMA  # shares the profiles scan
    assert len(scans(fake, "profile")) == 1
    assert len(scans(fake, "event")) == 1


# -- sync ----------------------------------------------------------------------------------------


def test_a_run_with_a_catalog_uses_its_schema_and_scans_nothing(fake):
    seed_mixed(fake)
    catalog = discover()
    before = len(fake.requests)
    catalog_schema = stream_schema(catalog, "profiles")["properties"]["properties"]
    del catalog_schema["properties"]["plan"]  # the catalog, not a new scan, decides
    run = sync(select(catalog, "profiles"))
    assert scans(fake, "profile")[1:] == [] and len(fake.requests) > before
    first = run.records("profiles")[0]
    assert "plan" not in first["properties"] and first["properties_unmapped"] == {"plan": "pro"}


def test_building_a_tap_is_offline(fake):
    TapKlaviyo(config={**CONFIG, **ON, "list_and_segment_streams": True})
    assert fake.requests == []


def test_a_run_without_a_catalog_discovers_at_start_up_once(fake):
    seed_mixed(fake)
    run = sync(None)
    assert len(scans(fake, "profile")) == 1 and len(scans(fake, "event")) == 1
    assert run.schema("profiles")["properties"]["properties"] == MIXED_SCHEMA
    assert [r["properties_unmapped"] for r in run.records("profiles")] == [None] * 4
    # string fields hold any scalar as text, losslessly
    assert run.records("profiles")[0]["properties"] == {**MIXED[0], "code": "123", "flag": "true"}


def test_values_that_do_not_fit_or_fields_never_seen_go_untouched_to_the_unmapped_column(fake):
    seed_mixed(fake)
    catalog = select(discover(), "profiles", "events")
    # the data changes after discovery
    fake.add(
        "/api/profiles",
        profile(
            "new",
            ts(9),
            properties={
                "plan": "pro",
                "ltv": 7,
                "orders": "n/a",  # wrong type
                "vip": "yes",  # wrong type
                "signup": "not a date",  # wrong format
                "brand_new": 1,  # never seen
                "prefs": {"colour": "green", "sizes": [1, "two"], "extra": {"a": 1}},  # nested misfits
            },
        ),
        profile("odd", ts(10), properties="not an object"),
        profile("none", ts(11), properties=None),
    )
    fake.add("/api/events", with_event_properties("e3", ts(9), {"value": "free", "coupon": "X"}))

    run = sync(catalog)

    records = {r["id"]: r for r in run.records("profiles")}
    assert records["new"]["properties"] == {"plan": "pro", "ltv": 7, "prefs": {"colour": "green"}}
    assert records["new"]["properties_unmapped"] == {
        "orders": "n/a",
        "vip": "yes",
        "signup": "not a date",
        "brand_new": 1,
        "prefs.sizes": [1, "two"],
        "prefs.extra": {"a": 1},
    }
    assert records["odd"]["properties"] is None and records["odd"]["properties_unmapped"] == {"_value": "not an object"}
    assert records["none"]["properties"] is None and records["none"]["properties_unmapped"] is None
    assert records["p1"]["properties"] == {**MIXED[1], "flag": "1"} and records["p1"]["properties_unmapped"] is None
    (e3,) = [r for r in run.records("events") if r["id"] == "e3"]
    assert e3["event_properties"] == {} and e3["event_properties_unmapped"] == {"value": "free", "coupon": "X"}


def test_a_catalog_made_with_discovery_off_passes_properties_through(fake):
    seed_mixed(fake)
    catalog = select(discover({"discover_custom_fields": False}), "profiles")
    run = sync(catalog)  # discovery is on for this run, but the catalog decides
    assert [r["properties"] for r in run.records("profiles")] == MIXED
    assert all("properties_unmapped" not in r for r in run.records("profiles"))
    assert scans(fake, "profile") == []


def test_flattening_gives_typed_top_level_columns(fake):
    fake.add(
        "/api/profiles",
        profile("p1", ts(2), properties={"plan": "pro", "lifetime_orders": 3, "prefs": {"colour": "red"}}),
        profile("p2", ts(3), properties={"plan": "free", "lifetime_orders": 5, "surprise": True}),
    )
    flattening = {"flattening_enabled": True, "flattening_max_depth": 1}
    catalog = select(discover({**flattening, "row_scan_depth": 1}), "profiles")  # p2 only: no prefs
    fake.add("/api/profiles", profile("p3", ts(4), properties={"plan": "pro", "lifetime_orders": "many"}))

    run = sync(catalog, flattening)

    columns = run.schema("profiles")["properties"]
    assert columns["properties__plan"] == {"type": ["string", "null"]}
    assert columns["properties__lifetime_orders"] == {"type": ["integer", "null"]}
    assert columns["properties__surprise"] == {"type": ["boolean", "null"]}
    assert columns["properties_unmapped"] == {"type": ["string", "null"]}  # JSON text once flattened
    assert "properties" not in columns
    rows = {r["id"]: r for r in run.records("profiles")}
    assert rows["p2"]["properties__lifetime_orders"] == 5 and rows["p2"]["properties_unmapped"] is None
    assert json.loads(rows["p1"]["properties_unmapped"]) == {"prefs": {"colour": "red"}}
    assert json.loads(rows["p3"]["properties_unmapped"]) == {"lifetime_orders": "many"}
    assert rows["p3"]["properties__plan"] == "pro"


# -- against the loopback sandbox, through the real CLI -------------------------------------------


@pytest.fixture(scope="module")
def klaviyo_sandbox() -> t.Iterator[t.Any]:
    from klaviyo_sandbox import Sandbox, SandboxConfig

    with Sandbox(SandboxConfig(seed=1, scale=0.05, rate_limit_scale=0.0)) as box:
        yield box


def test_cli_discover_types_the_sandboxs_custom_fields_the_same_way_every_time(tmp_path, klaviyo_sandbox):
    config = {"api_key": klaviyo_sandbox.api_key, "base_url": klaviyo_sandbox.base_url}
    first = run_cli("tap-klaviyo", "--discover", config=config, tmp_path=tmp_path)
    second = run_cli("tap-klaviyo", "--discover", config=config, tmp_path=tmp_path)
    assert first.code == 0, first.stderr[-2000:]
    assert first.stdout == second.stdout  # byte-identical
    assert "Custom fields of profiles.properties: scanned 100 record(s)" in first.stderr
    assert "Custom fields of events.event_properties: scanned 1000 record(s)" in first.stderr

    catalog = json.loads(first.stdout)
    properties = stream_schema(catalog, "profiles")["properties"]["properties"]["properties"]
    assert {
        name: properties[name]
        for name in ("plan", "lifetime_orders", "ltv", "vip", "birthday", "last_seen", "loyalty_tier", "postal_code")
    } == {
        "plan": S,
        "lifetime_orders": I,
        "ltv": N,
        "vip": B,
        "birthday": D,
        "last_seen": DT,
        "loyalty_tier": S,  # mostly null
        "postal_code": S,  # integer on some profiles, text on others
    }
    assert properties["prefs"] == obj(channels=arr(S), frequency=S, topics=arr(S))
    assert "properties_unmapped" in stream_schema(catalog, "profiles")["properties"]
    events = stream_schema(catalog, "events")["properties"]["event_properties"]["properties"]
    assert events["$value"] == N and events["ProductID"] == S  # integer or text: string
    assert events["Items"] == arr(obj(ItemPrice=N, ProductName=S, Quantity=I))


def test_sandbox_records_conform_to_the_catalog_even_when_data_changes_after_discovery(klaviyo_sandbox):
    config = {"api_key": klaviyo_sandbox.api_key, "base_url": klaviyo_sandbox.base_url, "start_date": "2000-01-01"}
    catalog = select(discover({**config, "row_scan_depth": 3}), "profiles", "events")
    klaviyo_sandbox.store.upsert_profile(
        {
            "email": "changed@example.com",
            "properties": {
                "lifetime_orders": "lots",
                "ltv": 12.5,
                "plan": "pro",
                "new_field": [1, 2],
                "prefs": {"frequency": "daily", "new": 1},
            },
        }
    )

    run = sync(catalog, config)  # every record is validated against its SCHEMA message

    assert len(run.records("profiles")) == 101 and len(run.records("events")) == 1000
    (changed,) = [r for r in run.records("profiles") if r["email"] == "changed@example.com"]
    assert changed["properties"] == {"ltv": 12.5, "plan": "pro", "prefs": {"frequency": "daily"}}
    assert changed["properties_unmapped"] == {"lifetime_orders": "lots", "new_field": [1, 2], "prefs.new": 1}
    # a 3-record scan misses fields that are rare in the older data; none is lost
    unmapped = [r["properties_unmapped"] for r in run.records("profiles") if r["properties_unmapped"]]
    assert len(unmapped) > 1


def test_discovery_goes_through_the_shared_connection_and_waits_out_a_429(fake, no_sleep):
    seed_mixed(fake)
    fake.fail_next(429, {"Retry-After": "45"})
    catalog = discover()
    # Klaviyo's Retry-After (plus jitter), honoured by the connection's retry policy
    assert any(45.0 <= w <= 45.0 * 1.25 for w in no_sleep)
    assert stream_schema(catalog, "profiles")["properties"]["properties"] == MIXED_SCHEMA


def test_the_settings_are_documented_in_about(tmp_path):
    about = run_cli("tap-klaviyo", "--about", "--format=markdown", tmp_path=tmp_path).stdout
    assert "| discover_custom_fields | False | True |" in about
    assert "| row_scan_depth | False | 1000 |" in about
    assert "| list_and_segment_streams | False | False |" in about


def test_the_connection_test_checks_credentials_without_scanning(tmp_path, klaviyo_sandbox):
    counters = klaviyo_sandbox.store.counters
    before = (counters["op:get_profiles"], counters["op:get_events"], counters["op:get_accounts"])
    config = {"api_key": klaviyo_sandbox.api_key, "base_url": klaviyo_sandbox.base_url}
    result = run_cli("tap-klaviyo", "--test", config=config, tmp_path=tmp_path)
    assert result.code == 0, result.stderr[-2000:]
    # the account, and one one-item page per read scope (klaviyo_core.scopes): no custom-field scan
    assert (counters["op:get_profiles"], counters["op:get_events"], counters["op:get_accounts"]) == (
        before[0] + 1,
        before[1] + 1,
        before[2] + 1,
    )
