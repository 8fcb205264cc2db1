"""Tests for tap_klaviyo.inference: schema inference and record conforming."""

from __future__ import annotations

import copy
import itertools
import json
import random
from decimal import Decimal

import pytest
from jsonschema import Draft7Validator

from tap_klaviyo.inference import (
    MAX_DEPTH,
    MAX_FIELDS_PER_OBJECT,
    Conformer,
    SchemaInferrer,
    conform,
    infer,
)

NULLABLE_STRING = {"type": ["string", "null"]}


def field(records, name):
    return infer(records)["properties"][name]


def types_of(records, name="f"):
    return field(records, name)["type"]


# --------------------------------------------------------------------------
# Inference: scalar kinds and widening
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, 2], ["integer", "null"]),
        ([1.5], ["number", "null"]),
        ([True, False], ["boolean", "null"]),
        (["x"], ["string", "null"]),
        ([{"a": 1}], ["object", "null"]),
        ([[1]], ["array", "null"]),
    ],
)
def test_each_basic_kind_is_inferred_as_a_nullable_type(values, expected):
    assert types_of([{"f": v} for v in values]) == expected


def test_the_result_is_a_nullable_object_schema_with_sorted_properties():
    schema = infer([{"b": 1, "a": 2}, {"c": 3}])
    assert schema["type"] == ["object", "null"]
    assert list(schema["properties"]) == ["a", "b", "c"]


def test_mixed_types_in_one_field_widen_to_string():
    assert types_of([{"f": 1}, {"f": "one"}, {"f": True}]) == ["string", "null"]


def test_integer_and_number_widen_to_number():
    assert types_of([{"f": 1}, {"f": 2.5}]) == ["number", "null"]
    assert types_of([{"f": 2.5}, {"f": 1}]) == ["number", "null"]


def test_an_integral_float_is_a_number_not_an_integer():
    assert types_of([{"f": 3.0}]) == ["number", "null"]


@pytest.mark.parametrize("other", [1, 2.5, True, "2024-05-01", "2024-05-01T10:00:00Z", {"a": 1}, [1]])
def test_anything_joined_with_string_is_string(other):
    assert field([{"f": other}, {"f": "text"}], "f") == NULLABLE_STRING
    assert field([{"f": "text"}, {"f": other}], "f") == NULLABLE_STRING


def test_booleans_are_not_integers_and_widen_with_numbers_to_string():
    assert types_of([{"f": True}]) == ["boolean", "null"]
    assert types_of([{"f": True}, {"f": 1}]) == ["string", "null"]
    assert types_of([{"f": 2.5}, {"f": False}]) == ["string", "null"]


def test_decimals_are_typed_by_their_fractional_digits():
    assert types_of([{"f": Decimal("3")}]) == ["integer", "null"]
    assert types_of([{"f": Decimal("3.0")}]) == ["number", "null"]
    assert types_of([{"f": Decimal("3")}, {"f": Decimal("2.5")}]) == ["number", "null"]


def test_non_finite_numbers_are_strings():
    assert types_of([{"f": float("nan")}]) == ["string", "null"]
    assert types_of([{"f": Decimal("Infinity")}]) == ["string", "null"]


@pytest.mark.parametrize(
    "value",
    [
        "2024-05-01T10:00:00Z",
        "2024-05-01T10:00:00.123+02:00",
        "2024-05-01t10:00:00-05:30",
    ],
)
def test_rfc3339_timestamps_are_date_times(value):
    assert field([{"f": value}], "f") == {"type": ["string", "null"], "format": "date-time"}


@pytest.mark.parametrize(
    "value",
    ["2024-05-01 10:00:00", "2024-05-01T10:00", "2024-05-01T10:00:00", "2024-05-01T10:00:00+0200"],
)
def test_timestamps_a_strict_loader_would_refuse_stay_strings(value):
    assert field([{"f": value}], "f") == NULLABLE_STRING


def test_valid_plain_dates_are_dates():
    assert field([{"f": "2024-02-29"}], "f") == {"type": ["string", "null"], "format": "date"}


