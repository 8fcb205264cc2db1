"""One stream per list and per segment: names, catalog entries, records, catalogs given back."""

from __future__ import annotations

import io
import json
import logging
import random
import typing as t
from contextlib import redirect_stdout

import pytest
from singer_sdk.singerlib import Catalog

from tap_klaviyo import sync_catalog
from tap_klaviyo.groups import MAX_SLUG, Group, name_streams, slug
from tap_klaviyo.tap import TapKlaviyo
from tests.conftest import run_cli
from tests.tap.conftest import CONFIG
from tests.tap.fake_klaviyo import FakeKlaviyo, profile, resource, ts
from tests.tap.test_custom_fields import discover, select, stream_schema, sync

GROUPS_ON = {"list_and_segment_streams": True}
BUILT_IN = {
    "campaigns",
    "events",
    "flows",
    "lists",
    "metrics",
    "profiles",
    "reviews",
    "segments",
    "list_members",
    "segment_members",
} | {
    "campaign_messages",
    "flow_actions",
    "flow_messages",
    "templates",
    "tags",
    "tag_groups",
    "catalog_items",
    "catalog_variants",
    "catalog_categories",
    "coupons",
    "coupon_codes",
    "forms",
    "images",
    "campaign_values_report",
    "flow_values_report",
    "flow_series_report",
    "form_series_report",
    "segment_series_report",
    "metric_aggregates",
}


# -- names ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("VIP / Whales 🐋", "vip_whales"),
        ("Summer Sale ☀️ 2026", "summer_sale_2026"),
        ("  padded name  ", "padded_name"),
        ("Ünïcödé Ŀïşţ", "unicode_list"),
        ("Straße Œuvre Søren Łódź", "strasse_oeuvre_soren_lodz"),
        ("O'Reilly's \"quoted\" list", "o_reilly_s_quoted_list"),
        ("back\\slash list", "back_slash_list"),
        ("a,b (comma) list", "a_b_comma_list"),
        ("CamelCase--and__under", "camelcase_and_under"),
        ("🐋🎉", ""),
        ("Клиенты", ""),  # no transliteration for other scripts: the id is used instead
        ("x" * 39 + " tail", "x" * 39),  # cut at MAX_SLUG, no trailing underscore
    ],
)
def test_names_become_lowercase_ascii_with_single_underscores(name, expected):
    assert slug(name) == expected
    assert len(slug("a" * 100)) == MAX_SLUG


AWKWARD = [
    Group("list", "L1", "VIP"),
    Group("list", "L2", "vip!"),  # case and punctuation only: clashes with VIP
    Group("list", "L3", "Newsletter"),
    Group("list", "L4", "🐋"),  # nothing left: the id
    Group("list", "L5", "profiles"),  # list_profiles: no built-in stream has that name
    Group("list", "L6", "Members"),  # list_members is a built-in stream
    Group("list", "L7", "vip L1"),  # looks like VIP's clash-resolved name
    Group("list", "ab1", "Sale"),
    Group("list", "AB1", "Sale"),  # ids differing in case only
    Group("list", "L8", "Spring / Sale"),
    Group("list", "L9", "spring sale"),
    Group("segment", "S1", "VIP"),  # segment_vip: no clash with list_vip
    Group("segment", "S2", "profiles"),
]


def test_colliding_names_get_the_id_and_are_stable_whatever_the_order():
    named = {(g.kind, g.id): g.stream_name for g in name_streams(AWKWARD, BUILT_IN)}
    assert named == {
        ("list", "L1"): "list_vip_l1",
        ("list", "L2"): "list_vip_l2",
        ("list", "L3"): "list_newsletter",
        ("list", "L4"): "list_l4",
        ("list", "L5"): "list_profiles",
        ("list", "L6"): "list_members_l6",
        ("list", "L7"): "list_vip_l1_2",
        ("list", "AB1"): "list_sale_ab1",
        ("list", "ab1"): "list_sale_ab1_2",
        ("list", "L8"): "list_spring_sale_l8",
        ("list", "L9"): "list_spring_sale_l9",
        ("segment", "S1"): "segment_vip",
        ("segment", "S2"): "segment_profiles",
    }
    for seed in range(5):
        shuffled = AWKWARD[:]
        random.Random(seed).shuffle(shuffled)
        assert {(g.kind, g.id): g.stream_name for g in name_streams(shuffled, BUILT_IN)} == named


