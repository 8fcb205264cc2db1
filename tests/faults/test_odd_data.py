"""Odd but valid data from Klaviyo is synced intact, byte for byte.

The sandbox already serves unicode and emoji names, nulls where values are usual
(all-null locations, missing names), mixed-type custom fields and future timestamps (an
event a year after "now", scheduled campaigns). A proxy in front of it adds what it
cannot serve on demand: very long strings, control characters, combining marks, RTL
text, astral-plane characters, empty strings, deep nulls, future dates in ordinary
fields, and empty pages (first, middle and after the last) in paginated collections.
Every value the tap emits is compared with what the proxy served, as UTF-8 bytes.
"""

from __future__ import annotations

import datetime as dt
import json
import zlib

import pytest

from tap_klaviyo.stream import flatten
from tests.faults.harness import FIGURES, Output, parse_time, run_tap, sandbox, tap_config
from tests.faults.proxy import TamperProxy

pytestmark = pytest.mark.slow  # a module fixture runs for seconds (pyproject: markers)

SEED = 61
ODD = {
    "emoji": "👩‍👩‍👧‍👦 🏳️‍🌈 🇯🇵 👍🏽 ✔︎",
    "rtl": "שלום עולם مرحبا بالعالم",
    "combining": "e\u0301 a\u0308 Z\u0351\u0360",
    "astral": "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𓀀 𠮷野家",
    "control": "tab\tnewline\nreturn\rnul\u0000bell\u0007 bom\ufeff zwj\u200d end",
    "quotes": "She said \"hi\" \\ 'back' </script> ${x} %s {{y}}",
    "long": "Grüße 🚀 東京 " * 4_000,  # 48,000 characters, 80,000 UTF-8 bytes: past 64 KB text columns
    "empty": "",
    "spaces": "   ",
    "half emoji": "cut \ud83d here",  # a lone surrogate escape: JSON allows it, UTF-8 cannot hold it
}
FUTURE = "2199-12-31T23:59:59+00:00"
TEXT_ATTRIBUTES = ("first_name", "last_name", "organization", "title", "name", "content", "subject", "author")
EMPTY_PAGES = {"/api/events", "/api/profiles", "/api/flows", "/api/lists", "/api/campaigns"}


def _chosen(resource_id: str) -> bool:
    return zlib.crc32(resource_id.encode()) % 3 == 0


def _odd_custom_fields() -> dict:
    return {
        "odd 🎨 key": ODD["emoji"],
        "odd_long": ODD["long"],
        "odd_control": ODD["control"],
        "odd_astral": ODD["astral"],
        "odd_nested": {"a": [None, {"b": None}], "c": [], "d": {}, "e": ODD["rtl"]},
        "odd_null": None,
        "odd_future": FUTURE,
        "odd_half_emoji": ODD["half emoji"],
    }


def tamper(path: str, document: dict) -> None:
    """Give a third of the resources odd values (the same ones every time they are served)."""
    for resource in document.get("data") or []:
        if not isinstance(resource, dict) or not _chosen(str(resource.get("id"))):
            continue
        attributes = resource.get("attributes") or {}
        start = zlib.crc32(str(resource["id"]).encode()) % len(ODD)  # spread every odd value around
        values = iter([*list(ODD.values())[start:], *list(ODD.values())[:start]])
        for key in TEXT_ATTRIBUTES:
            if isinstance(attributes.get(key), str) or (key in attributes and attributes[key] is None):
                attributes[key] = next(values, ODD["long"])
        if resource.get("type") == "profile" and path == "/api/profiles":
            if "last_event_date" in attributes:  # not in the sparse fieldsets discovery asks for
                attributes["last_event_date"] = FUTURE
                attributes["image"] = None
            if isinstance(attributes.get("location"), dict):
                attributes["location"] = dict.fromkeys(attributes["location"])  # every field null
            attributes["properties"] = {**(attributes.get("properties") or {}), **_odd_custom_fields()}
        if resource.get("type") == "event" and isinstance(attributes.get("event_properties"), dict):
            attributes["event_properties"] = {**attributes["event_properties"], **_odd_custom_fields()}


