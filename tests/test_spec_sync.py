"""The committed spec-derived files must match what scripts/generate_from_spec.py makes.

If a test here fails after the spec or the generator changed, regenerate with
``python scripts/generate_from_spec.py`` and commit the result.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
GENERATOR_PATH = REPO_ROOT / "scripts" / "generate_from_spec.py"


def _load_generator():
    name = "generate_from_spec"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, GENERATOR_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses/annotations may look the module up
    spec.loader.exec_module(module)
    return module


gen = _load_generator()

REGENERATE = "run `python scripts/generate_from_spec.py` and commit the result"


@pytest.fixture(scope="module")
def trimmed_spec() -> dict:
    return gen.load_json(REPO_ROOT / gen.TRIMMED_SPEC_PATH)


# --------------------------------------------------------------------------- #
# (1) committed outputs == regenerated from the committed trimmed spec
# --------------------------------------------------------------------------- #


def test_outputs_match_committed_trimmed_spec(trimmed_spec):
    outputs = gen.generate_from_trimmed(trimmed_spec)
    expected = {f"{gen.SCHEMAS_DIR}/{s}.json" for s in gen.all_streams()} | {gen.ENDPOINTS_PATH}
    expected |= {gen.REPORT_OPTIONS_PATH}
    assert set(outputs) == expected
    stale = gen.stale_files(outputs, REPO_ROOT)
    assert not stale, f"stale generated files {stale}; {REGENERATE}"


def test_schemas_shape(trimmed_spec):
    for stream in [*gen.RESOURCE_STREAMS, *gen.INCLUDED_STREAMS]:
        schema = json.loads((REPO_ROOT / gen.SCHEMAS_DIR / f"{stream}.json").read_text())
        props = schema["properties"]
        assert next(iter(props)) == "id"
        assert props["id"] == {"type": "string"}
        for name, sub in props.items():
            if name != "id":
                assert "null" in sub.get("type", []), f"{stream}.{name} is not nullable"
    assert "channel" in json.loads((REPO_ROOT / gen.SCHEMAS_DIR / "campaigns.json").read_text())["properties"]
    for stream, (_, parent_key) in gen.MEMBER_STREAMS.items():
        schema = json.loads((REPO_ROOT / gen.SCHEMAS_DIR / f"{stream}.json").read_text())
        assert list(schema["properties"]) == [parent_key, "profile_id", "joined_group_at"]


def test_endpoint_table_covers_operations(trimmed_spec):
    table = json.loads((REPO_ROOT / gen.ENDPOINTS_PATH).read_text())
    assert list(table) == sorted(gen.OPERATION_IDS)
    assert table["get_events"] == {
        "method": "GET",
        "path": "/api/events",
        "burst_per_second": 350,
        "steady_per_minute": 3500,
        "daily": None,
        "page_size_default": 200,
        "page_size_max": 1000,
        "scopes": ["events:read"],
    }
    assert table["create_list"]["daily"] == 150
    assert table["get_metrics"]["page_size_max"] is None
    # the content streams: 3/s endpoints, small page maxima, their own scopes
    assert table["get_flow_action_messages"] == {
        "method": "GET",
        "path": "/api/flow-actions/{id}/flow-messages",
        "burst_per_second": 3,
        "steady_per_minute": 60,
        "daily": None,
        "page_size_default": 50,
        "page_size_max": 50,
        "scopes": ["flows:read"],
    }
    assert (table["get_templates"]["page_size_max"], table["get_tag_groups"]["page_size_max"]) == (10, 25)
    assert table["get_coupon_codes"]["scopes"] == ["coupon-codes:read"]


def test_included_streams_are_the_included_resource_with_its_parent_key():
    campaign_messages = json.loads((REPO_ROOT / gen.SCHEMAS_DIR / "campaign_messages.json").read_text())
    assert {"definition", "send_times", "campaign_id", "template_id", "image_id"} <= set(
        campaign_messages["properties"]
    )
    flow_actions = json.loads((REPO_ROOT / gen.SCHEMAS_DIR / "flow_actions.json").read_text())
    assert {"definition", "created", "updated", "flow_id", "flow_message_ids"} <= set(flow_actions["properties"])
    with pytest.raises(gen.SpecError, match="no included resource of type 'profile'"):
        gen.included_item_schema(gen.load_json(REPO_ROOT / gen.TRIMMED_SPEC_PATH), "/api/flows", "profile")


# --------------------------------------------------------------------------- #
# (2) the committed trimmed spec is what trimming yields: every operation the project uses,
#     every component they reference, nothing else, in canonical form. Checked on the trimmed
#     spec itself (trimming it again changes nothing), so CI runs it without the full spec;
#     `generate_from_spec.py --check` compares it with the full spec where that is at hand.
# --------------------------------------------------------------------------- #


def test_trimmed_spec_is_a_fixed_point_of_trimming():
    committed = (REPO_ROOT / gen.TRIMMED_SPEC_PATH).read_text(encoding="utf-8")
    trimmed = json.loads(committed)
    assert gen.dump_trimmed_spec(gen.trim_spec(trimmed)) == committed, f"{gen.TRIMMED_SPEC_PATH} is stale; {REGENERATE}"
    operations = {
        op["operationId"] for item in trimmed["paths"].values() for op in item.values() if "operationId" in op
    }
    assert operations == set(gen.OPERATION_IDS)  # not one operation missing or left over


# --------------------------------------------------------------------------- #
# (3) converter behaviour on tiny inline specs
# --------------------------------------------------------------------------- #


def convert(schema: dict, spec: dict | None = None, **kw) -> dict:
    return gen.to_json_schema(gen.inline_refs(schema, spec or {}), **kw)


def test_every_property_nullable_and_keywords_dropped():
    schema = {
        "type": "object",
        "required": ["a"],
        "properties": {
            "a": {
                "type": "string",
                "description": "x",
                "example": "y",
                "enum": ["y"],
                "readOnly": True,
                "default": "y",
                "x-foo": 1,
            },
            "b": {"type": "integer", "nullable": True},
            "c": {"type": "string", "format": "date-time"},
            "d": {"type": "string", "format": "uri"},
            "e": {"type": "string", "format": "date"},
            "free": {"type": "object"},
            "arr": {"type": "array", "items": {"type": "string"}},
            "untyped": {"nullable": True},
        },
    }
    assert convert(schema) == {
        "type": "object",
        "properties": {
            "a": {"type": ["string", "null"]},
            "b": {"type": ["integer", "null"]},
            "c": {"type": ["string", "null"], "format": "date-time"},
            "d": {"type": ["string", "null"]},
            "e": {"type": ["string", "null"], "format": "date"},
            "free": {"type": ["object", "null"]},
            "arr": {"type": ["array", "null"], "items": {"type": "string"}},
            "untyped": {"type": [*gen.ANY_TYPES, "null"]},
        },
        "additionalProperties": True,
    }
    # array items keep the spec's own nullability
    assert convert({"type": "array", "items": {"type": "string", "nullable": True}}) == {
        "type": "array",
        "items": {"type": ["string", "null"]},
    }


def test_ref_resolution_with_siblings():
    spec = {
        "components": {
            "schemas": {
                "Loc": {"type": "object", "properties": {"city": {"type": "string"}}},
                "Alias": {"$ref": "#/components/schemas/Loc"},
            }
        }
    }
    schema = {
        "type": "object",
        "properties": {
            "loc": {"$ref": "#/components/schemas/Alias", "nullable": True, "description": "d"},
        },
    }
    assert convert(schema, spec) == {
        "type": "object",
        "properties": {
            "loc": {
                "type": ["object", "null"],
                "properties": {"city": {"type": ["string", "null"]}},
                "additionalProperties": True,
            },
        },
        "additionalProperties": True,
    }
    with pytest.raises(gen.SpecError):
        gen.inline_refs({"$ref": "#/components/schemas/Missing"}, spec)


def test_recursive_ref_is_cut_after_first_repetition():
    spec = {
        "components": {
            "schemas": {
                "Node": {
                    "type": "object",
                    "properties": {"child": {"$ref": "#/components/schemas/Node"}},
                }
            }
        }
    }
    out = convert({"$ref": "#/components/schemas/Node"}, spec)
    assert out == {
        "type": "object",
        "properties": {
            "child": {
                "type": ["object", "null"],
                "properties": {"child": {"type": ["object", "null"]}},
                "additionalProperties": True,
            }
        },
        "additionalProperties": True,
    }


def test_oneof_objects_merge_recursively():
    schema = {
        "oneOf": [
            {
                "type": "object",
                "properties": {
                    "method": {"type": "string", "enum": ["static"]},
                    "when": {"type": "string", "format": "date-time"},
                    "opts": {"type": "object", "properties": {"a": {"type": "boolean"}}},
                },
            },
            {
                "type": "object",
                "properties": {
                    "method": {"type": "string"},
                    "when": {"type": "integer"},
                    "opts": {"type": "object", "properties": {"b": {"type": "string"}}},
                    "pct": {"type": "integer"},
                },
            },
        ]
    }
    assert convert(schema, nullable=True) == {
        "type": ["object", "null"],
        "properties": {
            "method": {"type": ["string", "null"]},
            "when": {"type": ["string", "integer", "null"], "format": "date-time"},
            "opts": {
                "type": ["object", "null"],
                "properties": {
                    "a": {"type": ["boolean", "null"]},
                    "b": {"type": ["string", "null"]},
                },
                "additionalProperties": True,
            },
            "pct": {"type": ["integer", "null"]},
        },
        "additionalProperties": True,
    }


def test_allof_and_scalar_oneof():
    spec = {
        "components": {
            "schemas": {
                "Base": {"type": "object", "properties": {"x": {"type": "string"}}},
            }
        }
    }
    schema = {
        "allOf": [
            {"properties": {"extra": {"type": "number"}}},
            {"$ref": "#/components/schemas/Base"},
        ]
    }
    out = convert(schema, spec)
    assert out == {
        "type": "object",
        "properties": {
            "extra": {"type": ["number", "null"]},
            "x": {"type": ["string", "null"]},
        },
        "additionalProperties": True,
    }
    latitude = {"nullable": True, "oneOf": [{"type": "string"}, {"type": "number"}]}
    assert convert(latitude) == {"type": ["string", "number", "null"]}
    # conflicting string formats are dropped
    assert convert({"oneOf": [{"type": "string", "format": "date-time"}, {"type": "string"}]}) == {"type": "string"}


def _resource_spec(attributes: dict, relationships: dict) -> dict:
    return {
        "paths": {
            "/api/things": {
                "get": {
                    "responses": {
                        "200": {
                            "content": {
                                "application/vnd.api+json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "data": {
                                                "type": "array",
                                                "items": {
                                                    "type": "object",
                                                    "properties": {
                                                        "type": {"type": "string", "enum": ["thing"]},
                                                        "id": {"type": "string"},
                                                        "attributes": {"type": "object", "properties": attributes},
                                                        "relationships": {
                                                            "type": "object",
                                                            "properties": relationships,
                                                        },
                                                        "links": {
                                                            "type": "object",
                                                            "properties": {"self": {"type": "string"}},
                                                        },
                                                    },
                                                },
                                            }
                                        },
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }


def _rel(data: dict | None) -> dict:
    props = {"links": {"type": "object"}}
    if data is not None:
        props["data"] = data
    return {"type": "object", "properties": props}


ONE = {"type": "object", "properties": {"type": {"type": "string"}, "id": {"type": "string"}}}


def test_flatten_relationships():
    spec = _resource_spec(
        {"name": {"type": "string"}},
        {
            "flow-actions": _rel({"type": "array", "items": ONE}),
            "tag-group": _rel(ONE),
            "links-only": _rel(None),
        },
    )
    resource = gen.response_item_schema(spec, "/api/things")
    assert gen.flatten_resource(resource) == {
        "id": {"type": "string"},
        "name": {"type": ["string", "null"]},
        "flow_action_ids": {"type": ["array", "null"], "items": {"type": "string"}},
        "tag_group_id": {"type": ["string", "null"]},
    }
    assert gen.links_only_relationships(resource) == ["links-only"]

    clash = _resource_spec({"metric_id": {"type": "string"}}, {"metric": _rel(ONE)})
    with pytest.raises(gen.SpecError, match="clashes"):
        gen.flatten_resource(gen.response_item_schema(clash, "/api/things"))


def test_trim_and_endpoint_table_on_tiny_spec():
    full = {
        "openapi": "3.0.2",
        "info": {"title": "t", "version": "1"},
        "servers": [],
        "tags": [{"name": "x"}],
        "x-readme": {},
        "paths": {
            "/a": {
                "get": {
                    "operationId": "get_a",
                    "x-klaviyo-ratelimit": {"burst": "3/s", "steady": "60/m"},
                    "parameters": [
                        {"name": "page[size]", "in": "query", "schema": {"type": "integer", "default": 5, "maximum": 9}}
                    ],
                    "responses": {"200": {"$ref": "#/components/responses/Ok"}},
                },
                "post": {
                    "operationId": "create_a",
                    "x-klaviyo-ratelimit": {"burst": "1/s", "steady": "15/m", "daily": "150/d"},
                    "responses": {},
                },
            },
            "/b": {"get": {"operationId": "get_b", "responses": {}}},
        },
        "components": {
            "schemas": {"Unused": {}, "A": {"$ref": "#/components/schemas/B"}, "B": {"type": "string"}},
            "responses": {"Ok": {"content": {"x": {"schema": {"$ref": "#/components/schemas/A"}}}}},
            "securitySchemes": {"k": {"type": "apiKey"}},
        },
    }
    trimmed = gen.trim_spec(full, ["get_a", "create_a"])
    assert list(trimmed) == ["openapi", "info", "servers", "paths", "components"]
    assert list(trimmed["paths"]) == ["/a"]
    assert list(trimmed["components"]["schemas"]) == ["A", "B"]  # source order, transitive
    assert list(trimmed["components"]["responses"]) == ["Ok"]
    assert trimmed["components"]["securitySchemes"] == {"k": {"type": "apiKey"}}
    assert gen.build_endpoint_table(trimmed, ["get_a", "create_a"]) == {
        "create_a": {
            "method": "POST",
            "path": "/a",
            "burst_per_second": 1,
            "steady_per_minute": 15,
            "daily": 150,
            "page_size_default": None,
            "page_size_max": None,
            "scopes": [],
        },
        "get_a": {
            "method": "GET",
            "path": "/a",
            "burst_per_second": 3,
            "steady_per_minute": 60,
            "daily": None,
            "page_size_default": 5,
            "page_size_max": 9,
            "scopes": [],
        },
    }
    with pytest.raises(gen.SpecError, match="not found"):
        gen.trim_spec(full, ["nope"])