# -- discovery --------------------------------------------------------------------------------------


def group(kind: str, id_: str, name: str) -> dict:
    return resource(kind, id_, {"name": name, "created": ts(1), "updated": ts(1)})


def member_profile(id_: str, joined: str, **properties: t.Any) -> dict:
    resource_ = profile(id_, ts(2), properties=properties, joined_group_at=joined)
    resource_["relationships"] = {}
    return resource_


def seed(fake: FakeKlaviyo) -> None:
    fake.add("/api/profiles", profile("p1", ts(2), properties={"plan": "pro", "orders": 3}))
    fake.add(
        "/api/lists",
        group("list", "L1", "VIP / Whales 🐋"),
        group("list", "L2", "vip whales"),
        group("list", "L3", "profiles"),
    )
    fake.add("/api/segments", group("segment", "S1", "Big spenders 💰"))
    fake.add(
        "/api/lists/L1/profiles",
        member_profile("p1", ts(5), plan="pro", orders=3),
        member_profile("p2", ts(6), plan="free", orders="none", brand_new=True),
        member_profile("p3", ts(7)),
    )
    fake.add("/api/segments/S1/profiles", member_profile("p1", ts(8), plan="pro", orders=3))


def test_there_are_no_group_streams_unless_asked_for(fake):
    seed(fake)
    catalog = discover()
    assert {s["tap_stream_id"] for s in catalog["streams"]} == BUILT_IN
    assert not any("/api/lists" in r.url or "/api/segments" in r.url for r in fake.requests)


def test_discovery_adds_a_full_table_stream_per_list_and_segment_naming_its_id(fake):
    seed(fake)
    catalog = discover(GROUPS_ON)
    entries = {s["tap_stream_id"]: s for s in catalog["streams"]}
    assert set(entries) - BUILT_IN == {
        "list_vip_whales_l1",
        "list_vip_whales_l2",
        "list_profiles",
        "segment_big_spenders",
    }

    entry = entries["list_vip_whales_l1"]
    root = next(m["metadata"] for m in entry["metadata"] if m["breadcrumb"] == [])
    assert (root["klaviyo-group-type"], root["klaviyo-group-id"], root["klaviyo-group-name"]) == (
        "list",
        "L1",
        "VIP / Whales 🐋",
    )
    assert "(list id L1)" in entry["schema"]["description"] and "VIP / Whales 🐋" in entry["schema"]["description"]
    assert list(entry["key_properties"]) == ["id"] and entry.get("replication_key") is None
    assert entry["replication_method"] == "FULL_TABLE"
    segment_root = next(m["metadata"] for m in entries["segment_big_spenders"]["metadata"] if m["breadcrumb"] == [])
    assert (segment_root["klaviyo-group-type"], segment_root["klaviyo-group-id"]) == ("segment", "S1")

    schema = entry["schema"]["properties"]
    profiles = stream_schema(catalog, "profiles")["properties"]
    assert schema["joined_group_at"] == {"type": ["string", "null"], "format": "date-time"}
    assert schema["properties"] == profiles["properties"]  # the same typed custom properties
    assert schema["properties"]["properties"]["orders"] == {"type": ["integer", "null"]}
    assert schema["properties_unmapped"] == profiles["properties_unmapped"]
    assert set(profiles) < set(schema)
    # lists and segments are listed once, names only
    listings = [
        fake.params(i) for i, r in enumerate(fake.requests) if r.url.split("?")[0].endswith(("/lists", "/segments"))
    ]
    assert listings == [{"fields[list]": "name"}, {"fields[segment]": "name"}]


