"""The one in-process mock: collections of chosen records behind requests-mock, for the tap's unit tests.

Everything else talks to the loopback sandbox (docs/testing.md); this mock stays because the tap's unit
tests serve records of exactly the shapes they choose (custom fields, odd types, included resources),
which the sandbox's generated data cannot. It serves JSON:API collections with cursor pagination
(``links.next`` carries every original parameter), filters with the sandbox's filter language (parsed
and checked against the spec's allowed fields and operators, a 400 otherwise, as Klaviyo answers),
hides archived campaigns and flows as the sandbox does, sorts, and keeps every request for assertions.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import typing as t
from urllib.parse import parse_qs, urlencode, urlsplit

import requests_mock

from klaviyo_core import endpoints
from klaviyo_sandbox import filters
from klaviyo_sandbox.api import hide_archived
from klaviyo_sandbox.endpoints import ENDPOINTS

BASE_URL = "https://a.klaviyo.com"


def ts(day: int, hour: int = 0, second: int = 0) -> str:
    """A Klaviyo timestamp on a day of January 2024."""
    return dt.datetime(2024, 1, day, hour, 0, second, tzinfo=dt.timezone.utc).isoformat()


def _field(resource: dict, name: str) -> t.Any:
    """The value a filter on ``name`` reads: an attribute, a related id (``coupon.id``), or the channel."""
    if name == "messages.channel":
        return resource.get("_channel")
    related, _, key = name.rpartition(".")
    if key == "id" and related in (resource.get("relationships") or {}):
        return (resource["relationships"][related].get("data") or {}).get("id")
    return (resource.get("attributes") or {}).get(name)


def _predicates(path: str, text: str) -> list[tuple[str, t.Callable[[t.Any], bool]]]:
    """(field, test) for each condition of ``filter``, validated as Klaviyo validates it (FilterError)."""
    found = endpoints.match("GET", path)
    if found is None:
        return []
    endpoint = ENDPOINTS[found.operation_id]
    conditions = filters.validate(filters.parse(text), endpoint.filters, endpoint.rtype) if text else []
    return [
        (c.field, filters.compile_cond(c, endpoint.filters[c.field].type == "datetime", fold_case=False))
        for c in hide_archived(found.operation_id, conditions)
    ]


#: A scope probe: one item of a collection (see klaviyo_core.scopes).
PROBE = re.compile(
    re.escape(BASE_URL) + r"/api/[a-z-]+\?(?:filter=[^&]*&)?(?:page%5Bsize%5D=1|fields%5Bmetric%5D=name)$"
)


class FakeKlaviyo:
    """Collections keyed by path; ``page_cap`` forces small pages to test pagination."""

    def __init__(self, mocker: requests_mock.Mocker, page_cap: int | None = None) -> None:
        self.collections: dict[str, list[dict]] = {}
        self.included: dict[str, list[dict]] = {}
        self.page_cap = page_cap
        self.mocker = mocker
        self.failures: list[tuple[int, dict[str, str], t.Any, str | None]] = []
        mocker.get(re.compile(re.escape(BASE_URL) + r"/api/.*"), text=self._serve_text)
        # The tap's scope probes (klaviyo_core.scopes) are answered apart: they neither take an
        # injected failure nor count among a sync's requests. Registered last, so matched first.
        mocker.get(PROBE, text=self._serve_probe)
        self.probes = 0

    def add(self, path: str, *resources: dict) -> None:
        self.collections.setdefault(path, []).extend(resources)

    def include(self, path: str, *resources: dict) -> None:
        """Resources the collection at ``path`` returns as ``included`` when asked to include any."""
        self.included.setdefault(path, []).extend(resources)

    def fail_next(
        self, status: int, headers: dict[str, str] | None = None, body: t.Any = None, *, path: str | None = None
    ) -> None:
        """Answer the next request (to ``path``, when given) with this failure instead of data.

        With ``path`` the failure waits for its request, whatever the tap fetches ahead meanwhile.
        """
        self.failures.append((status, headers or {}, body, path))

    @property
    def requests(self) -> list[t.Any]:
        return [r for r in self.mocker.request_history if r.url.startswith(BASE_URL) and not PROBE.search(r.url)]

    def _serve_probe(self, request: t.Any, context: t.Any) -> str:
        self.probes += 1
        return json.dumps({"data": [], "links": {"self": request.url}})

    def params(self, index: int = 0) -> dict[str, str]:
        """The decoded query of one recorded request."""
        query = parse_qs(urlsplit(self.requests[index].url).query)
        return {k: v[0] for k, v in query.items()}

    def _serve_text(self, request: t.Any, context: t.Any) -> str:
        body = self._serve(request, context)
        return body if isinstance(body, str) else json.dumps(body)

    def _serve(self, request: t.Any, context: t.Any) -> t.Any:
        path = urlsplit(request.url).path
        failure = next((f for f in self.failures if f[3] in (None, path)), None)
        if failure is not None:
            self.failures.remove(failure)
            context.status_code, headers, body, _ = failure
            context.headers.update(headers)
            return (
                body
                if body is not None
                else {"errors": [{"id": "x", "code": "error", "title": "Error", "detail": "injected failure"}]}
            )
        params = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
        try:
            items = self._select(self.collections.get(path, []), path, params)
        except filters.FilterError as exc:
            context.status_code = 400
            return {"errors": [{"id": "x", "code": "invalid", "title": "Invalid input.", "detail": str(exc)}]}
        size = int(params.get("page[size]", 20))
        if self.page_cap:
            size = min(size, self.page_cap)
        offset = int(base64.b64decode(params["page[cursor]"]).decode()) if "page[cursor]" in params else 0
        page = [{k: v for k, v in r.items() if not k.startswith("_")} for r in items[offset : offset + size]]
        links: dict[str, t.Any] = {"self": request.url, "next": None}
        if offset + size < len(items):
            following = {**params, "page[cursor]": base64.b64encode(str(offset + size).encode()).decode()}
            links["next"] = f"{BASE_URL}{path}?{urlencode(following)}"
        if "include" in params and path in self.included:
            return {"data": page, "links": links, "included": self.included[path]}
        return {"data": page, "links": links}

    @staticmethod
    def _select(items: list[dict], path: str, params: dict[str, str]) -> list[dict]:
        for name, test in _predicates(path, params.get("filter", "")):
            items = [r for r in items if test(_field(r, name))]
        sort = params.get("sort")
        if sort:
            key = sort.lstrip("-")
            items = sorted(items, key=lambda r: r["attributes"].get(key) or "", reverse=sort.startswith("-"))
        return items


# -- resources shaped like Klaviyo's -----------------------------------------------


def resource(type_: str, id_: str, attributes: dict, relationships: dict | None = None, **private: t.Any) -> dict:
    doc = {"type": type_, "id": id_, "attributes": attributes, "links": {"self": f"{BASE_URL}/api/{type_}s/{id_}/"}}
    if relationships is not None:
        doc["relationships"] = relationships
    doc.update({f"_{k}": v for k, v in private.items()})
    return doc


def to_one(type_: str, id_: str) -> dict:
    return {"data": {"type": type_, "id": id_}, "links": {"self": "x", "related": "y"}}


def to_many(type_: str, *ids: str) -> dict:
    return {"data": [{"type": type_, "id": i} for i in ids], "links": {"self": "x", "related": "y"}}


def event(id_: str, when: str) -> dict:
    return resource(
        "event",
        id_,
        {
            "timestamp": int(dt.datetime.fromisoformat(when).timestamp()),
            "event_properties": {"value": 9.5, "sku": "A1"},
            "datetime": when,
            "uuid": f"uuid-{id_}",
        },
        {"profile": to_one("profile", "p1"), "metric": to_one("metric", "m1"), "attributions": to_many("attribution")},
    )


def profile(id_: str, updated: str, **extra: t.Any) -> dict:
    attributes = {
        "email": f"{id_}@example.com",
        "phone_number": None,
        "external_id": None,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "organization": None,
        "locale": None,
        "title": None,
        "image": None,
        "created": ts(1),
        "updated": updated,
        "last_event_date": None,
        "location": {"city": "London", "country": "UK", "latitude": 51.5, "longitude": "-0.1", "ip": None},
        "properties": {"plan": "pro", "orders": 3},
        "subscriptions": {"email": {"marketing": {"can_receive_email_marketing": True, "consent": "SUBSCRIBED"}}},
        **extra,
    }
    return resource("profile", id_, attributes)


def campaign(id_: str, updated: str, channel: str, *, archived: bool = False) -> dict:
    return resource(
        "campaign",
        id_,
        {
            "name": f"Campaign {id_}",
            "status": "Sent",
            "archived": archived,
            "audiences": {"included": ["L1"], "excluded": []},
            "send_options": {"use_smart_sending": True},
            "tracking_options": None,
            "send_strategy": {"method": "static", "datetime": updated},
            "created_at": ts(1),
            "scheduled_at": None,
            "updated_at": updated,
            "send_time": None,
        },
        {"campaign-messages": to_many("campaign-message", f"cm-{id_}"), "tags": to_many("tag")},
        channel=channel,
    )


def simple(type_: str, id_: str, updated: str, **attributes: t.Any) -> dict:
    return resource(type_, id_, {"name": f"{type_} {id_}", "created": ts(1), "updated": updated, **attributes})


def review(id_: str, created: str, updated: str) -> dict:
    return resource(
        "review",
        id_,
        {
            "email": "r@example.com",
            "status": {"value": "published"},
            "verified": True,
            "review_type": "review",
            "created": created,
            "updated": updated,
            "images": [],
            "product": {"url": "u", "name": "n", "image_url": None},
            "rating": 5,
            "author": "R",
            "content": "Great",
            "title": "T",
            "smart_quote": None,
            "public_reply": None,
        },
        {"events": to_many("event"), "item": to_one("catalog-item", "ci1")},
    )


def member(id_: str, joined: str) -> dict:
    return resource("profile", id_, {"joined_group_at": joined})
