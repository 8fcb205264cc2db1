"""Validate sandbox responses against Klaviyo's official OpenAPI spec.

OpenAPI 3.0 -> JSON Schema (draft 7) conversion:
  * `nullable: true` becomes a "null" type / enum member, or anyOf[..., null] around $ref/oneOf;
  * `oneOf` becomes `anyOf`: Klaviyo's alternatives overlap (EmailSendOptions, SMSSendOptions and
    PushSendOptions are identical objects), so real responses match several branches;
  * $ref siblings (ignored by draft 7) are preserved by wrapping the $ref in allOf;
  * `format: date-time|date|uri` are checked (stdlib parsers).
"""

from __future__ import annotations

import json
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

# The trimmed official spec the repository holds: every operation the sandbox serves and every schema
# its answers reference (tests/test_spec_sync.py keeps it complete), so these checks run everywhere.
SPEC_PATH = Path(__file__).resolve().parents[2] / "spec" / "klaviyo-openapi-trimmed.json"
DROP = {"description", "example", "examples", "externalDocs", "xml", "readOnly", "writeOnly", "deprecated"}


def convert(node):
    if isinstance(node, list):
        return [convert(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: convert(v) for k, v in node.items() if k not in DROP and not k.startswith("x-")}
    if "oneOf" in out:
        out["anyOf"] = out.pop("oneOf")
    nullable = out.pop("nullable", False)
    if "$ref" in out and len(out) > 1:
        out = {"allOf": [{"$ref": out.pop("$ref")}], **out}
    if nullable:
        if "type" in out and not any(k in out for k in ("anyOf", "allOf", "$ref")):
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = list(out["enum"]) + [None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


# Like jsonschema's own checkers, formats only constrain strings (null is the type's business).
def _date_time(value) -> bool:
    if not isinstance(value, str):
        return True
    if "T" not in value:
        return False
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None
    except ValueError:
        return False


def _date(value) -> bool:
    if not isinstance(value, str):
        return True
    try:
        date.fromisoformat(value)
        return True
    except (TypeError, ValueError):
        return False


def _uri(value) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme and parts.netloc)


@lru_cache(maxsize=1)
def load_spec() -> dict:
    spec = json.loads(SPEC_PATH.read_text())
    return {"paths": spec["paths"], "components": {"schemas": convert(spec["components"]["schemas"])}}


def response_schema(path: str, method: str, status: str) -> dict:
    spec = load_spec()
    content = spec["paths"][path][method]["responses"][status]["content"]
    return convert(content["application/vnd.api+json"]["schema"])


def validator(path: str, method: str = "get", status: str = "200"):
    import jsonschema

    spec = load_spec()
    checker = jsonschema.FormatChecker(formats=())
    checker.checks("date-time")(_date_time)
    checker.checks("date")(_date)
    checker.checks("uri")(_uri)
    schema = {**response_schema(path, method, status), "components": spec["components"]}
    return jsonschema.Draft7Validator(schema, format_checker=checker)


def assert_valid(doc: dict, path: str, method: str = "get", status: str = "200"):
    errors = sorted(validator(path, method, status).iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        msg = "\n".join(f"{list(e.absolute_path)}: {e.message[:300]}" for e in errors[:10])
        raise AssertionError(f"{method.upper()} {path} response violates the spec:\n{msg}")