def test_a_list_stream_holds_its_current_members_as_typed_profiles(mocker):
    fake = FakeKlaviyo(mocker, page_cap=2)
    seed(fake)
    catalog = select(discover(GROUPS_ON), "list_vip_whales_l1")
    before = len(fake.requests)

    run = sync(catalog, GROUPS_ON)  # every record is validated against its SCHEMA message

    member_requests = [fake.params(i) for i in range(before, len(fake.requests))]
    assert [r.url.split("?")[0] for r in fake.requests[before:]] == ["https://a.klaviyo.com/api/lists/L1/profiles"] * 2
    assert member_requests[0] == {
        "additional-fields[profile]": "subscriptions", "page[size]": "100", "sort": "joined_group_at"
    }  # fmt: skip
    assert "page[cursor]" in member_requests[1]  # links.next followed
    records = {r["id"]: r for r in run.records("list_vip_whales_l1")}
    assert sorted(records) == ["p1", "p2", "p3"]
    assert records["p1"]["joined_group_at"] == ts(5) and records["p1"]["email"] == "p1@example.com"
    assert records["p1"]["subscriptions"]["email"]["marketing"]["consent"] == "SUBSCRIBED"
    assert records["p1"]["properties"] == {"plan": "pro", "orders": 3} and records["p1"]["properties_unmapped"] is None
    assert records["p2"]["properties"] == {"plan": "free"}
    assert records["p2"]["properties_unmapped"] == {"orders": "none", "brand_new": True}
    assert records["p3"]["properties"] == {} and records["p3"]["properties_unmapped"] is None
    assert run.schema("list_vip_whales_l1")["properties"]["properties"]["properties"]["orders"] == {
        "type": ["integer", "null"]
    }


def test_a_segment_stream_reads_the_segment_endpoint(fake):
    seed(fake)
    run = sync(select(discover(GROUPS_ON), "segment_big_spenders"), GROUPS_ON)
    assert [r["id"] for r in run.records("segment_big_spenders")] == ["p1"]
    assert fake.requests[-1].url.split("?")[0] == "https://a.klaviyo.com/api/segments/S1/profiles"


def test_a_catalog_given_back_rebuilds_the_streams_without_listing_groups(fake):
    seed(fake)
    catalog = select(discover(GROUPS_ON), "list_vip_whales_l1")
    fake.collections["/api/lists"][0]["attributes"]["name"] = "Renamed since discovery"
    before = len(fake.requests)

    run = sync(catalog, GROUPS_ON)

    assert len(run.records("list_vip_whales_l1")) == 3  # same stream, found by id
    assert all("/api/lists/L1/profiles" in r.url for r in fake.requests[before:])


def test_a_sync_from_a_catalog_builds_and_maps_only_the_streams_it_syncs(fake):
    """A stream built costs its schema read, resolved and copied (its catalog entry, its stream
    maps): with 370 lists and segments a sync of one small stream took 3.7 s of CPU and 173 MB."""
    seed(fake)
    fake.add("/api/coupons", resource("coupon", "C1", {"external_id": "C1"}))
    catalog = select(discover(GROUPS_ON), "list_vip_whales_l1", "coupon_codes")
    tap = TapKlaviyo(config={**CONFIG, **GROUPS_ON}, catalog=catalog)
    out = io.StringIO()
    with redirect_stdout(out):
        tap.sync_all()

    assert set(tap.streams) == {"list_vip_whales_l1", "coupon_codes", "coupons"}  # coupons: a selected child's parent
    assert set(tap.mapper.stream_maps) == set(tap.streams)
    schemas = [json.loads(line)["stream"] for line in out.getvalue().splitlines() if '"type":"SCHEMA"' in line]
    assert sorted(schemas) == ["coupon_codes", "list_vip_whales_l1"]
    assert [r["id"] for r in sync(catalog, GROUPS_ON).records("list_vip_whales_l1")] == ["p1", "p2", "p3"]


