#!/usr/bin/env python3
"""Generate the tap's stream schemas and the endpoint table from Klaviyo's OpenAPI spec.

Outputs (all paths relative to the repository root):

* ``spec/klaviyo-openapi-trimmed.json`` - the official spec trimmed to the operations
  this project uses (plus every component they reference, transitively);
* ``tap_klaviyo/schemas/<stream>.json`` - one JSON Schema (draft 7) per tap stream,
  describing the *flattened* record the tap emits;
* ``klaviyo_core/endpoints.json`` - method, path, rate limits and page sizes per
  operationId.

The stream schemas and the endpoint table are generated from the trimmed spec, so
they can be re-checked without the full spec (see ``tests/test_spec_sync.py``).

Usage (from the repository root)::

    python scripts/generate_from_spec.py                 # write all outputs
    python scripts/generate_from_spec.py --check         # exit 1 if outputs are stale
    python scripts/generate_from_spec.py --spec PATH     # full spec location
    python scripts/generate_from_spec.py --from-trimmed  # regenerate schemas/endpoints
                                                         # from the committed trimmed spec

Stdlib only.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPEC = "../shared/klaviyo/openapi-stable.json"  # relative to REPO_ROOT

TRIMMED_SPEC_PATH = "spec/klaviyo-openapi-trimmed.json"
SCHEMAS_DIR = "tap_klaviyo/schemas"
ENDPOINTS_PATH = "klaviyo_core/endpoints.json"
REPORT_OPTIONS_PATH = "tap_klaviyo/report_options.json"

JSON_API = "application/vnd.api+json"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# Resource streams: stream name -> path of the GET collection operation.
RESOURCE_STREAMS: dict[str, str] = {
    "campaigns": "/api/campaigns",
    "events": "/api/events",
    "flows": "/api/flows",
    "lists": "/api/lists",
    "metrics": "/api/metrics",
    "profiles": "/api/profiles",
    "reviews": "/api/reviews",
    "segments": "/api/segments",
    "flow_messages": "/api/flow-actions/{id}/flow-messages",
    "templates": "/api/templates",
    "tags": "/api/tags",
    "tag_groups": "/api/tag-groups",
    "catalog_items": "/api/catalog-items",
    "catalog_variants": "/api/catalog-variants",
    "catalog_categories": "/api/catalog-categories",
    "coupons": "/api/coupons",
    "coupon_codes": "/api/coupon-codes",
    "forms": "/api/forms",
    "images": "/api/images",
}

# Streams read from the ``included`` resources of a parent collection (one request per
# page of parents instead of one per parent): stream name -> (GET path, JSON:API type).
INCLUDED_STREAMS: dict[str, tuple[str, str]] = {
    "campaign_messages": ("/api/campaigns", "campaign-message"),
    "flow_actions": ("/api/flows", "flow-action"),
}

# Membership streams: stream name -> (GET path, parent key). Records are
# {<parent key>, profile_id, joined_group_at}; primary key (<parent key>, profile_id).
MEMBER_STREAMS: dict[str, tuple[str, str]] = {
    "list_members": ("/api/lists/{id}/profiles", "list_id"),
    "segment_members": ("/api/segments/{id}/profiles", "segment_id"),
}

# Report streams: stream name -> (POST path, grouping key columns, series?). Records are
# the groupings, the window (values) or interval start (series), and one nullable number
# per statistic the request's ``statistics`` enum allows. Groupings are the ones the tap
# asks for (Klaviyo's defaults for each report).
REPORT_STREAMS: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "campaign_values_report": (
        "/api/campaign-values-reports",
        ("campaign_id", "campaign_message_id", "send_channel"),
        False,
    ),
    "flow_values_report": ("/api/flow-values-reports", ("flow_id", "flow_message_id", "send_channel"), False),
    "flow_series_report": ("/api/flow-series-reports", ("flow_id", "flow_message_id", "send_channel"), True),
    "form_series_report": ("/api/form-series-reports", ("form_id",), True),
    "segment_series_report": ("/api/segment-series-reports", ("segment_id",), True),
}
# Metric aggregates: metric_id, date, then one column per measurement; the `by`
# dimension columns are added by the tap from its settings.
METRIC_AGGREGATES_STREAM = ("metric_aggregates", "/api/metric-aggregates")

# Properties the tap adds to records from its request context (appended last).
EXTRA_PROPERTIES: dict[str, dict[str, dict]] = {
    "campaigns": {"channel": {"type": ["string", "null"]}},
    "campaign_messages": {"channel": {"type": ["string", "null"]}},  # the campaigns pass it came from
}

# Operations kept in the trimmed spec and listed in the endpoint table.
OPERATION_IDS: tuple[str, ...] = (
    "get_accounts",
    "get_campaigns",
    "get_events",
    "get_flows",
    "get_lists",
    "create_list",
    "get_list",
    "delete_list",
    "get_profiles_for_list",
    "get_profile_ids_for_list",
    "add_profiles_to_list",
    "remove_profiles_from_list",
    "get_metrics",
    "get_profiles",
    "get_profile",
    "create_or_update_profile",
    "get_bulk_import_profiles_jobs",
    "bulk_import_profiles",
    "get_bulk_import_profiles_job",
    "get_errors_for_bulk_import_profiles_job",
    "get_profiles_for_bulk_import_profiles_job",
    "get_reviews",
    "get_segments",
    "get_segment",
    "get_profiles_for_segment",
    "get_profile_ids_for_segment",
    "get_flow_action_messages",
    "get_templates",
    "get_tags",
    "get_tag_groups",
    "get_catalog_items",
    "get_catalog_variants",
    "get_catalog_categories",
    "get_coupons",
    "get_coupon_codes",
    "get_forms",
    "get_images",
    # target-klaviyo's consent, suppression and event operations
    "bulk_subscribe_profiles",
    "bulk_unsubscribe_profiles",
    "bulk_suppress_profiles",
    "get_bulk_suppress_profiles_job",
    "bulk_unsuppress_profiles",
    "get_bulk_unsuppress_profiles_job",
    "bulk_create_events",
    # Reporting API (report streams, tap_klaviyo/reports.py)
    "query_campaign_values",
    "query_flow_values",
    "query_flow_series",
    "query_form_series",
    "query_segment_series",
    "query_metric_aggregates",
)

# Top-level keys of the full spec that the trimmed spec keeps ("paths" and
# "components" are trimmed). "security" is kept so the kept securitySchemes still
# apply to the kept operations.
TOP_LEVEL_KEYS = ("openapi", "info", "servers", "paths", "components", "security")

# JSON Schema keywords kept in the output, in output order.
KEPT_FORMATS = ("date-time", "date")
COMPOSITION_KEYS = ("allOf", "oneOf", "anyOf")
# A schema without any type information (e.g. `{"nullable": true}`) accepts any value.
# It is written as an explicit list of every JSON type, because `{}` makes the Singer
# SDK's record conformance raise EmptySchemaTypeError when the value is a list.
ANY_TYPES = ("string", "number", "integer", "boolean", "object", "array")


class SpecError(Exception):
    """The spec does not have the shape the generator expects."""


# --------------------------------------------------------------------------- #
# I/O helpers
# --------------------------------------------------------------------------- #


def load_json(path: Path | str) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def dump_trimmed_spec(spec: dict) -> str:
    return json.dumps(spec, indent=1) + "\n"


def dump_output(obj: Any) -> str:
    return json.dumps(obj, indent=2) + "\n"


# --------------------------------------------------------------------------- #
# $ref handling
# --------------------------------------------------------------------------- #


def resolve_pointer(spec: dict, ref: str) -> Any:
    """Return the object a local JSON reference (``#/a/b``) points to."""
    if not ref.startswith("#/"):
        raise SpecError(f"only local $refs are supported, got {ref!r}")
    node: Any = spec
    for raw in ref[2:].split("/"):
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(key)]
        elif isinstance(node, dict) and key in node:
            node = node[key]
        else:
            raise SpecError(f"unresolvable $ref {ref!r}")
    return node


