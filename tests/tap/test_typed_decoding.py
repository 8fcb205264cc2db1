"""Custom fields typed while decoding (tap_klaviyo.typed_decoding) make the records the Conformer makes."""

from __future__ import annotations

import copy
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import msgspec
import pytest

from klaviyo_sandbox import gen_events, realistic
from klaviyo_sandbox.util import Rng
from tap_klaviyo.custom_fields import conform_custom_fields
from tap_klaviyo.inference import Conformer, SchemaInferrer
from tap_klaviyo.stream import flatten
from tap_klaviyo.typed_decoding import TypedRecords, Unsupported, plain_record

METRICS = list(realistic.FAMILIES)
COLUMNS = ["datetime", "timestamp", "uuid", "event_properties", "metric_id", "profile_id"]


def resource(n: int, properties: object, **attributes: object) -> dict:
    attrs = {"datetime": f"2026-01-01T00:00:{n % 60:02d}+00:00", "timestamp": n, "uuid": f"u{n}"}
    return {
        "type": "event",
        "id": f"e{n}",
        "attributes": {**attrs, "event_properties": properties, **attributes},
        "relationships": {"metric": {"data": {"type": "metric", "id": "m1"}, "links": {}}, "profile": {"data": None}},
        "links": {"self": "x"},
    }


def slow_record(raw: msgspec.Raw, conformer: Conformer) -> dict:
    record = flatten(msgspec.json.decode(raw))
    return conform_custom_fields(record, "event_properties", conformer)


def both(resources: list[dict], schema: dict) -> tuple[list[dict], list[dict], TypedRecords]:
    """(typed records, the Conformer's records, the maker) of ``resources``."""
    conformer = Conformer(schema)
    typed = TypedRecords(COLUMNS, "event_properties", schema)
    raws = [msgspec.Raw(msgspec.json.encode(item)) for item in resources]
    made = [typed.record(raw, lambda raw: slow_record(raw, conformer)) for raw in raws]
    # for the writer: attributes left raw, custom fields as msgspec structs: the same values once plain
    kept = TypedRecords(COLUMNS, "event_properties", schema, for_writer=True, decoded={"datetime"})
    as_structs = [kept.record(raw, lambda raw: slow_record(raw, conformer)) for raw in raws]
    assert [plain_record(record) for record in as_structs] == made
    assert [msgspec.json.decode(msgspec.json.encode(record)) for record in as_structs] == made
    return made, [slow_record(raw, conformer) for raw in raws], typed


def inferred(properties: list[dict]) -> dict:
    inferrer = SchemaInferrer()
    for value in properties:
        inferrer.observe(value)
    return inferrer.schema()


def realistic_events(count: int, seed: int = 3) -> list[dict]:
    rng = Rng(seed)
    return [resource(n, gen_events.properties(rng, METRICS[n % len(METRICS)], n, "realistic")) for n in range(count)]


def test_realistic_events_are_the_conformers_records_and_the_decoder_learns_their_loose_text_fields():
    events = realistic_events(600)
    schema = inferred([event["attributes"]["event_properties"] for event in events[:300]])
    made, expected, typed = both(events, schema)
    assert made == expected
    kept = TypedRecords(COLUMNS, "event_properties", schema, for_writer=True, decoded={"datetime"})
    record = kept.record(msgspec.Raw(msgspec.json.encode(events[0])), lambda raw: {})
    assert isinstance(record["event_properties"], msgspec.Struct)  # what the writer encodes fastest
    assert type(record["uuid"]) is msgspec.Raw and type(record["datetime"]) is str  # the stream reads datetime
    loosened = {".".join(path[2:]) for path in typed.loosened}
    # numbers (or arrays) sent in fields discovery typed as text: each learnt once, then typed in C
    assert {"Items.[].ProductID", "ShippingRate", "Tags"} <= loosened
    assert len(typed.loosened) == len(set(typed.loosened))
    # the slow path is the exception (this fails loudly if msgspec's error messages change form)
    assert typed.slow <= 30, typed.slow


def test_realistic_profile_properties_are_the_conformers():
    rng = Rng(5)
    props = [realistic.profile_properties(rng, {"plan": rng.choice(["free", "pro"])}) for _ in range(300)]
    schema = inferred(props[:150])
    made, expected, _ = both([resource(n, value) for n, value in enumerate(props)], schema)
    assert made == expected


SCHEMA = {
    "type": ["object", "null"],
    "properties": {
        "count": {"type": ["integer", "null"]},
        "price": {"type": ["number", "null"]},
        "ok": {"type": ["boolean", "null"]},
        "day": {"type": ["string", "null"], "format": "date"},
        "at": {"type": ["string", "null"], "format": "date-time"},
        "name": {"type": ["string", "null"]},
        "strict": {"type": "string"},
        "tags": {"type": ["array", "null"], "items": {"type": ["string", "null"]}},
        "a.b": {"type": ["string", "null"]},
        "nested": {
            "type": ["object", "null"],
            "properties": {"x": {"type": ["integer", "null"]}, "label": {"type": ["string", "null"]}},
        },
        "rows": {
            "type": ["array", "null"],
            "items": {"type": ["object", "null"], "properties": {"sku": {"type": ["string", "null"]}}},
        },
        "anything": {},
    },
}