def test_a_sync_parses_deselected_lists_and_segments_without_their_properties(fake):
    seed(fake)
    text = json.dumps(select(discover(GROUPS_ON), "list_vip_whales_l1", "profiles"))
    catalog = json.loads(text)

    cut = {entry["tap_stream_id"]: entry for entry in json.loads(sync_catalog.for_sync(text))["streams"]}
    given = {entry["tap_stream_id"]: entry for entry in catalog["streams"]}

    assert list(cut) == list(given)  # every entry, in order
    for name in ("list_vip_whales_l2", "list_profiles", "segment_big_spenders"):  # deselected groups
        assert cut[name]["schema"] == {
            "type": "object",
            "properties": {},
            "description": given[name]["schema"]["description"],  # names the list's id
        }
        assert cut[name]["metadata"] == [m for m in given[name]["metadata"] if m["breadcrumb"] == []]
        assert {k: v for k, v in cut[name].items() if k not in ("schema", "metadata")} == {
            k: v for k, v in given[name].items() if k not in ("schema", "metadata")
        }
    for name in ("list_vip_whales_l1", *BUILT_IN):  # selected, or built in (a deselected parent syncs a child)
        assert cut[name] == given[name]
    assert len(json.dumps(cut["list_profiles"])) < len(json.dumps(given["list_profiles"])) / 10


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"streams": 3}',
        '{"no_streams": []}',
        '{"streams": [{"tap_stream_id": "list_a", "metadata": "x"}]}',
        '{"streams": [{"tap_stream_id": "list_a", "schema": "\\ud83d"}]}',  # JSON msgspec refuses
        '{"streams": [{"tap_stream_id": "tags", "schema": {}, "metadata": []}]}',  # nothing to cut
    ],
)
def test_what_is_not_a_catalog_with_lists_to_cut_passes_through_unchanged(text):
    assert sync_catalog.for_sync(text) is text


def test_a_sync_from_the_cut_catalog_writes_what_the_whole_one_writes(fake):
    seed(fake)
    catalog = select(discover(GROUPS_ON), "list_vip_whales_l1", "segment_big_spenders", "profiles")
    whole = sync(catalog, GROUPS_ON).messages
    cut = sync(json.loads(sync_catalog.for_sync(json.dumps(catalog))), GROUPS_ON).messages

    def written(messages: list[dict]) -> list[dict]:
        return [{k: v for k, v in m.items() if k != "time_extracted"} for m in messages if m["type"] != "STATE"]

    assert written(cut) == written(whole)
    assert len(whole) > 8


def test_outside_a_sync_a_catalog_still_builds_every_stream_it_holds(fake):
    seed(fake)
    catalog = select(discover(GROUPS_ON), "list_vip_whales_l1")
    tap = TapKlaviyo(config={**CONFIG, **GROUPS_ON}, catalog=catalog)
    names = {entry["tap_stream_id"] for entry in catalog["streams"]}
    assert set(tap.streams) == names
    assert {entry["tap_stream_id"] for entry in json.loads(tap.catalog_json_text)["streams"]} == names


def test_a_stream_the_catalog_leaves_out_is_still_built_and_left_to_the_sdk_to_skip(fake):
    catalog = select(discover(), "tags")
    catalog["streams"] = [entry for entry in catalog["streams"] if entry["tap_stream_id"] in ("tags", "lists")]
    tap = TapKlaviyo(config=CONFIG, catalog=catalog)
    out = io.StringIO()
    with redirect_stdout(out):
        tap.sync_all()
    assert "lists" not in tap.streams  # in the catalog, deselected
    assert BUILT_IN - {"lists"} <= set(tap.streams)  # not in it: the SDK's default selection decides (off)
    assert {json.loads(line)["stream"] for line in out.getvalue().splitlines() if '"type":"SCHEMA"' in line} == {"tags"}


def test_without_the_custom_metadata_the_id_is_read_from_the_description(fake):
    seed(fake)
    catalog = Catalog.from_dict(select(discover(GROUPS_ON), "list_vip_whales_l2"))  # drops unknown metadata
    run = sync(catalog, GROUPS_ON)  # type: ignore[arg-type]
    assert run.records("list_vip_whales_l2") == []
    assert fake.requests[-1].url.split("?")[0] == "https://a.klaviyo.com/api/lists/L2/profiles"


def test_a_list_deleted_since_discovery_is_a_warning_not_a_failed_sync(fake, caplog):
    seed(fake)
    catalog = select(discover(GROUPS_ON), "list_profiles", "profiles")
    fake.fail_next(
        404,
        body={"errors": [{"id": "1", "code": "not_found", "title": "Not found", "detail": "List not found."}]},
        path="/api/lists/L3/profiles",
    )
    with caplog.at_level(logging.WARNING):
        run = sync(catalog, GROUPS_ON)
    assert run.records("list_profiles") == []
    assert [r["id"] for r in run.records("profiles")] == ["p1"]  # the run went on
    assert "Klaviyo list profiles (id L3) no longer exists" in caplog.text


