"""The base stream: a Klaviyo collection endpoint read page by page.

One request builder (:meth:`KlaviyoStream.build_request`), one page decoder
(:meth:`KlaviyoStream.decode_page`) and one loop over pages (:meth:`KlaviyoStream.get_records`)
serve every stream. The pages come from one of two sources, which give the same
records in the same order:

* a chain of ``links.next`` per window, one request at a time, in this thread; or
* for streams declared ``parallel`` at ``max_concurrency`` above 1, slices of each window
  fetched by worker threads (:mod:`tap_klaviyo.parallel`).

Windows and bookmarks are :mod:`tap_klaviyo.windows`; the singer-sdk internals the
tap relies on are :mod:`tap_klaviyo.sdk_compat`.
"""

from __future__ import annotations

import json
import typing as t
from functools import cached_property
from importlib import resources

import requests
from singer_sdk.helpers.conform import TypeConformanceLevel
from typing_extensions import override

from klaviyo_core import dates, endpoints, filters
from klaviyo_core.settings import DEFAULT_MAX_CONCURRENCY
from tap_klaviyo import records
from tap_klaviyo.concurrency import Page, tune_gc
from tap_klaviyo.parallel import ParallelPages
from tap_klaviyo.progress import Progress
from tap_klaviyo.windows import ONE_SECOND, Window, WindowedStream

if t.TYPE_CHECKING:
    import datetime as dt

    from singer_sdk.helpers.types import Context

    from klaviyo_core.client import KlaviyoConnection
    from tap_klaviyo.tap import TapKlaviyo

#: Records between STATE messages when the endpoint has no page size (Klaviyo's usual page).
DEFAULT_STATE_EVERY = 100
#: Seconds between progress lines in the log while a stream syncs.
PROGRESS_INTERVAL = 15.0


def load_schema(name: str) -> dict:
    """A stream's schema as generated from the official spec."""
    return json.loads(resources.files("tap_klaviyo").joinpath(f"schemas/{name}.json").read_text())


def profile_fields_params(config: t.Mapping[str, t.Any]) -> dict[str, str]:
    """``additional-fields[profile]`` for every stream of profiles: subscriptions, and
    predictive analytics only with ``include_predictive_analytics`` (Klaviyo then
    allows 10/s instead of 75/s; the connection paces it on its own limiter)."""
    fields = ["subscriptions"]
    if config.get("include_predictive_analytics"):
        fields.append("predictive_analytics")
    return {"additional-fields[profile]": ",".join(fields)}


def flatten(resource: dict) -> dict:
    """A JSON:API resource as one flat record: id, attributes, relationship ids."""
    record = {"id": resource["id"], **(resource.get("attributes") or {})}
    for name, relationship in (resource.get("relationships") or {}).items():
        if isinstance(relationship, dict) and "data" in relationship:
            records.add_relationship(record, name, relationship["data"])
    return record


def link_request(url: str, headers: t.Mapping[str, str]) -> requests.PreparedRequest:
    """A GET of a link Klaviyo gave (``links.next``), its URL sent as given.

    What ``requests.Request("GET", url, headers=headers).prepare()`` makes, but for the URL:
    requests parses and re-encodes it character by character in Python (urllib3's
    ``parse_url``), a tenth of a page request's CPU, for a URL Klaviyo has already encoded.
    urllib3 still encodes, when it sends the request, any character a request line cannot
    carry. tests/test_client_requests.py checks both reach a server as the same request.
    """
    request = requests.PreparedRequest()
    request.prepare_method("GET")
    request.url = url
    request.prepare_headers(headers)
    request.prepare_cookies(None)
    request.prepare_body(None, None)
    request.prepare_auth(None, url)
    request.prepare_hooks(None)
    return request


