"""The base stream: all HTTP behaviour of the tap, plugged into the SDK's hooks."""

from __future__ import annotations

import datetime as dt
import json
import typing as t
from importlib import resources

from singer_sdk import RESTStream
from singer_sdk.pagination import BaseHATEOASPaginator
from singer_sdk.streams.rest import HTTPRequest

from klaviyo_core import endpoints, filters
from klaviyo_core.errors import json_document, raise_for_response

if t.TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context
    from singer_sdk.streams.rest import PageContext

    from klaviyo_core.client import KlaviyoConnection

ONE_SECOND = dt.timedelta(seconds=1)


def load_schema(name: str) -> dict:
    """A stream's schema as generated from the official spec."""
    return json.loads(resources.files("tap_klaviyo").joinpath(f"schemas/{name}.json").read_text())


def flatten(resource: dict) -> dict:
    """A JSON:API resource as one flat record: id, attributes, relationship ids."""
    record = {"id": resource["id"], **(resource.get("attributes") or {})}
    for name, relationship in (resource.get("relationships") or {}).items():
        if not isinstance(relationship, dict) or "data" not in relationship:
            continue
        data, key = relationship["data"], name.replace("-", "_")
        if isinstance(data, list):
            record[key.removesuffix("s") + "_ids"] = [item["id"] for item in data]
        else:
            record[key + "_id"] = data["id"] if data else None
    return record


class NextLinkPaginator(BaseHATEOASPaginator):
    """Klaviyo's cursor pagination: the next page is ``links.next``, used verbatim.

    ``stop`` lets a stream end early once it has read all it needs.
    """

    def __init__(self, stop: t.Callable[[], bool] | None = None) -> None:
        super().__init__()
        self._stop = stop

    def has_more(self, response: requests.Response) -> bool:
        return not (self._stop and self._stop())

    def get_next_url(self, response: requests.Response) -> str | None:
        return (json_document(response).get("links") or {}).get("next")


class Window(t.NamedTuple):
    """A replication-key range one pass of requests covers: [lower, upper)."""

    lower: dt.datetime | None
    upper: dt.datetime | None