@pytest.mark.parametrize(
    "value",
    ["2023-02-29", "2024-13-01", "2024-5-1", "2024-05-01T25:00:00Z", "2024-05-01Tnoon", "20240501", "٢٠٢٤-٠٥-٠١"],
)
def test_date_lookalikes_that_are_not_valid_are_plain_strings(value):
    assert field([{"f": value}], "f") == NULLABLE_STRING


def test_date_and_date_time_together_widen_to_string():
    assert field([{"f": "2024-05-01"}, {"f": "2024-05-01T10:00:00Z"}], "f") == NULLABLE_STRING


def test_object_or_array_mixed_with_a_scalar_or_each_other_widens_to_string():
    assert field([{"f": {"a": 1}}, {"f": 1}], "f") == NULLABLE_STRING
    assert field([{"f": [1]}, {"f": 1}], "f") == NULLABLE_STRING
    assert field([{"f": {"a": 1}}, {"f": [1]}], "f") == NULLABLE_STRING


# --------------------------------------------------------------------------
# Inference: nulls, nesting, arrays
# --------------------------------------------------------------------------


def test_nulls_do_not_widen_a_type():
    assert types_of([{"f": None}, {"f": 1}, {"f": None}]) == ["integer", "null"]


def test_a_field_seen_only_as_null_appears_as_nullable_string():
    assert field([{"f": None}, {"f": None}], "f") == NULLABLE_STRING


def test_none_objects_count_as_records_without_fields():
    inferrer = SchemaInferrer()
    inferrer.observe(None)
    inferrer.observe({})
    assert inferrer.records_seen == 2
    assert inferrer.schema() == {"type": ["object", "null"], "properties": {}}


def test_observing_a_non_mapping_is_rejected():
    with pytest.raises(TypeError):
        SchemaInferrer().observe([1, 2])  # type: ignore[arg-type]


def test_nested_objects_with_sparse_keys_merge_all_keys():
    schema = field([{"p": {"a": 1}}, {"p": {"b": "x"}}, {"p": {"a": 2.5, "c": {"d": True}}}], "p")
    assert schema == {
        "type": ["object", "null"],
        "properties": {
            "a": {"type": ["number", "null"]},
            "b": NULLABLE_STRING,
            "c": {"type": ["object", "null"], "properties": {"d": {"type": ["boolean", "null"]}}},
        },
    }


def test_array_items_are_the_join_of_all_elements():
    assert field([{"f": [1, 2]}, {"f": [2.5]}], "f")["items"] == {"type": ["number", "null"]}
    assert field([{"f": [1, "a", None]}], "f")["items"] == NULLABLE_STRING


def test_arrays_of_objects_merge_their_keys():
    items = field([{"f": [{"a": 1}, {"b": "2024-05-01"}]}], "f")["items"]
    assert items["type"] == ["object", "null"]
    assert items["properties"] == {
        "a": {"type": ["integer", "null"]},
        "b": {"type": ["string", "null"], "format": "date"},
    }


def test_empty_arrays_give_string_items_and_do_not_affect_later_items():
    assert field([{"f": []}], "f") == {"type": ["array", "null"], "items": NULLABLE_STRING}
    assert field([{"f": []}, {"f": [1]}], "f")["items"] == {"type": ["integer", "null"]}


def test_arrays_of_only_nulls_give_string_items():
    assert field([{"f": [None]}], "f")["items"] == NULLABLE_STRING


# --------------------------------------------------------------------------
# Inference: determinism and limits
# --------------------------------------------------------------------------

MIXED_RECORDS = [
    {"n": 1, "d": "2024-05-01", "o": {"a": 1}, "l": [1], "s": None},
    {"n": 2.5, "d": "2024-05-01T10:00:00Z", "o": {"b": [True]}, "l": []},
    {"n": True, "o": {"a": 2.5, "b": [None]}, "l": [{"x": 1}]},
    {"o": 7, "l": ["x"], "z": [[1], [2.5]]},
    None,
]