def test_the_group_setting_off_skips_group_streams_of_a_catalog_with_a_warning(fake, caplog):
    seed(fake)
    catalog = select(discover(GROUPS_ON), "list_profiles")
    before = len(fake.requests)
    with caplog.at_level(logging.WARNING):
        run = sync(catalog)
    assert not [m for m in run.messages if m.get("stream") == "list_profiles"]
    assert len(fake.requests) == before
    assert "list_profiles is selected but list_and_segment_streams is off" in caplog.text


@pytest.mark.parametrize(
    ("stream", "group_path"), [("list_members", "/api/lists"), ("segment_members", "/api/segments")]
)
def test_members_streams_do_not_fail_on_an_account_without_groups(fake, stream, group_path):
    catalog = select(discover(), stream)
    before = len(fake.requests)
    run = sync(catalog)
    assert run.records(stream) == []
    assert [r.url.split("?")[0] for r in fake.requests[before:]] == [f"https://a.klaviyo.com{group_path}"]


# -- against the loopback sandbox --------------------------------------------------------------------

SANDBOX_NAMES = {  # Klaviyo name -> stream name (None: the name clashes, so it ends with the id)
    "Newsletter": None,
    "newsletter": None,
    "Duplicate Name": None,
    "VIP / Whales 🐋": "list_vip_whales",
    "Summer Sale ☀️ 2026": "list_summer_sale_2026",
    "Empty List": "list_empty_list",
    "  padded name  ": "list_padded_name",
    "O'Reilly's \"quoted\" list": "list_o_reilly_s_quoted_list",
    "a,b (comma) list": "list_a_b_comma_list",
    "Ünïcödé Ŀïşţ": "list_unicode_list",
    "back\\slash list": "list_back_slash_list",
    "Engaged (90 days)": None,
    "engaged (90 days)": None,
    "Big spenders 💰": "segment_big_spenders",
    "Churn risk / win-back": "segment_churn_risk_win_back",
    "All profiles": "segment_all_profiles",
    "Empty segment": "segment_empty_segment",
}


@pytest.fixture(scope="module")
def klaviyo_sandbox() -> t.Iterator[t.Any]:
    from klaviyo_sandbox import Sandbox, SandboxConfig

    with Sandbox(SandboxConfig(seed=1, scale=0.05, rate_limit_scale=0.0)) as box:
        yield box


def test_cli_discover_names_the_sandboxs_awkward_lists_and_segments_stably(tmp_path, klaviyo_sandbox):
    config = {"api_key": klaviyo_sandbox.api_key, "base_url": klaviyo_sandbox.base_url, **GROUPS_ON}
    result = run_cli("tap-klaviyo", "--discover", config=config, tmp_path=tmp_path)
    assert result.code == 0, result.stderr[-2000:]
    in_process = TapKlaviyo(config=config, setup_mapper=False).catalog_json_text
    assert result.stdout.strip() == in_process.strip()  # stable across runs and processes

    groups = {}
    for entry in json.loads(result.stdout)["streams"]:
        root = next(m["metadata"] for m in entry["metadata"] if m["breadcrumb"] == [])
        if "klaviyo-group-id" in root:
            groups[entry["tap_stream_id"]] = (
                root["klaviyo-group-type"],
                root["klaviyo-group-id"],
                root["klaviyo-group-name"],
            )
    assert len(groups) == 12 + 6
    for stream_name, (kind, group_id, name) in groups.items():
        expected = SANDBOX_NAMES[name] or f"{kind}_{slug(name)}_{group_id.lower()}"
        assert stream_name == expected


def test_sandbox_list_stream_emits_exactly_the_lists_members(klaviyo_sandbox):
    config = {"api_key": klaviyo_sandbox.api_key, "base_url": klaviyo_sandbox.base_url, **GROUPS_ON}
    catalog = discover(config)
    entry = next(s for s in catalog["streams"] if s["tap_stream_id"] == "list_vip_whales")
    list_id = next(m["metadata"] for m in entry["metadata"] if m["breadcrumb"] == [])["klaviyo-group-id"]

    run = sync(select(catalog, "list_vip_whales"), config)  # records validated against SCHEMA

    records = run.records("list_vip_whales")
    assert sorted(r["id"] for r in records) == sorted(klaviyo_sandbox.store.member_ids(list_id))
    assert records and all(r["joined_group_at"] and "properties_unmapped" in r for r in records)