def _bytes(value) -> bytes:
    """UTF-8 bytes of the JSON text (a lone surrogate passes as its three-byte form)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True).encode("utf-8", "surrogatepass")


def _sync(workdir, **config_extra):
    with sandbox(SEED) as box, TamperProxy(box.base_url, tamper=tamper, empty_pages=EMPTY_PAGES) as proxy:
        config = {**tap_config(box), "base_url": proxy.base_url, **config_extra}
        run = run_tap(config, workdir)
        served: dict[str, dict] = {}  # "<collection path>:<id>" -> the resource as served
        for path, document in proxy.served:  # sparse (discovery) and full answers, merged
            for resource in document.get("data") or []:
                if isinstance(resource, dict) and "id" in resource and "attributes" in resource:
                    entry = served.setdefault(f"{path}:{resource['id']}", {**resource, "attributes": {}})
                    entry["attributes"].update(resource["attributes"])
        return run, served, proxy.empty_served


@pytest.fixture(scope="module")
def synced(faults_workdir):
    raw = _sync(faults_workdir / "odd-raw", discover_custom_fields=False)
    typed = _sync(faults_workdir / "odd-typed")
    return {"raw": raw, "typed": typed}


STREAMS = ("campaigns", "events", "flows", "lists", "metrics", "profiles", "reviews", "segments")


def _compare(run, served, *, custom_fields_raw: bool) -> tuple[int, int]:
    """Every value emitted equals the value served (as UTF-8 bytes); returns (values, odd values) checked."""
    output = Output(run.messages)
    checked = odd = 0
    odd_values = {_bytes(v) for v in [*ODD.values(), FUTURE]}
    for stream in STREAMS:
        records = output.records.get(stream, [])
        assert records, f"no {stream} emitted"
        for record in records:
            resource = served[f"/api/{stream}:{record['id']}"]
            expected = flatten(resource)
            for key, value in expected.items():
                if key in ("properties", "event_properties") and not custom_fields_raw:
                    continue  # typed by discovery: compared field by field below
                assert key in record, f"{stream} {record['id']} lost {key}"
                assert _bytes(record[key]) == _bytes(value), f"{stream} {record['id']} changed {key}"
                checked += 1
                odd += _bytes(value) in odd_values
    return checked, odd


def test_the_proxy_served_empty_pages_and_odd_values(synced):
    for run, served, empty in synced.values():
        assert run.code == 0, run.stderr[-3000:]
        assert "Traceback" not in run.stderr
        assert empty >= 2 * len(EMPTY_PAGES)
        assert sum(_chosen(key.rsplit(":", 1)[1]) for key in served) > 50


def test_every_value_is_emitted_byte_for_byte_as_klaviyo_sent_it(synced):
    run, served, _ = synced["raw"]
    checked, odd = _compare(run, served, custom_fields_raw=True)
    FIGURES.add("odd_values_checked", checked)
    assert odd > 100
    records = [r for stream in STREAMS for r in Output(run.messages).records[stream]]
    assert sum(ODD["half emoji"] in r.values() for r in records) >= 3  # msgspec refuses these; not lost
    assert sum(ODD["long"] in r.values() for r in records) >= 3


def test_with_typed_custom_fields_every_odd_value_still_arrives_intact(synced):
    run, served, _ = synced["typed"]
    _compare(run, served, custom_fields_raw=False)
    output = Output(run.messages)
    found = 0
    for stream, field in (("profiles", "properties"), ("events", "event_properties")):
        for record in output.records[stream]:
            if not _chosen(record["id"]):
                continue
            typed, unmapped = record.get(field) or {}, record.get(f"{field}_unmapped") or {}
            for key, value in _odd_custom_fields().items():
                if value is None:
                    continue
                got = typed.get(key) if typed.get(key) is not None else unmapped.get(key)
                assert _bytes(got) == _bytes(value), (stream, record["id"], key)
                found += 1
    assert found > 100


def test_empty_pages_lose_no_records(synced):
    raw_output = Output(synced["raw"][0].messages)
    typed_output = Output(synced["typed"][0].messages)
    with sandbox(SEED) as box:
        expected_counts = {name: box.app.state()["counts"][name] for name in ("events", "profiles", "flows", "lists")}
    for output in (raw_output, typed_output):
        counts = {stream: len(output.records.get(stream, [])) for stream in expected_counts}
        assert counts == expected_counts


def test_future_timestamps_are_kept(synced):
    output = Output(synced["raw"][0].messages)
    now = dt.datetime.now(dt.timezone.utc)
    future_events = [r for r in output.records["events"] if parse_time(r["datetime"]) > now]
    assert future_events  # the sandbox dates its last event a year after "now": the tail pass reads it
    assert any(r.get("last_event_date") == FUTURE for r in output.records["profiles"])