def test_record_order_never_changes_the_schema():
    expected = json.dumps(infer(MIXED_RECORDS))
    for perm in itertools.permutations(MIXED_RECORDS):
        assert json.dumps(infer(perm)) == expected


def test_schema_is_independent_of_key_order_within_records():
    a = infer([{"x": 1, "y": {"p": 1, "q": 2}}])
    b = infer([{"y": {"q": 2, "p": 1}, "x": 1}])
    assert json.dumps(a) == json.dumps(b)


def test_the_default_limits_are_documented_constants():
    assert MAX_DEPTH == 5
    assert MAX_FIELDS_PER_OBJECT == 1000


def nested(depth, leaf):
    value = leaf
    for _ in range(depth):
        value = {"k": value}
    return value


def schema_depth(schema):
    if "properties" in schema:
        return 1 + max((schema_depth(s) for s in schema["properties"].values()), default=0)
    if "items" in schema:
        return 1 + schema_depth(schema["items"])
    return 0


def test_nesting_deeper_than_the_cap_becomes_a_json_string_field():
    schema = infer([nested(12, 1)])
    assert schema_depth(schema) == MAX_DEPTH
    node = schema
    for _ in range(MAX_DEPTH):
        node = node["properties"]["k"]
    assert node == NULLABLE_STRING


def test_arrays_count_towards_the_depth_cap():
    schema = infer([{"a": [[[[[[1]]]]]]}])
    assert schema_depth(schema) == MAX_DEPTH


def test_values_within_the_depth_cap_keep_their_types():
    schema = infer([nested(MAX_DEPTH, 1)])
    node = schema
    for _ in range(MAX_DEPTH):
        node = node["properties"]["k"]
    assert node == {"type": ["integer", "null"]}


def test_too_many_fields_keeps_the_smallest_names_whatever_the_order():
    names = [f"f{i:02d}" for i in range(10)]
    rng = random.Random(7)
    schemas = set()
    for _ in range(20):
        inferrer = SchemaInferrer(max_fields=4)
        shuffled = names[:]
        rng.shuffle(shuffled)
        for name in shuffled:
            inferrer.observe({name: 1})
            inferrer.observe({name: 2.5} if name == "f01" else {})
        schemas.add(json.dumps(inferrer.schema()))
    assert len(schemas) == 1
    props = json.loads(schemas.pop())["properties"]
    assert list(props) == ["f00", "f01", "f02", "f03"]
    assert props["f01"] == {"type": ["number", "null"]}


def test_the_field_cap_applies_at_the_default_size_and_in_nested_objects():
    wide = {f"k{i:05d}": i for i in range(MAX_FIELDS_PER_OBJECT + 50)}
    schema = infer([wide, {"nested": wide}])
    assert len(schema["properties"]) == MAX_FIELDS_PER_OBJECT
    assert len(schema["properties"]["k00000"]) == 1
    typed, unmapped = conform(wide, schema)
    assert len(typed) + len(unmapped) == len(wide)


# --------------------------------------------------------------------------
# Conform
# --------------------------------------------------------------------------

SCHEMA = infer(
    [
        {
            "i": 1,
            "n": 2.5,
            "b": True,
            "s": "x",
            "d": "2024-05-01",
            "dt": "2024-05-01T10:00:00Z",
            "prefs": {"colour": "red", "size": 3},
            "tags": ["a"],
            "nums": [1],
            "rows": [{"sku": "A", "qty": 1}],
        }
    ]
)


def test_values_that_fit_pass_through_unchanged():
    obj = {
        "i": 5,
        "n": 1.25,
        "b": False,
        "s": "y",
        "d": "2023-01-31",
        "dt": "2023-01-31T08:00:00Z",
        "prefs": {"colour": "blue"},
        "tags": ["b", None],
    }
    assert conform(obj, SCHEMA) == (obj, {})


def test_nulls_fit_every_field():
    obj = dict.fromkeys(SCHEMA["properties"])
    assert conform(obj, SCHEMA) == (obj, {})