def deref(spec: dict, node: Any) -> Any:
    """Follow ``$ref`` chains at the top of ``node`` (siblings of $ref are ignored)."""
    seen = set()
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if ref in seen:
            raise SpecError(f"$ref loop at {ref!r}")
        seen.add(ref)
        node = resolve_pointer(spec, ref)
    return node


def inline_refs(schema: Any, spec: dict, _stack: tuple[str, ...] = ()) -> Any:
    """Return a copy of ``schema`` with every ``$ref`` replaced by its target.

    Keys written next to a ``$ref`` (Klaviyo writes ``nullable``/``description``
    there) are laid over the resolved target. A recursive reference is expanded
    once more when it repeats (first repetition); a deeper one becomes a free-form
    nullable object.
    """
    if isinstance(schema, list):
        return [inline_refs(item, spec, _stack) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        ref = schema["$ref"]
        if _stack.count(ref) >= 2:
            resolved: dict = {"type": "object", "nullable": True}
        else:
            target = resolve_pointer(spec, ref)
            resolved = inline_refs(target, spec, _stack + (ref,))
            resolved = dict(resolved) if isinstance(resolved, dict) else resolved
        for key, value in schema.items():
            if key != "$ref":
                resolved[key] = inline_refs(value, spec, _stack)
        return resolved
    return {key: inline_refs(value, spec, _stack) for key, value in schema.items()}


# --------------------------------------------------------------------------- #
# OpenAPI 3.0 schema -> JSON Schema (draft 7) for Singer
# --------------------------------------------------------------------------- #


def _types_of(schema: dict) -> list[str]:
    t = schema.get("type")
    if t is None:
        return []
    return [t] if isinstance(t, str) else list(t)


def _ordered_types(types: list[str]) -> list[str]:
    out: list[str] = []
    for t in types:
        if t != "null" and t not in out:
            out.append(t)
    if "null" in types:
        out.append("null")
    return out


def _finish(schema: dict) -> dict:
    """Write ``type`` as a string when it holds one type; keep keyword order stable."""
    out: dict = {}
    types = _ordered_types(_types_of(schema))
    if types:
        out["type"] = types[0] if len(types) == 1 else types
    for key in ("format", "properties", "items"):
        if key in schema:
            out[key] = schema[key]
    if "properties" in out:
        # Keys Klaviyo adds inside objects pass through instead of being dropped.
        out["additionalProperties"] = True
    return out


def merge_schemas(a: dict, b: dict) -> dict:
    """Union of two converted schemas: union of types and of object properties.

    Same-named properties (and array items) are merged recursively. A string
    ``format`` survives only if every string-typed branch declares the same one.
    """
    ta, tb = _types_of(a), _types_of(b)
    out: dict = {"type": _ordered_types(ta + tb)}

    a_str, b_str = "string" in ta, "string" in tb
    if a_str and b_str:
        if a.get("format") is not None and a.get("format") == b.get("format"):
            out["format"] = a["format"]
    elif a_str and "format" in a:
        out["format"] = a["format"]
    elif b_str and "format" in b:
        out["format"] = b["format"]

    if "properties" in a or "properties" in b:
        props = dict(a.get("properties", {}))
        for name, sub in b.get("properties", {}).items():
            props[name] = merge_schemas(props[name], sub) if name in props else sub
        out["properties"] = props

    if "items" in a and "items" in b:
        out["items"] = merge_schemas(a["items"], b["items"])
    elif "items" in a or "items" in b:
        out["items"] = a.get("items", b.get("items"))

    return _finish(out)


def to_json_schema(schema: dict, *, nullable: bool = False) -> dict:
    """Convert an OpenAPI 3.0 schema whose ``$ref``s are already inlined.

    ``nullable=True`` forces ``"null"`` into the type (used for every property).
    Object properties are always converted with ``nullable=True``; array items keep
    the nullability the spec gives them.
    """
    if not isinstance(schema, dict):
        raise SpecError(f"schema must be an object, got {schema!r}")
    if "$ref" in schema:
        raise SpecError("to_json_schema() needs a schema with inlined $refs")

    parts: list[dict] = []
    base = {k: v for k, v in schema.items() if k not in COMPOSITION_KEYS}
    if any(k in base for k in ("type", "properties", "items")):
        parts.append(_convert_plain(base))
    for key in COMPOSITION_KEYS:
        for alternative in schema.get(key, []):
            parts.append(to_json_schema(alternative))

    if not parts:
        result: dict = {"type": list(ANY_TYPES)}
    else:
        result = parts[0]
        for part in parts[1:]:
            result = merge_schemas(result, part)

    if nullable or schema.get("nullable") is True:
        result = dict(result)
        result["type"] = _types_of(result) + ["null"]
    return _finish(result)


def _convert_plain(schema: dict) -> dict:
    types = _types_of(schema)
    if not types:
        if "properties" in schema:
            types = ["object"]
        elif "items" in schema:
            types = ["array"]
    out: dict = {"type": types}
    if "string" in types and schema.get("format") in KEPT_FORMATS:
        out["format"] = schema["format"]
    if "object" in types and schema.get("properties"):
        out["properties"] = {name: to_json_schema(sub, nullable=True) for name, sub in schema["properties"].items()}
    if "array" in types and isinstance(schema.get("items"), dict):
        out["items"] = to_json_schema(schema["items"])
    return _finish(out)


# --------------------------------------------------------------------------- #
# Operations
# --------------------------------------------------------------------------- #


def iter_operations(spec: dict):
    """Yield (path, method, operation) in spec order."""
    for path, item in spec.get("paths", {}).items():
        for method, op in item.items():
            if method in HTTP_METHODS and isinstance(op, dict):
                yield path, method, op


def find_operations(spec: dict, operation_ids) -> dict[str, tuple[str, str, dict]]:
    wanted = set(operation_ids)
    found: dict[str, tuple[str, str, dict]] = {}
    for path, method, op in iter_operations(spec):
        op_id = op.get("operationId")
        if op_id in wanted:
            if op_id in found:
                raise SpecError(f"duplicate operationId {op_id!r}")
            found[op_id] = (path, method, op)
    missing = sorted(wanted - found.keys())
    if missing:
        raise SpecError(f"operations not found in spec: {', '.join(missing)}")
    return found


def get_operation(spec: dict, path: str, method: str = "get") -> dict:
    try:
        return spec["paths"][path][method]
    except KeyError:
        raise SpecError(f"no operation {method.upper()} {path} in spec") from None


# --------------------------------------------------------------------------- #
# Trimming
# --------------------------------------------------------------------------- #


def _collect_component_refs(node: Any, out: list[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                out.append(value)
            else:
                _collect_component_refs(value, out)
    elif isinstance(node, list):
        for value in node:
            _collect_component_refs(value, out)


def trim_spec(full: dict, operation_ids=OPERATION_IDS) -> dict:
    """Keep only the given operations and the components they need, in source order."""
    ops = find_operations(full, operation_ids)
    keep = {(path, method) for path, method, _ in ops.values()}

    paths: dict = {}
    for path, item in full["paths"].items():
        if not any((path, m) in keep for m in item):
            continue
        paths[path] = {
            key: copy.deepcopy(value) for key, value in item.items() if key not in HTTP_METHODS or (path, key) in keep
        }

    components = full.get("components", {})
    # Transitive closure of "#/components/<kind>/<name>" references.
    needed: set[tuple[str, str]] = set()
    pending: list[str] = []
    _collect_component_refs(paths, pending)
    _collect_component_refs(components.get("securitySchemes", {}), pending)
    while pending:
        ref = pending.pop()
        parts = ref.split("/")
        if len(parts) != 4 or parts[:2] != ["#", "components"]:
            raise SpecError(f"unexpected $ref {ref!r}")
        kind = parts[2]
        name = parts[3].replace("~1", "/").replace("~0", "~")
        if (kind, name) in needed:
            continue
        if name not in components.get(kind, {}):
            raise SpecError(f"unresolvable $ref {ref!r}")
        needed.add((kind, name))
        _collect_component_refs(components[kind][name], pending)

    trimmed_components: dict = {}
    for kind, entries in components.items():
        if kind == "securitySchemes":
            trimmed_components[kind] = copy.deepcopy(entries)
            continue
        kept = {n: copy.deepcopy(v) for n, v in entries.items() if (kind, n) in needed}
        if kept:
            trimmed_components[kind] = kept

    out: dict = {}
    for key in full:
        if key not in TOP_LEVEL_KEYS:
            continue
        if key == "paths":
            out[key] = paths
        elif key == "components":
            out[key] = trimmed_components
        else:
            out[key] = copy.deepcopy(full[key])
    return out


# --------------------------------------------------------------------------- #
# Stream schemas
# --------------------------------------------------------------------------- #


def response_item_schema(spec: dict, path: str) -> dict:
    """Converted JSON Schema of one element of ``data`` in GET ``path``'s 200 response."""
    op = get_operation(spec, path)
    try:
        response = deref(spec, op["responses"]["200"])
        document = deref(spec, response["content"][JSON_API]["schema"])
        data = deref(spec, document["properties"]["data"])
        item = data["items"]
    except (KeyError, TypeError):
        raise SpecError(f"GET {path}: no 200 {JSON_API} collection document") from None
    return to_json_schema(inline_refs(item, spec))


def included_item_schema(spec: dict, path: str, resource_type: str) -> dict:
    """Converted JSON Schema of the ``included`` resource of ``resource_type`` in GET ``path``'s 200 response."""
    op = get_operation(spec, path)
    try:
        response = deref(spec, op["responses"]["200"])
        document = deref(spec, response["content"][JSON_API]["schema"])
        items = deref(spec, document["properties"]["included"])["items"]
    except (KeyError, TypeError):
        raise SpecError(f"GET {path}: no 200 {JSON_API} document with included resources") from None
    for alternative in items.get("oneOf", [items]):
        resource = inline_refs(alternative, spec)
        if resource_type in (resource.get("properties", {}).get("type", {}).get("enum") or ()):
            return to_json_schema(resource)
    raise SpecError(f"GET {path}: no included resource of type {resource_type!r}")


def relationship_property(name: str, to_many: bool) -> str:
    base = name.replace("-", "_")
    if to_many:
        if base.endswith("s"):
            base = base[:-1]
        return base + "_ids"
    return base + "_id"


def _has_type(schema: dict, t: str) -> bool:
    return t in _types_of(schema)


def flatten_resource(resource: dict, *, context: str = "") -> dict[str, dict]:
    """Properties of the flattened record for a converted JSON:API resource schema."""
    props_of_resource = resource.get("properties", {})
    attributes = props_of_resource.get("attributes", {}).get("properties", {})
    relationships = props_of_resource.get("relationships", {}).get("properties", {})

    properties: dict[str, dict] = {"id": {"type": "string"}}
    for name, sub in attributes.items():
        if name in properties:
            raise SpecError(f"{context}: attribute {name!r} clashes with 'id'")
        properties[name] = sub

    for rel_name, rel in relationships.items():
        data = rel.get("properties", {}).get("data")
        if data is None:
            continue  # links-only relationship
        is_array, is_object = _has_type(data, "array"), _has_type(data, "object")
        if is_array == is_object:
            raise SpecError(f"{context}: relationship {rel_name!r} data is neither to-one nor to-many")
        prop = relationship_property(rel_name, to_many=is_array)
        if prop in properties:
            raise SpecError(f"{context}: relationship {rel_name!r} -> {prop!r} clashes with an existing property")
        if is_array:
            properties[prop] = {"type": ["array", "null"], "items": {"type": "string"}}
        else:
            properties[prop] = {"type": ["string", "null"]}
    return properties


def links_only_relationships(resource: dict) -> list[str]:
    rels = resource.get("properties", {}).get("relationships", {}).get("properties", {})
    return [n for n, r in rels.items() if "data" not in r.get("properties", {})]


def request_attributes(spec: dict, path: str) -> dict:
    """The inlined ``data.attributes`` properties of POST ``path``'s request body."""
    op = get_operation(spec, path, "post")
    try:
        body = inline_refs(deref(spec, op["requestBody"])["content"][JSON_API]["schema"], spec)
        return body["properties"]["data"]["properties"]["attributes"]["properties"]
    except (KeyError, TypeError):
        raise SpecError(f"POST {path}: no {JSON_API} request body with data.attributes") from None


def request_enum(spec: dict, path: str, attribute: str) -> list[str]:
    """The values an array attribute of a report request allows (e.g. ``statistics``)."""
    try:
        return list(request_attributes(spec, path)[attribute]["items"]["enum"])
    except KeyError:
        raise SpecError(f"POST {path}: attribute {attribute!r} has no enum of items") from None


NUMBER = {"type": ["number", "null"]}
DATE_TIME = {"type": ["string", "null"], "format": "date-time"}


def build_report_schema(spec: dict, stream: str) -> dict:
    if stream == METRIC_AGGREGATES_STREAM[0]:
        properties: dict[str, dict] = {
            "metric_id": {"type": "string"},
            "date": {"type": "string", "format": "date-time"},
        }
        for name in request_enum(spec, METRIC_AGGREGATES_STREAM[1], "measurements"):
            properties[name] = NUMBER
        return {"type": "object", "properties": properties}
    path, groupings, series = REPORT_STREAMS[stream]
    properties = {key: {"type": ["string", "null"]} for key in groupings}
    if series:
        properties["date_time"] = {"type": "string", "format": "date-time"}
    else:
        properties["timeframe_start"] = DATE_TIME
        properties["timeframe_end"] = DATE_TIME
    if "conversion_metric_id" in request_attributes(spec, path):
        properties["conversion_metric_id"] = {"type": ["string", "null"]}
    for name in request_enum(spec, path, "statistics"):
        if name in properties:
            raise SpecError(f"{stream}: statistic {name!r} clashes with a key column")
        properties[name] = NUMBER
    return {"type": "object", "properties": properties}


def build_report_options(spec: dict) -> dict:
    """Values the tap's report settings accept, as the report requests define them."""
    series_path = REPORT_STREAMS["flow_series_report"][0]
    aggregates = request_attributes(spec, METRIC_AGGREGATES_STREAM[1])
    return {
        "series_intervals": list(request_attributes(spec, series_path)["interval"]["enum"]),
        "timeframe_keys": list(deref(spec, spec["components"]["schemas"]["Timeframe"])["properties"]["key"]["enum"]),
        "metric_aggregates_by": list(aggregates["by"]["items"]["enum"]),
        "metric_aggregates_intervals": list(aggregates["interval"]["enum"]),
    }


def build_stream_schema(spec: dict, stream: str) -> dict:
    if stream in REPORT_STREAMS or stream == METRIC_AGGREGATES_STREAM[0]:
        return build_report_schema(spec, stream)
    if stream in RESOURCE_STREAMS:
        resource = response_item_schema(spec, RESOURCE_STREAMS[stream])
        properties = flatten_resource(resource, context=stream)
    elif stream in INCLUDED_STREAMS:
        resource = included_item_schema(spec, *INCLUDED_STREAMS[stream])
        properties = flatten_resource(resource, context=stream)
    elif stream in MEMBER_STREAMS:
        path, parent_key = MEMBER_STREAMS[stream]
        resource = response_item_schema(spec, path)
        attributes = resource.get("properties", {}).get("attributes", {}).get("properties", {})
        if "joined_group_at" not in attributes:
            raise SpecError(f"{stream}: GET {path} has no joined_group_at attribute")
        properties = {
            parent_key: {"type": "string"},
            "profile_id": {"type": "string"},
            "joined_group_at": attributes["joined_group_at"],
        }
    else:
        raise SpecError(f"unknown stream {stream!r}")

    for name, sub in EXTRA_PROPERTIES.get(stream, {}).items():
        if name in properties:
            raise SpecError(f"{stream}: extra property {name!r} clashes with a spec property")
        properties[name] = sub
    return {"type": "object", "properties": properties}


def all_streams() -> list[str]:
    return (
        list(RESOURCE_STREAMS)
        + list(INCLUDED_STREAMS)
        + list(MEMBER_STREAMS)
        + list(REPORT_STREAMS)
        + [METRIC_AGGREGATES_STREAM[0]]
    )


# --------------------------------------------------------------------------- #
# Endpoint table
# --------------------------------------------------------------------------- #

_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*([smhd])\s*$")
_RATE_FIELDS = (("burst", "s", "burst_per_second"), ("steady", "m", "steady_per_minute"), ("daily", "d", "daily"))


def _parse_rate(op_id: str, key: str, value: Any, unit: str) -> int:
    match = _RATE_RE.match(str(value))
    if not match or match.group(2) != unit:
        raise SpecError(f"{op_id}: x-klaviyo-ratelimit.{key} = {value!r}, expected 'N/{unit}'")
    return int(match.group(1))


def build_endpoint_table(spec: dict, operation_ids=OPERATION_IDS) -> dict[str, dict]:
    ops = find_operations(spec, operation_ids)
    table: dict[str, dict] = {}
    for op_id in sorted(ops):
        path, method, op = ops[op_id]
        limits = op.get("x-klaviyo-ratelimit") or {}
        unknown = set(limits) - {k for k, _, _ in _RATE_FIELDS}
        if unknown:
            raise SpecError(f"{op_id}: unknown x-klaviyo-ratelimit keys {sorted(unknown)}")
        entry: dict[str, Any] = {"method": method.upper(), "path": path}
        for key, unit, field in _RATE_FIELDS:
            entry[field] = _parse_rate(op_id, key, limits[key], unit) if key in limits else None

        page_size: dict = {}
        params = list(spec["paths"][path].get("parameters", [])) + list(op.get("parameters", []))
        for param in params:
            param = deref(spec, param)
            if param.get("name") == "page[size]" and param.get("in") == "query":
                page_size = deref(spec, param.get("schema", {}))
        entry["page_size_default"] = page_size.get("default")
        entry["page_size_max"] = page_size.get("maximum")
        entry["scopes"] = list(op.get("x-klaviyo-scopes") or [])
        table[op_id] = entry
    return table


# --------------------------------------------------------------------------- #
# Driver
# --------------------------------------------------------------------------- #


def generate_from_trimmed(trimmed: dict) -> dict[str, str]:
    """Schemas + endpoint table (relative path -> file text) from a trimmed spec."""
    outputs: dict[str, str] = {}
    for stream in all_streams():
        outputs[f"{SCHEMAS_DIR}/{stream}.json"] = dump_output(build_stream_schema(trimmed, stream))
    outputs[ENDPOINTS_PATH] = dump_output(build_endpoint_table(trimmed))
    outputs[REPORT_OPTIONS_PATH] = dump_output(build_report_options(trimmed))
    return outputs


def generate_all(full: dict) -> dict[str, str]:
    """Trimmed spec + everything generated from it (relative path -> file text)."""
    trimmed_text = dump_trimmed_spec(trim_spec(full))
    outputs = {TRIMMED_SPEC_PATH: trimmed_text}
    # Generate from the serialised trimmed spec, exactly as the tests do.
    outputs.update(generate_from_trimmed(json.loads(trimmed_text)))
    return outputs


def stale_files(outputs: dict[str, str], root: Path = REPO_ROOT) -> list[str]:
    stale = []
    for rel, text in outputs.items():
        target = root / rel
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            stale.append(rel)
    return stale


def write_outputs(outputs: dict[str, str], root: Path = REPO_ROOT) -> list[str]:
    changed = stale_files(outputs, root)
    for rel in changed:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(outputs[rel], encoding="utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--spec",
        default=DEFAULT_SPEC,
        help=f"full Klaviyo OpenAPI spec (default: {DEFAULT_SPEC}, relative to the repo root)",
    )
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 and list the files that are stale")
    parser.add_argument(
        "--from-trimmed",
        action="store_true",
        help=f"use the committed {TRIMMED_SPEC_PATH} instead of the full spec (schemas and endpoint table only)",
    )
    args = parser.parse_args(argv)

    spec_path = Path(args.spec)
    if not spec_path.is_absolute():
        spec_path = REPO_ROOT / spec_path

    try:
        if args.from_trimmed:
            outputs = generate_from_trimmed(load_json(REPO_ROOT / TRIMMED_SPEC_PATH))
        elif spec_path.is_file():
            outputs = generate_all(load_json(spec_path))
        else:
            print(f"error: full spec not found at {spec_path} (pass --spec PATH, or --from-trimmed)", file=sys.stderr)
            return 2
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if args.check:
        stale = stale_files(outputs)
        if stale:
            print("stale generated files (run `python scripts/generate_from_spec.py`):", file=sys.stderr)
            for rel in stale:
                print(f"  {rel}", file=sys.stderr)
            return 1
        print(f"{len(outputs)} generated files are up to date")
        return 0

    changed = write_outputs(outputs)
    for rel in changed:
        print(f"wrote {rel}")
    print(f"{len(outputs)} files, {len(changed)} changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
