"""Per-operation facts the sandbox serves by, read from what the plugins generate from Klaviyo's spec.

Rate limits and scopes come from ``klaviyo_core/endpoints.json`` (the plugins' own table, made by
``scripts/generate_from_spec.py``); filters (``x-klaviyo-filters``), sorts, includes, additional
fields, page sizes and the resource type from the trimmed spec the repository holds
(``spec/klaviyo-openapi-trimmed.json``). Nothing is copied by hand: a spec update changes the
sandbox with the plugins.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from klaviyo_core import endpoints as core_endpoints

SPEC = Path(__file__).resolve().parent.parent / "spec" / "klaviyo-openapi-trimmed.json"
HTTP_METHODS = ("get", "post", "patch", "put", "delete")


@dataclass(frozen=True)
class FieldSpec:
    single: tuple = ()
    list: tuple = ()
    none: tuple = ()
    type: str = "string"  # string | datetime | boolean | number | integer
    enum: tuple = ()


@dataclass(frozen=True)
class Endpoint:
    op: str
    rtype: str  # JSON:API type of the primary data
    burst: int  # per second
    steady: int  # per minute
    daily: int = 0
    page: tuple | None = None  # (default, min, max)
    filters: dict = field(default_factory=dict)
    sorts: tuple = ()
    includes: tuple = ()
    additional: tuple = ()  # allowed additional-fields values for rtype
    filter_required: bool = False


def _operations(spec: dict) -> dict[str, dict]:
    return {
        op["operationId"]: op
        for item in spec["paths"].values()
        for method, op in item.items()
        if method in HTTP_METHODS and isinstance(op, dict)
    }


def _resolve(spec: dict, schema: dict) -> dict:
    """A schema with its $ref followed and the parts of an ``allOf`` merged (properties joined)."""
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if "allOf" in schema:
        merged: dict = {"properties": {}}
        for part in schema["allOf"]:
            part = _resolve(spec, part)
            merged["properties"] = {**part.get("properties", {}), **merged["properties"]}
        return merged
    return schema


def _param_enum(op: dict, name: str) -> tuple:
    """The values a query parameter's schema enumerates (array items or a plain enum), in spec order."""
    for param in op.get("parameters", []):
        if param.get("name") == name:
            schema = param.get("schema", {})
            return tuple(schema.get("items", schema).get("enum", ()))
    return ()


def _param(op: dict, name: str) -> dict | None:
    return next((p for p in op.get("parameters", []) if p.get("name") == name), None)


def _resource_type(spec: dict, op: dict) -> str:
    """The ``type`` of the primary data: of the success answer, else of the request body (204 writes);
    "" for an operation without either (delete_list)."""
    bodies = [r.get("content", {}) for code, r in op.get("responses", {}).items() if code.startswith("2")]
    bodies.append(op.get("requestBody", {}).get("content", {}))
    for content in bodies:
        if not content:
            continue
        document = _resolve(spec, next(iter(content.values()))["schema"])
        data = _resolve(spec, document.get("properties", {}).get("data", {}))
        data = _resolve(spec, data.get("items", data))
        kind = _resolve(spec, data.get("properties", {}).get("type", {}))
        if kind.get("enum"):
            return kind["enum"][0]
    return ""


def _field_type(value: dict) -> str:
    if value.get("format") == "date-time":
        return "datetime"
    return value.get("type", "string")


def _filters(op: dict) -> dict[str, FieldSpec]:
    out = {}
    for name, spec in (op.get("x-klaviyo-filters") or {}).items():
        operators, value = spec.get("operators", {}), spec.get("value", {})
        out[name] = FieldSpec(
            single=tuple(operators.get("single", ())),
            list=tuple(operators.get("list", ())),
            none=tuple(operators.get("none", ())),
            type=_field_type(value),
            enum=tuple(value.get("enum", ())),
        )
    return out


def _page(op: dict) -> tuple | None:
    size = _param(op, "page[size]")
    if size is None:
        return None
    schema = size["schema"]
    return schema["default"], schema.get("minimum", 1), schema["maximum"]


def _endpoint(spec: dict, core: core_endpoints.Endpoint, op: dict) -> Endpoint:
    filter_param = _param(op, "filter")
    rtype = _resource_type(spec, op)
    return Endpoint(
        op=core.operation_id,
        rtype=rtype,
        burst=core.burst_per_second,
        steady=core.steady_per_minute,
        daily=core.daily or 0,
        page=_page(op),
        filters=_filters(op),
        sorts=tuple(s for s in _param_enum(op, "sort") if not s.startswith("-")),
        includes=_param_enum(op, "include"),
        additional=_param_enum(op, f"additional-fields[{rtype}]"),
        filter_required=bool(filter_param and filter_param.get("required")),
    )


def _secondary_limits(operations: dict[str, dict]) -> dict[str, tuple[int, int]]:
    """Lower limits the descriptions quote for one additional field (predictive_analytics, profile_count):
    "Rate limits when using the `additional-fields[profile]=predictive_analytics` parameter ...:
    Burst: `10/s` Steady: `150/m`"."""
    quoted = re.compile(r"`additional-fields\[[\w-]+\]=(\w+)` parameter[^:]*:<br>Burst: `(\d+)/s`<br>Steady: `(\d+)/m`")
    found: dict[str, tuple[int, int]] = {}
    for op in operations.values():
        for name, burst, steady in quoted.findall(op.get("description", "")):
            found[name] = (int(burst), int(steady))
    return found


def _page_without_size(operations: dict[str, dict]) -> int:
    """get_metrics takes no page[size]; its description says "Returns a maximum of 200 results per page"."""
    found = re.search(r"maximum of (\d+) results per page", operations["get_metrics"]["description"])
    if found is None:
        raise ValueError("get_metrics' description no longer states its page size")
    return int(found.group(1))


def _load() -> tuple[dict[str, Endpoint], dict[str, tuple[int, int]], int]:
    spec = json.loads(SPEC.read_text(encoding="utf-8"))
    operations = _operations(spec)
    table = {op: _endpoint(spec, core, operations[op]) for op, core in core_endpoints.endpoints().items()}
    return table, _secondary_limits(operations), _page_without_size(operations)


ENDPOINTS, SLOW_ADDITIONAL, METRICS_PAGE = _load()