class KlaviyoStream(WindowedStream):
    """A Klaviyo collection endpoint.

    Subclasses declare the operation, sort and replication key; this class builds
    the filter, follows ``links.next``, flattens resources and routes every request
    through the shared Klaviyo connection (pacing, retries, error mapping).
    """

    # Klaviyo's JSON holds JSON types only, and ``post_process`` drops root keys the
    # schema lacks: the SDK's value-by-value conforming would change nothing, and it
    # cost a tenth of the tap's CPU per record.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    operation_id: t.ClassVar[str]
    primary_keys: t.ClassVar[tuple[str, ...]] = ("id",)
    sort: t.ClassVar[str | None] = None
    #: Klaviyo accepts only ``greater-than`` on some keys; those get a 1 s lookback.
    lower_bound_operator: t.ClassVar[str] = "greater-or-equal"
    extra_params: t.ClassVar[dict[str, str]] = {}
    #: Read slices of the window in parallel (needs ``sort`` ascending on the slice key,
    #: and filters ``lower_bound_operator``/``less-than`` on it).
    parallel: t.ClassVar[bool] = False
    #: Whether the tap may fetch this stream's pages ahead, while the streams before it sync
    #: (:mod:`tap_klaviyo.prefetch`); off where contexts take requests to find.
    prefetch_ahead: t.ClassVar[bool] = True

    @override
    def __init_subclass__(cls, **kwargs: t.Any) -> None:
        """A STATE about every page (Klaviyo's largest page of the endpoint), not every 10,000 records.

        A killed run then re-emits at most about a page per slice on resume. A STATE
        costs one short line and a flush per page: nothing next to the page's request.
        """
        super().__init_subclass__(**kwargs)
        operation = cls.__dict__.get("operation_id")
        if operation and "STATE_MSG_FREQUENCY" not in cls.__dict__:
            cls.STATE_MSG_FREQUENCY = endpoints.page_size_max(operation) or DEFAULT_STATE_EVERY

    def __init__(self, tap: t.Any, schema: dict | None = None, name: str | None = None) -> None:
        #: The tap this stream belongs to (the SDK keeps it too, privately).
        self.klaviyo_tap: TapKlaviyo = tap
        super().__init__(tap, name=name, schema=schema or load_schema(name or self.name))
        self._parallel = ParallelPages(self)
        self._progress: Progress | None = None
        self._unknown_keys_warned = False

    # -- where requests go ----------------------------------------------------------

    @property
    def connection(self) -> KlaviyoConnection:
        return self.klaviyo_tap.connection

    @override
    @property
    def path(self) -> str:  # type: ignore[override]
        return endpoints.endpoint(self.operation_id).path

    @override
    @property
    def url_base(self) -> str:
        return self.connection.base_url

    @override
    @property
    def http_headers(self) -> dict:
        return self.connection.headers

    @property
    def required_scopes(self) -> tuple[str, ...]:
        """The read scopes this stream needs, its parent streams' included (from the spec)."""
        scopes: list[str] = []
        stream_type: t.Any = self
        while stream_type is not None:
            scopes += [s for s in endpoints.endpoint(stream_type.operation_id).scopes if s not in scopes]
            stream_type = stream_type.parent_stream_type
        return tuple(scopes)

    @override
    @property
    def end_date(self) -> dt.datetime | None:
        return self.klaviyo_tap.end_date

    # -- one request builder, one page decoder --------------------------------------

    def build_request(self, context: Context | None, window: Window, next_url: str | None) -> requests.PreparedRequest:
        """The request for a window's first page, or for ``next_url`` (``links.next``, used verbatim)."""
        if next_url:  # links.next already carries filter, sort and cursor
            return link_request(next_url, self.http_headers)
        return requests.Request(
            self.http_method,
            self.get_url(context),
            params=self.request_params(context, window),
            headers=self.http_headers,
            json=self.prepare_request_payload(context, None),  # reports: the query is the body
        ).prepare()

    def request_params(self, context: Context | None, window: Window) -> dict[str, t.Any]:
        """Query parameters of a window's first request: page size, sort, filter, ``extra_params``."""
        params: dict[str, t.Any] = {**self.extra_params}
        page_size = endpoints.page_size_max(self.operation_id)
        if page_size:
            params["page[size]"] = page_size
        if self.sort:
            params["sort"] = self.sort
        expression = filters.combine(*self.filter_conditions(context, window))
        if expression:
            params["filter"] = expression
        return params

    def filter_conditions(self, context: Context | None, window: Window) -> list[str | None]:
        """Conditions ANDed into ``filter``; the base bounds the range key to ``window``."""
        key = self.range_key
        if not key:
            return []
        lower, upper = window
        if lower and self.lower_bound_operator == "greater-than":
            lower -= ONE_SECOND  # keeps records that share the bookmark's second
        return [
            filters.condition(self.lower_bound_operator, key, lower) if lower else None,
            filters.condition("less-than", key, upper) if upper and self.bounded_above else None,
        ]

    def fetch_page(self, context: Context | None, window: Window, next_url: str | None = None) -> Page:
        """One page (any thread): the window's first when ``next_url`` is None."""
        request = self.build_request(context, window, next_url)
        prefetch = self.klaviyo_tap.stream_prefetch
        page = prefetch.take(self, request) if prefetch is not None else None
        return page if page is not None else self.send_for_page(request)

    def send_for_page(self, request: requests.PreparedRequest) -> Page:
        """The answer to a request, as a page (any thread)."""
        return self.decode_page(self.connection.send(request, decode=records.decode_page))

    def decode_page(self, response: requests.Response) -> Page:
        """An answer as records, where its chain goes next, and the sort key range of an ordered page."""
        page = records.decode_page(response)  # parsed once, cached on the response
        rows = self.page_records(response)
        ordered = bool(rows) and self.range_key is not None and self.sort == self.range_key
        ordered = ordered and (self.is_sorted or not self.replication_key)
        key = self.sort_key_seconds
        return Page(
            records=rows,
            next_url=page.links.next if page.links else None,
            full=len(page.data) >= (endpoints.page_size_max(self.operation_id) or 1),
            first=key(rows[0]) if ordered else None,
            last=key(rows[-1]) if ordered else None,
            size=len(response.content),  # the records stay this JSON until read
        )

    def page_records(self, response: requests.Response) -> t.Sequence[dict]:
        """The answer's records; a collection's stay JSON until read (:mod:`tap_klaviyo.records`)."""
        page = records.decode_page(response)
        if type(self).to_record is KlaviyoStream.to_record:  # plain flattening: decoded in one pass
            return records.flat_records(page, flatten, response.content)
        return records.lazy_records(page, self.to_record, response.content)

    def sort_key_seconds(self, record: dict) -> float | None:
        return dates.epoch(dates.parse(record.get(self.range_key)))

    @override
    def parse_response(self, response: requests.Response) -> t.Iterable[dict]:
        yield from self.page_records(response)

    def to_record(self, resource: dict) -> dict:
        return flatten(resource)

    # -- the one read loop ------------------------------------------------------------

    @cached_property
    def max_concurrency(self) -> int:
        return int(self.config.get("max_concurrency") or DEFAULT_MAX_CONCURRENCY)

    @property
    def reads_in_parallel(self) -> bool:
        """Parallel when declared, allowed by ``max_concurrency`` and sliceable here."""
        key = self.range_key
        if not (self.parallel and key and self.max_concurrency > 1 and self.sort == key):
            return False
        if not endpoints.page_size_max(self.operation_id):
            return False
        return not self.replication_key or (self.is_sorted and self.bounded_above)

    @override
    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        tune_gc()
        prefetch = self.klaviyo_tap.stream_prefetch
        if prefetch is not None and self.parent_stream_type is None:
            prefetch.reached(self)  # the streams after this one are fetched ahead meanwhile
        progress = self._progress_for(context)
        with self.get_http_request_counter() as counter:
            counter.with_context(context)
            for window, page in self.pages(context):
                counter.increment()
                self.time_extracted = dates.utc_now()  # one time_extracted per page (see sdk_compat)
                progress.add(len(page.records))
                if self.replication_key and self.is_sorted:
                    progress.at(page.last)
                progress.tick()
                if not self.replication_key or window.holds(page.first, page.last):
                    yield from page.records
                else:
                    for record in page.records:
                        if self.in_window(record, window):
                            yield record
        self.cap_bookmark_at_run_start(context)

    def pages(self, context: Context | None) -> t.Iterator[tuple[Window, Page]]:
        """Every page of the context's windows, in order, with the window it belongs to."""
        if self.reads_in_parallel:
            yield from self._parallel.pages(context, heartbeat=self._progress_tick)
            return
        for window in self.windows(context):
            next_url = None
            while True:
                page = self.fetch_page(context, window, next_url)
                yield window, page  # its records are emitted before the next request
                if not page.next_url or not self.reads_on(context):
                    break
                next_url = page.next_url  # an empty page with a links.next goes on as well

    def start_reading_ahead(
        self, context: Context | None, max_bytes: int, windows: t.Callable[[Context | None], list[Window]]
    ) -> None:
        """Start the parallel reader on ``context`` before the SDK syncs this stream (tap_klaviyo.prefetch)."""
        self._parallel.start_ahead(context, max_bytes, windows)

    def stop_reading(self) -> None:
        """Stop the parallel reader, if one runs (the sync is over)."""
        self._parallel.close()

    def reads_on(self, context: Context | None) -> bool:
        """Whether to follow ``links.next`` after the page just emitted (a stream may stop early)."""
        return True

    def reads_whole_chain(self, window: Window) -> bool:
        """Whether a sync reads every page of the window's ``links.next`` chain (none stops early).

        Then the prefetch (:mod:`tap_klaviyo.prefetch`) may fetch them all ahead.
        """
        return type(self).reads_on is KlaviyoStream.reads_on

    def skips_partition(self, context: Context | None) -> bool:
        """Whether this run does not read the partition (a resumed run skips what was read in full)."""
        return False

    # -- records ------------------------------------------------------------------------

    @override
    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        """Drop root keys the schema does not have (what the SDK's conforming did)."""
        known = self._schema_keys
        if not known.issuperset(row):
            unknown = [key for key in row if key not in known]
            for key in unknown:
                del row[key]
            if not self._unknown_keys_warned:
                self._unknown_keys_warned = True
                self.logger.warning(
                    "Stream %s: Klaviyo sent fields the catalog's schema lacks; they are left out: %s",
                    self.name,
                    ", ".join(sorted(unknown)),
                )
        return row

    @cached_property
    def _schema_keys(self) -> frozenset[str]:
        return frozenset(self.effective_schema.get("properties") or ())

    @override
    def generate_child_contexts(self, record: dict, context: Context | None) -> t.Iterable[Context | None]:
        """None without child streams: the SDK would otherwise copy the context per record."""
        if not self.child_streams:
            return ()
        return super().generate_child_contexts(record, context)

    # -- progress lines -------------------------------------------------------------------

    def _progress_for(self, context: Context | None) -> Progress:
        if self._progress is None:
            self._progress = Progress(
                self.name, self.logger, interval=PROGRESS_INTERVAL, counters=self._progress_counters
            )
        if self.replication_key and self.is_sorted:  # how much of the main window is done
            lower, upper = self.windows(context)[0]
            end = upper or self.end_date or self.run_started_at(context)
            self._progress.window(dates.epoch(lower), end.timestamp())
        return self._progress

    def _progress_tick(self) -> None:
        if self._progress is not None:
            self._progress.tick()

    def _progress_counters(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for stats in self.connection.stats():
            name = str(stats["endpoint"])
            if name != self.operation_id and not name.startswith(self.operation_id + "+"):
                continue
            for field in ("requests", "waits", "waited_seconds", "throttled"):
                totals[field] = totals.get(field, 0) + stats[field]
            totals["steady_per_minute"] = max(totals.get("steady_per_minute", 0), stats["steady_per_minute"])
        buffered = self._parallel.buffered_pages
        if buffered is not None:
            totals["buffered_pages"] = buffered
        return totals