ODD_VALUES = [
    {"count": 3, "price": 2, "ok": True, "day": "2024-02-29", "at": "2026-01-31T10:00:00Z", "name": "x"},
    {"count": 3.0, "price": 2.5, "ok": 1, "day": "2023-02-29", "at": "2026-04-31T10:00:00Z"},
    {"count": True, "day": "0000-01-01", "at": "2026-01-01T10:00:00", "name": 12, "strict": None},
    {"day": "2021-04-30", "at": "2026-01-01t10:00:00.5+05:30", "name": {"k": [1, "é"]}, "strict": 5},
    {"tags": ["a", 1, None, {"b": 2}], "a.b": 7, "nested": {"x": 1, "label": 2.5}, "rows": [{"sku": 9}]},
    {"tags": "one", "nested": {"x": "1"}, "rows": [{"sku": "a"}, {"other": 1}], "anything": [1, {"z": None}]},
    {"unknown": 1, "name": "fine"},
    {"nested": {"x": 1, "new": 2}, "name": False},
    {"rows": [None, {"sku": None}], "tags": [], "price": 1e300, "count": 12345678901234567890123},
    {"day": "٢٠٢١-٠١-٠١", "at": "2026-01-01T24:00:00Z", "name": "\u00e9\U0001f600"},
    # one oddity each, in records that otherwise fit
    *({"day": day} for day in ("0000-01-01", "2023-02-29", "2024-02-29", "2021-04-31", "2021-4-01", "2021-01-01 ")),
    *({"at": at} for at in ("0000-01-01T00:00:00Z", "2023-02-29T00:00:00Z", "2026-01-01T00:00:60+23:59")),
    {"count": 3.0},
    {"count": True},
    {"ok": 0},
    {"price": True},
    {"strict": None},
    {"name": True},
    {"tags": [1]},
]


@pytest.mark.parametrize("value", [*ODD_VALUES, None, "not an object", [1, 2], 5, {}])
def test_odd_values_and_misfits_give_the_conformers_record(value):
    made, expected, _ = both([resource(1, copy.deepcopy(value))], SCHEMA)
    assert made == expected


def test_all_odd_values_in_one_stream_as_well():
    resources = [resource(n, copy.deepcopy(value)) for n, value in enumerate(ODD_VALUES * 3)]
    made, expected, typed = both(resources, SCHEMA)
    assert made == expected
    assert (("attributes", "event_properties", "name") in typed.loosened) and typed.slow < len(resources)


def test_a_resource_without_the_field_gets_no_unmapped_column_and_an_unknown_attribute_takes_the_slow_path():
    missing = resource(1, None)
    del missing["attributes"]["event_properties"]
    extra = resource(2, {"name": "x"}, brand_new=1)
    made, expected, typed = both([missing, extra], SCHEMA)
    assert made == expected
    assert "event_properties_unmapped" not in made[0] and made[1]["brand_new"] == 1  # left to post_process
    assert typed.slow == 1


def test_defaults_fill_columns_klaviyo_leaves_out():
    typed = TypedRecords(["joined_group_at", "properties"], "properties", SCHEMA, {"joined_group_at": None})
    raw = msgspec.Raw(json.dumps({"id": "p1", "attributes": {"properties": {"name": "x"}}}).encode())
    assert typed.record(raw, lambda raw: {}) == {
        "id": "p1",
        "joined_group_at": None,
        "properties": {"name": "x"},
        "properties_unmapped": None,
    }


def test_a_schema_with_several_types_is_left_to_the_conformer():
    schema = {"type": "object", "properties": {"x": {"type": ["integer", "string", "null"]}}}
    with pytest.raises(Unsupported):
        TypedRecords(COLUMNS, "event_properties", schema)


def test_threads_learning_at_once_make_the_same_records():
    events = realistic_events(400, seed=9)
    schema = inferred([event["attributes"]["event_properties"] for event in events[:100]])
    conformer = Conformer(schema)
    typed = TypedRecords(COLUMNS, "event_properties", schema)
    raws = [msgspec.Raw(msgspec.json.encode(item)) for item in events]
    start = threading.Barrier(4)

    def make(part: int) -> list[dict]:
        start.wait()
        return [typed.record(raw, lambda raw: slow_record(raw, conformer)) for raw in raws[part::4]]

    with ThreadPoolExecutor(4) as pool:
        parts = list(pool.map(make, range(4)))
    made = [record for part in parts for record in part]
    assert made == [slow_record(raw, conformer) for part in range(4) for raw in raws[part::4]]
