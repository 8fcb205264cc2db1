"""Request body validation against the request schemas of Klaviyo's OpenAPI spec.

The schemas are read from the repository's trimmed spec (``spec/klaviyo-openapi-trimmed.json``,
made by ``scripts/generate_from_spec.py`` from the official spec), so the sandbox checks exactly
what the spec says. OpenAPI 3.0 subset: ``$ref``, ``type``, ``nullable``, ``enum``, ``required``,
``properties``, ``items``, ``oneOf``/``anyOf``, ``format: date-time|date``.

Unknown keys in an object whose schema lists its ``properties`` are refused: Klaviyo answers 400
for a field a resource does not have (the spec is silent; this follows Klaviyo's API behaviour of
rejecting invalid fields). Free-form objects (``properties`` of a profile or event) take anything.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path

SPEC = Path(__file__).resolve().parent.parent / "spec" / "klaviyo-openapi-trimmed.json"
_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}


@lru_cache(maxsize=1)
def _spec() -> dict:
    return json.loads(SPEC.read_text(encoding="utf-8"))


def request_schema(operation_id: str) -> dict:
    for item in _spec()["paths"].values():
        for op in item.values():
            if isinstance(op, dict) and op.get("operationId") == operation_id:
                content = op["requestBody"]["content"]
                return next(iter(content.values()))["schema"]
    raise KeyError(operation_id)


def problem(operation_id: str, document) -> tuple[str, str] | None:
    """(JSON pointer, detail) of the first way ``document`` breaks the operation's request schema."""
    return _check(request_schema(operation_id), document, "")


def _resolve(schema: dict) -> dict:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        schema = {**_spec()["components"]["schemas"][name], **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _check(schema: dict, value, pointer: str):
    schema = _resolve(schema)
    if value is None:
        return None if schema.get("nullable") else (pointer or "/", "This field may not be null.")
    for key in ("oneOf", "anyOf"):
        if key in schema:
            found = [_check(branch, value, pointer) for branch in schema[key]]
            if all(found):
                return found[0]
    kind = schema.get("type")
    if kind and not _is_type(kind, value):
        return pointer or "/", f"Expected {kind}, got {type(value).__name__}."
    if "enum" in schema and value not in schema["enum"]:
        return pointer or "/", f"{value!r} is not one of {', '.join(map(repr, schema['enum']))}."
    fmt = schema.get("format")
    if isinstance(value, str) and fmt in ("date-time", "date") and not _parses(fmt, value):
        return pointer, f"{value!r} is not a valid {fmt}."
    if isinstance(value, dict):
        return _check_object(schema, value, pointer)
    if isinstance(value, list) and "items" in schema:
        for k, item in enumerate(value):
            found = _check(schema["items"], item, f"{pointer}/{k}")
            if found:
                return found
    return None


def _check_object(schema: dict, value: dict, pointer: str):
    properties = schema.get("properties")
    for name in schema.get("required", ()):
        if name not in value:
            return f"{pointer}/{name}", f"'{name}' is a required field."
    if properties is None:
        return None  # a free-form object
    for name, item in value.items():
        if name not in properties:
            return f"{pointer}/{name}", f"'{name}' is not a valid field for this resource."
        found = _check(properties[name], item, f"{pointer}/{name}")
        if found:
            return found
    return None


def _is_type(kind: str, value) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    expected = _TYPES.get(kind)
    return expected is None or isinstance(value, expected)


def _parses(fmt: str, value: str) -> bool:
    try:
        if fmt == "date":
            date.fromisoformat(value)
        else:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True