def test_cli_sync_of_one_list_stream_from_a_catalog_of_all_of_them(tmp_path, klaviyo_sandbox):
    """The path Meltano takes: ``--catalog`` holding every list and segment, one selected."""
    config = {"api_key": klaviyo_sandbox.api_key, "base_url": klaviyo_sandbox.base_url, **GROUPS_ON}
    catalog_path = tmp_path / "catalog.json"
    catalog_path.write_text(json.dumps(select(discover(config), "list_vip_whales")))

    result = run_cli("tap-klaviyo", "--catalog", str(catalog_path), config=config, tmp_path=tmp_path)

    assert result.code == 0, result.stderr[-2000:]
    messages = [json.loads(line) for line in result.stdout.splitlines()]
    assert {m["stream"] for m in messages if m["type"] in ("SCHEMA", "RECORD")} == {"list_vip_whales"}
    entry = next(s for s in json.loads(catalog_path.read_text())["streams"] if s["tap_stream_id"] == "list_vip_whales")
    list_id = next(m["metadata"] for m in entry["metadata"] if m["breadcrumb"] == [])["klaviyo-group-id"]
    records = [m["record"]["id"] for m in messages if m["type"] == "RECORD"]
    assert sorted(records) == sorted(klaviyo_sandbox.store.member_ids(list_id))
    assert "Skipping deselected stream 'segment_" not in result.stderr  # never built, so never skipped


def test_group_streams_ask_for_predictive_analytics_only_when_profiles_do(tmp_path, klaviyo_sandbox):
    """Through the CLI: list_<name> carries predictive_analytics exactly when the setting is on."""
    base = {"api_key": klaviyo_sandbox.api_key, "base_url": klaviyo_sandbox.base_url, **GROUPS_ON}
    catalog = select(discover(base), "list_vip_whales")
    (tmp_path / "catalog.json").write_text(json.dumps(catalog))
    seen = {}
    for setting in (False, True):
        config = {**base, "include_predictive_analytics": setting}
        result = run_cli("tap-klaviyo", "--catalog", str(tmp_path / "catalog.json"), config=config, tmp_path=tmp_path)
        assert result.code == 0, result.stderr[-2000:]
        records = [m["record"] for m in result.messages() if m["type"] == "RECORD"]
        assert records and {m["stream"] for m in result.messages() if m["type"] == "RECORD"} == {"list_vip_whales"}
        seen[setting] = records
    assert all(r.get("predictive_analytics") is None for r in seen[False])
    assert all(isinstance(r["predictive_analytics"], dict) for r in seen[True])
    assert sorted(r["id"] for r in seen[True]) == sorted(r["id"] for r in seen[False])


def test_a_big_group_is_read_in_parallel_slices_giving_the_records_of_one_chain(mocker):
    fake = FakeKlaviyo(mocker)
    seed(fake)
    fake.collections["/api/lists/L1/profiles"] = []
    fake.add(
        "/api/lists/L1/profiles",
        *(member_profile(f"m{n:04d}", ts(1 + n // 100, n % 24)) for n in range(1500)),
    )
    catalog = select(discover(GROUPS_ON), "list_vip_whales_l1")
    one = sync(catalog, {**GROUPS_ON, "max_concurrency": 1})
    requests_before = len(fake.requests)
    eight = sync(catalog, {**GROUPS_ON, "max_concurrency": 8})

    ids = [r["id"] for r in one.records("list_vip_whales_l1")]
    assert [r["id"] for r in eight.records("list_vip_whales_l1")] == ids
    assert len(one.records("list_vip_whales_l1")) == 1500
    later = range(requests_before, len(fake.requests))
    sliced = [fake.params(i) for i in later if "/lists/L1/" in fake.requests[i].url]
    assert all(p.get("sort") == "joined_group_at" for p in sliced if "page[cursor]" not in p)
    assert any("less-than(joined_group_at" in p.get("filter", "") for p in sliced)  # cut into slices