class KlaviyoStream(RESTStream):
    """A Klaviyo collection endpoint.

    Subclasses declare the operation, sort and replication key; this class builds
    the filter, follows ``links.next``, flattens resources and routes every request
    through the shared Klaviyo connection (pacing, retries, error mapping).
    """

    operation_id: t.ClassVar[str]
    primary_keys: t.ClassVar[tuple[str, ...]] = ("id",)
    sort: t.ClassVar[str | None] = None
    #: Klaviyo accepts only ``greater-than`` on some keys; those get a 1 s lookback.
    lower_bound_operator: t.ClassVar[str] = "greater-or-equal"
    #: Whether the endpoint can filter ``less-than`` on the replication key.
    bounded_above: t.ClassVar[bool] = True
    extra_params: t.ClassVar[dict[str, str]] = {}

    def __init__(self, tap: t.Any, schema: dict | None = None, name: str | None = None) -> None:
        super().__init__(tap, name=name, schema=schema or load_schema(name or self.name))
        self._window = Window(None, None)

    # -- connection plumbing ------------------------------------------------------

    @property
    def connection(self) -> KlaviyoConnection:
        return self._tap.connection

    @property
    def path(self) -> str:  # type: ignore[override]
        return endpoints.endpoint(self.operation_id).path

    @property
    def url_base(self) -> str:
        return self.connection.base_url

    @property
    def http_headers(self) -> dict:
        return self.connection.headers

    @property
    def authenticator(self) -> t.Any:
        return self.connection.auth

    @property
    def timeout(self) -> t.Any:  # (connect, read) pair; requests accepts both forms
        return self.connection.timeout

    def request_decorator(self, func: t.Callable) -> t.Callable:
        return self.connection.wrap(func)

    def validate_response(self, response: requests.Response) -> None:
        raise_for_response(response, required_scopes=endpoints.endpoint(self.operation_id).scopes)
        json_document(response)

    def get_new_paginator(self) -> NextLinkPaginator:
        return NextLinkPaginator()

    # -- requests ---------------------------------------------------------------------

    def get_http_request(self, *, page: PageContext) -> HTTPRequest:
        if page.next_page_token:  # links.next already carries filter, sort and cursor
            return HTTPRequest(url=page.next_page_token.geturl(), headers=self.http_headers)
        return super().get_http_request(page=page)

    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict[str, t.Any]:
        params: dict[str, t.Any] = {**self.extra_params}
        page_size = endpoints.page_size_max(self.operation_id)
        if page_size:
            params["page[size]"] = page_size
        if self.sort:
            params["sort"] = self.sort
        expression = filters.combine(*self.filter_conditions(context))
        if expression:
            params["filter"] = expression
        return params

    def filter_conditions(self, context: Context | None) -> list[str | None]:
        """Conditions ANDed into ``filter``; the base adds the replication window."""
        if not self.replication_key:
            return []
        lower, upper = self._window
        if lower and self.lower_bound_operator == "greater-than":
            lower -= ONE_SECOND  # keeps records that share the bookmark's second
        return [
            filters.condition(self.lower_bound_operator, self.replication_key, lower) if lower else None,
            filters.condition("less-than", self.replication_key, upper)
            if upper and self.bounded_above
            else None,
        ]

    def parse_response(self, response: requests.Response) -> t.Iterable[dict]:
        for resource in json_document(response).get("data") or []:
            yield self.to_record(resource)

    def to_record(self, resource: dict) -> dict:
        return flatten(resource)

    # -- incremental windows --------------------------------------------------------

    @property
    def end_date(self) -> dt.datetime | None:
        return self._tap.end_date

    def run_started_at(self, context: Context | None) -> dt.datetime:
        return self.get_replication_key_signpost(context)  # frozen when the stream starts

    def get_starting_timestamp(self, context: Context | None) -> dt.datetime | None:
        start = super().get_starting_timestamp(context)
        # A bookmark past the run's start can only come from a run killed while it
        # emitted future-dated records (complete runs cap it); everything before
        # that bookmark was emitted, so resuming at the run's start loses nothing.
        now = self.run_started_at(context)
        return min(start, now) if start else start

    def windows(self, context: Context | None) -> list[Window]:
        """The passes one sync makes over the replication key.

        The main pass stops at the run's start (or ``end_date``). Records dated after
        the run started (future-dated ones exist in Klaviyo) are fetched by a tail pass
        whose values never advance the bookmark past the run's start.
        """
        start = self.get_starting_timestamp(context)
        if not self.replication_key:
            return [Window(None, None)]
        if self.end_date:
            return [Window(start, self.end_date)]
        if not (self.is_sorted and self.bounded_above):
            return [Window(start, None)]  # the SDK caps unsorted bookmarks at the run start
        now = self.run_started_at(context)
        return [Window(start, now), Window(now, None)]

    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        for window in self.windows(context):
            self._window = window
            for record in self.request_records(context):
                if self.in_window(record, window):
                    yield record
        self._cap_bookmark_at_run_start(context)

    def in_window(self, record: dict, window: Window) -> bool:
        """Drop what a lookback or an unbounded endpoint returned outside the window."""
        if not self.replication_key:
            return True
        value = _parse(record.get(self.replication_key))
        if value is None:
            return window.lower is None
        if window.lower and value < window.lower:
            return False
        return not (window.upper and value >= window.upper)

    def _cap_bookmark_at_run_start(self, context: Context | None) -> None:
        if not (self.replication_key and self.is_sorted):
            return
        state = self.get_context_state(context)
        bookmark = _parse(state.get("replication_key_value"))
        cap = self.end_date or self.run_started_at(context)
        if bookmark and bookmark > cap:
            state["replication_key_value"] = cap.isoformat()


def _parse(value: t.Any) -> dt.datetime | None:
    if not value:
        return None
    if isinstance(value, dt.datetime):
        return _as_utc(value)
    return _as_utc(dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")))


def _as_utc(value: t.Any) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)