def test_a_none_object_conforms_to_none():
    assert conform(None, SCHEMA) == (None, {})


def test_integers_are_coerced_into_number_fields():
    assert conform({"n": 3}, SCHEMA) == ({"n": 3}, {})
    assert conform({"nums": [1, 2]}, infer([{"nums": [1.5]}])) == ({"nums": [1, 2]}, {})


def test_decimals_fit_number_fields_and_integral_ones_integer_fields_as_int():
    typed, unmapped = conform({"n": Decimal("1.10"), "i": Decimal("7")}, SCHEMA)
    assert typed == {"n": Decimal("1.10"), "i": 7} and type(typed["i"]) is int
    assert unmapped == {}


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (False, "false"),
        (42, "42"),
        (1.5, "1.5"),
        (Decimal("1.50"), "1.50"),
        ("2024-05-01", "2024-05-01"),
        ({"a": [1, None]}, '{"a": [1, null]}'),
        ([1, "x"], '[1, "x"]'),
        ({"p": Decimal("0.1"), "q": Decimal("2")}, '{"p": 0.1, "q": 2}'),
    ],
)
def test_any_value_is_coerced_into_a_string_field_by_its_string_form(value, text):
    assert conform({"s": value}, SCHEMA) == ({"s": text}, {})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("i", "abc"),
        ("i", 2.0),
        ("i", True),
        ("n", "1.5"),
        ("n", float("nan")),
        ("b", 1),
        ("d", "2024-05-01T10:00:00Z"),
        ("d", "2023-02-30"),
        ("dt", "2024-05-01"),
        ("prefs", "red"),
        ("tags", "a"),
        ("nums", [1, "x"]),
    ],
)
def test_a_value_of_the_wrong_type_goes_to_unmapped_untouched(key, value):
    typed, unmapped = conform({key: value, "s": "kept"}, SCHEMA)
    assert typed == {"s": "kept"}
    assert list(unmapped) == [key] and unmapped[key] is value


def test_an_unknown_field_goes_to_unmapped():
    assert conform({"new": {"x": 1}, "i": 1}, SCHEMA) == ({"i": 1}, {"new": {"x": 1}})


def test_nested_unknown_or_misfit_keys_use_dotted_paths():
    typed, unmapped = conform({"prefs": {"colour": "red", "shade": "dark", "size": "L"}}, SCHEMA)
    assert typed == {"prefs": {"colour": "red"}}
    assert unmapped == {"prefs.shade": "dark", "prefs.size": "L"}


def test_an_array_with_one_misfit_element_goes_to_unmapped_whole():
    rows = [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 1, "extra": True}]
    assert conform({"rows": rows}, SCHEMA) == ({}, {"rows": rows})


def test_dotted_path_collisions_never_overwrite_an_unmapped_value():
    typed, unmapped = conform({"prefs.shade": 1, "prefs": {"shade": 2}}, SCHEMA)
    assert typed == {"prefs": {}}
    assert unmapped == {"prefs.shade": 1, "prefs.shade#2": 2}


def test_conform_does_not_mutate_its_input():
    obj = {"prefs": {"colour": "red", "x": [1]}, "s": {"a": 1}, "zz": 1}
    before = copy.deepcopy(obj)
    conform(obj, SCHEMA)
    assert obj == before


def test_a_conformer_is_reusable_and_matches_conform():
    conformer = Conformer(SCHEMA)
    for obj in ({"i": 1}, {"i": "x"}, None, {}):
        assert conformer(obj) == conform(obj, SCHEMA)


def test_a_conformer_needs_an_object_root_schema():
    with pytest.raises(ValueError):
        Conformer({"type": ["string", "null"]})


def test_hand_written_schemas_with_multiple_types_try_the_strict_type_first():
    schema = {"type": "object", "properties": {"f": {"type": ["string", "integer"]}, "g": {}}}
    assert conform({"f": 1, "g": {"any": 1}}, schema) == ({"f": 1, "g": {"any": 1}}, {})
    assert conform({"f": True}, schema) == ({"f": "true"}, {})
    assert conform({"f": None}, schema) == ({}, {"f": None})


