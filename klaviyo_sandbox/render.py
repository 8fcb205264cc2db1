"""JSON:API rendering: resources, relationships, sparse fieldsets, documents, errors."""

from __future__ import annotations

import json
import uuid
from typing import ClassVar

from .gen_events import event_json

MEDIA_TYPE = "application/vnd.api+json"
PLURAL = {
    "profile": "profiles",
    "event": "events",
    "campaign": "campaigns",
    "list": "lists",
    "segment": "segments",
    "flow": "flows",
    "metric": "metrics",
    "review": "reviews",
    "account": "accounts",
    "profile-bulk-import-job": "profile-bulk-import-jobs",
    "profile-suppression-bulk-create-job": "profile-suppression-bulk-create-jobs",
    "profile-suppression-bulk-delete-job": "profile-suppression-bulk-delete-jobs",
    "catalog-item": "catalog-items",
    "campaign-message": "campaign-messages",
    "flow-action": "flow-actions",
    "flow-message": "flow-messages",
    "template": "templates",
    "tag": "tags",
    "tag-group": "tag-groups",
    "catalog-variant": "catalog-variants",
    "catalog-category": "catalog-categories",
    "coupon": "coupons",
    "coupon-code": "coupon-codes",
    "form": "forms",
    "image": "images",
}
dumps = json.JSONEncoder(separators=(",", ":")).encode  # ASCII-escaped: fast join/encode


def resource(rec: dict, base: str, attributes: dict | None = None, fields: list | None = None) -> dict:
    """Render a record. `attributes` overrides the record's (e.g. with additional fields)."""
    rtype, rid = rec["type"], rec["id"]
    attrs = rec["attributes"] if attributes is None else attributes
    if fields is not None:
        attrs = sparse(attrs, fields)
    out = {"type": rtype, "id": rid, "attributes": attrs}
    plural = PLURAL.get(rtype)
    rels = rec.get("relationships")
    if plural is None:  # e.g. import-error: no links in the spec
        return out
    url = f"{base}/api/{plural}/{rid}"
    if rels:
        out["relationships"] = {name: _relationship(url, name, data) for name, data in rels.items()}
    out["links"] = {"self": f"{url}/"}
    return out


def _relationship(url: str, name: str, data) -> dict:
    rel = {} if data is None else {"data": data}
    rel["links"] = {"self": f"{url}/relationships/{name}/", "related": f"{url}/{name}/"}
    return rel


def sparse(attrs: dict, fields: list) -> dict:
    """Sparse fieldset: keep listed attributes; dotted names keep nested keys."""
    out: dict = {}
    for f in fields:
        head, _, rest = f.partition(".")
        if head not in attrs:
            continue
        if rest and isinstance(attrs[head], dict):
            sub = sparse(attrs[head], [rest])
            out[head] = {**out.get(head, {}), **sub} if isinstance(out.get(head), dict) else sub
        else:
            out[head] = attrs[head]
    return out


def resource_json(rec: dict, base: str) -> str:
    """Fast path for default rendering (no sparse fields / additional fields)."""
    if rec["type"] == "event":
        return event_json(rec, base)
    return dumps(resource(rec, base))


def collection_document(items_json: list, links: dict, included: list | None = None) -> bytes:
    """Assemble pre-encoded resources into a collection document."""
    body = '{"data":[' + ",".join(items_json) + '],"links":' + dumps(links)
    if included is not None:
        body += ',"included":' + dumps(included)
    return (body + "}").encode()


def document(data, links: dict | None = None, included: list | None = None) -> bytes:
    doc = {"data": data}
    if links is not None:
        doc["links"] = links
    if included is not None:
        doc["included"] = included
    return dumps(doc).encode()


class ApiError(Exception):
    """Raised by handlers; rendered as a Klaviyo JSON:API error document."""

    TITLES: ClassVar[dict[int, str]] = {
        400: "Invalid input.",
        401: "Authentication credentials were not provided.",
        403: "You do not have permission to perform this action.",
        404: "Not found.",
        405: "Method not allowed.",
        409: "Conflict.",
        413: "Request entity too large.",
        415: "Unsupported media type.",
        429: "Request was throttled.",
        500: "A server error occurred.",
        502: "Bad gateway.",
        503: "Service unavailable.",
        504: "Gateway timeout.",
    }

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        parameter: str | None = None,
        pointer: str | None = None,
        headers: dict | None = None,
        meta: dict | None = None,
    ):
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.parameter, self.pointer = parameter, pointer
        self.headers = headers or {}
        self.meta = meta

    def body(self) -> bytes:
        source = {}
        if self.pointer is not None:
            source["pointer"] = self.pointer
        if self.parameter is not None:
            source["parameter"] = self.parameter
        err = {
            "id": str(uuid.uuid4()),
            "status": self.status,
            "code": self.code,
            "title": self.TITLES.get(self.status, "Error."),
            "detail": self.detail,
            "source": source,
        }
        if self.meta:
            err["meta"] = self.meta
        return dumps({"errors": [err]}).encode()


def bad_request(detail: str, parameter: str | None = None, pointer: str | None = None, code: str = "invalid"):
    return ApiError(400, code, detail, parameter=parameter, pointer=pointer)


def not_found(detail: str = "Not found."):
    return ApiError(404, "not_found", detail)