# --------------------------------------------------------------------------
# Property-style checks over random records
# --------------------------------------------------------------------------

KEYS = ["a", "b", "c", "d", "e", "f"]
SCALARS = [
    lambda r: None,
    lambda r: r.random() < 0.5,
    lambda r: r.randint(-1000, 1000),
    lambda r: round(r.uniform(-100, 100), 3),
    lambda r: float(r.randint(0, 9)),
    lambda r: r.choice(["x", "", "hello", "2024-05-01", "2024-02-30", "ü"]),
    lambda r: f"2024-0{r.randint(1, 9)}-1{r.randint(0, 9)}",
    lambda r: f"2024-05-0{r.randint(1, 9)}T1{r.randint(0, 9)}:00:00Z",
]


def random_value(rng, depth):
    roll = rng.random()
    if depth < 8 and roll < 0.15:
        return random_object(rng, depth + 1)
    if depth < 8 and roll < 0.25:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return rng.choice(SCALARS)(rng)


def random_object(rng, depth=0, keys=KEYS):
    return {k: random_value(rng, depth) for k in rng.sample(keys, rng.randint(0, 4))}


def string_form(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False)


def assert_equivalent(original, out):
    """``out`` is ``original`` or a lossless coercion of it."""
    if isinstance(out, str) and not isinstance(original, str):
        assert out == string_form(original)
    elif isinstance(original, dict):
        assert isinstance(out, dict) and out.keys() == original.keys()
        for k in original:
            assert_equivalent(original[k], out[k])
    elif isinstance(original, list):
        assert isinstance(out, list) and len(out) == len(original)
        for o, c in zip(original, out):
            assert_equivalent(o, c)
    else:
        assert out == original and isinstance(out, bool) == isinstance(original, bool)


def assert_accounted(obj, typed, unmapped, prefix=""):
    """Every key of ``obj`` is in ``typed`` (recursively) or in ``unmapped``."""
    assert set(typed) <= set(obj)
    for key, value in obj.items():
        path = prefix + key
        if path in unmapped:
            assert unmapped[path] is value
            assert key not in typed
        elif isinstance(value, dict) and isinstance(typed.get(key), dict):
            assert_accounted(value, typed[key], unmapped, path + ".")
        else:
            assert key in typed, f"{path} was dropped"
            assert_equivalent(value, typed[key])


@pytest.mark.parametrize("seed", range(8))
def test_random_records_are_fully_accounted_for_and_typed_values_validate(seed):
    rng = random.Random(seed)
    discovered = [random_object(rng) for _ in range(60)]
    schema = infer(discovered)
    Draft7Validator.check_schema(schema)
    validator = Draft7Validator(schema)
    conformer = Conformer(schema)
    fresh = [random_object(rng, keys=KEYS + ["g", "h"]) for _ in range(200)]
    total_unmapped = 0
    for obj in fresh + discovered:
        typed, unmapped = conformer(obj)
        validator.validate(typed)
        assert_accounted(obj, typed, unmapped)
        total_unmapped += len(unmapped)
    assert total_unmapped > 0  # the generator does exercise the unmapped path


@pytest.mark.parametrize("seed", range(8))
def test_records_used_for_discovery_conform_without_unmapped_values(seed):
    rng = random.Random(1000 + seed)
    records = [random_object(rng) for _ in range(60)]
    conformer = Conformer(infer(records))
    for obj in records:
        assert conformer(obj)[1] == {}


@pytest.mark.parametrize("seed", range(4))
def test_random_record_sets_give_the_same_schema_in_any_order(seed):
    rng = random.Random(2000 + seed)
    records = [random_object(rng) for _ in range(30)]
    expected = json.dumps(infer(records))
    for _ in range(10):
        rng.shuffle(records)
        assert json.dumps(infer(records)) == expected
