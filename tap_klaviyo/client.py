"""The base stream: all HTTP behaviour of the tap, plugged into the SDK's hooks.

Streams marked ``parallel`` read their window as slices fetched by several threads
(see :mod:`tap_klaviyo.concurrency`) when ``max_concurrency`` is above 1; the others,
and every stream at ``max_concurrency`` 1, read one page at a time through the SDK's
own request loop. Both give the same records in the same order.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import typing as t
from functools import cached_property
from importlib import resources

import requests
from singer_sdk import RESTStream
from singer_sdk.helpers._util import utc_now
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.pagination import BaseHATEOASPaginator
from singer_sdk.singerlib import RecordMessage
from singer_sdk.streams.rest import HTTPRequest, PageContext
from typing_extensions import override

from klaviyo_core import endpoints, filters
from klaviyo_core.client import decode_document
from klaviyo_core.errors import raise_for_response
from klaviyo_core.settings import DEFAULT_MAX_CONCURRENCY
from tap_klaviyo.concurrency import Page, ParallelReader, Progress, Slice, tune_gc
from tap_klaviyo.records import fetch_records

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

    from klaviyo_core.client import KlaviyoConnection
    from tap_klaviyo.tap import TapKlaviyo

ONE_SECOND = dt.timedelta(seconds=1)
#: Records between STATE messages when the endpoint has no page size (Klaviyo's usual page).
DEFAULT_STATE_EVERY = 100
#: A pass of the parallel reader: (context key, index of the window in that context).
PassId = tuple[str, int]
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

    @override
    def has_more(self, response: requests.Response) -> bool:
        return not (self._stop and self._stop())

    @override
    def continue_if_empty(self, response: requests.Response) -> bool:
        """An empty page can still have a ``links.next``: follow it.

        The SDK would otherwise stop the stream at the first empty page and drop the rest.
        ``advance`` still ends at a page without ``links.next``.
        """
        return True

    @override
    def get_next_url(self, response: requests.Response) -> str | None:
        return (decode_document(response).get("links") or {}).get("next")


class Window(t.NamedTuple):
    """A replication-key range one pass of requests covers: [lower, upper)."""

    lower: dt.datetime | None
    upper: dt.datetime | None


_NO_WINDOW = Window(None, None)


class KlaviyoStream(RESTStream):
    """A Klaviyo collection endpoint.

    Subclasses declare the operation, sort and replication key; this class builds
    the filter, follows ``links.next``, flattens resources and routes every request
    through the shared Klaviyo connection (pacing, retries, error mapping).
    """

    # Klaviyo's JSON holds JSON types only, and ``post_process`` drops root keys the
    # schema lacks: the SDK's value-by-value conforming would change nothing, and it
    # cost a tenth of the tap's CPU per record.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    if t.TYPE_CHECKING:
        _tap: TapKlaviyo  # the SDK's type is Tap; these streams run in TapKlaviyo only

    operation_id: t.ClassVar[str]
    primary_keys: t.ClassVar[tuple[str, ...]] = ("id",)
    sort: t.ClassVar[str | None] = None
    #: Klaviyo accepts only ``greater-than`` on some keys; those get a 1 s lookback.
    lower_bound_operator: t.ClassVar[str] = "greater-or-equal"
    #: Whether the endpoint can filter ``less-than`` on the replication key.
    bounded_above: t.ClassVar[bool] = True
    extra_params: t.ClassVar[dict[str, str]] = {}
    #: Read slices of the window in parallel (needs ``sort`` ascending on the slice key,
    #: and filters ``lower_bound_operator``/``less-than`` on it).
    parallel: t.ClassVar[bool] = False
    #: The key slices are cut on: the replication key, else this (full-table streams).
    slice_key: t.ClassVar[str | None] = None

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
        self._local = threading.local()  # the window a thread is building requests for
        super().__init__(tap, name=name, schema=schema or load_schema(name or self.name))
        self._reader: ParallelReader | None = None
        self._pass_contexts: dict[t.Hashable, Context | None] = {}
        self._pass_windows: dict[t.Hashable, Window] = {}
        self._progress: Progress | None = None
        self._unknown_keys_warned = False
        # Per pass context: the bookmark a run with a lookback resumes from (see _increment_stream_state).
        self._resumed_from: dict[str, dt.datetime] = {}

    # -- connection plumbing ------------------------------------------------------

    @property
    def connection(self) -> KlaviyoConnection:
        return self._tap.connection

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

    @override
    @property
    def authenticator(self) -> t.Any:
        return self.connection.auth

    @override
    @property
    def timeout(self) -> t.Any:  # (connect, read) pair; requests accepts both forms
        return self.connection.timeout

    @override
    @property
    def requests_session(self) -> requests.Session:
        return self.connection.session  # this thread's; trusts REQUESTS_CA_BUNDLE

    @override
    def request_decorator(self, func: t.Callable) -> t.Callable:
        return self.connection.wrap(func)

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
    def validate_response(self, response: requests.Response) -> None:
        raise_for_response(response, required_scopes=endpoints.endpoint(self.operation_id).scopes)
        decode_document(response)

    @override
    def get_new_paginator(self) -> NextLinkPaginator:
        return NextLinkPaginator()

    # -- requests ---------------------------------------------------------------------

    @property
    def _window(self) -> Window:
        """The window the current thread builds requests for (each worker has its own)."""
        return getattr(self._local, "window", _NO_WINDOW)

    @_window.setter
    def _window(self, window: Window) -> None:
        self._local.window = window

    @property
    def range_key(self) -> str | None:
        """The key windows and slices bound: the replication key, else ``slice_key``."""
        return self.replication_key or self.slice_key

    @override
    def get_http_request(self, *, page: PageContext) -> HTTPRequest:
        if page.next_page_token:  # links.next already carries filter, sort and cursor
            return HTTPRequest(url=page.next_page_token.geturl(), headers=self.http_headers)
        return super().get_http_request(page=page)

    @override
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
        key = self.range_key
        if not key:
            return []
        lower, upper = self._window
        if lower and self.lower_bound_operator == "greater-than":
            lower -= ONE_SECOND  # keeps records that share the bookmark's second
        return [
            filters.condition(self.lower_bound_operator, key, lower) if lower else None,
            filters.condition("less-than", key, upper) if upper and self.bounded_above else None,
        ]

    @override
    def parse_response(self, response: requests.Response) -> t.Iterable[dict]:
        for resource in decode_document(response).get("data") or []:
            yield self.to_record(resource)

    def to_record(self, resource: dict) -> dict:
        return flatten(resource)

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
    def _generate_record_messages(self, record: dict) -> t.Generator[RecordMessage, None, None]:
        """The SDK's (0.54), minus two walks through every record that change nothing here.

        When the catalog deselects no property, the SDK's search of each record for
        deselected properties (a fifth of the tap's CPU per event) finds none; and
        with ``TYPE_CONFORMANCE_LEVEL`` NONE its conforming returns the record as is.
        Stream maps (including flattening) still transform every record.
        """
        if not self._nothing_to_prune:
            yield from super()._generate_record_messages(record)
            return
        for stream_map in self.stream_maps:
            mapped = stream_map.transform(record)
            if mapped is not None:
                yield RecordMessage(
                    stream=stream_map.stream_alias,
                    record=mapped,
                    version=self._stream_version,
                    time_extracted=utc_now(),
                )

    @override
    def generate_child_contexts(self, record: dict, context: Context | None) -> t.Iterable[Context | None]:
        """None without child streams: the SDK would otherwise copy the context per record."""
        if not self.child_streams:
            return ()
        return super().generate_child_contexts(record, context)

    @cached_property
    def _nothing_to_prune(self) -> bool:
        """No property deselected, and no conforming to do."""
        if self.TYPE_CONFORMANCE_LEVEL != TypeConformanceLevel.NONE:
            return False
        return all(selected for breadcrumb, selected in self.mask.items() if breadcrumb)

    # -- incremental windows --------------------------------------------------------

    @property
    def end_date(self) -> dt.datetime | None:
        return self._tap.end_date

    def run_started_at(self, context: Context | None) -> dt.datetime:
        # frozen when the stream starts; a timestamp for these replication keys (the SDK types it loosely)
        return t.cast("dt.datetime", self.get_replication_key_signpost(context))

    @override
    def get_starting_timestamp(self, context: Context | None) -> dt.datetime | None:
        start = super().get_starting_timestamp(context)
        # A bookmark past the run's start can only come from a run killed while it
        # emitted future-dated records (complete runs cap it); everything before
        # that bookmark was emitted, so resuming at the run's start loses nothing.
        now = self.run_started_at(context)
        return min(start, now) if start else start

    @property
    def lookback(self) -> dt.timedelta:
        """How far before its bookmark an incremental run starts reading (none by default)."""
        return dt.timedelta(0)

    def _lower_bound(self, context: Context | None) -> dt.datetime | None:
        """Where the run starts reading: the bookmark (or start_date), minus the lookback.

        The lookback applies only to a bookmark of an earlier run and never reaches
        before ``start_date``. What it re-reads is emitted again (the warehouse keeps
        one row per ``id``) but never moves the bookmark back.
        """
        start = self.get_starting_timestamp(context)
        if not (start and self.lookback and self.get_context_state(context).get("replication_key_value")):
            return start  # no lookback, or a first run (from start_date)
        self._resumed_from[_context_key(context)] = start
        lower = start - self.lookback
        start_date = _parse(self.config.get("start_date"))
        return max(lower, start_date) if start_date else lower

    @override
    def _increment_stream_state(self, latest_record: dict, *, context: Context | None = None) -> None:
        """The SDK's, except for records a lookback re-read from before the bookmark.

        The bookmark already covers them: skipping them keeps it from moving back (and
        a sorted stream from failing its sort check). Records come in order, so the
        check stops at the first record at or after the bookmark.
        (Private SDK hook, 0.54: tests/tap/test_lookback.py covers it.)
        """
        key = _context_key(context)
        resumed_from = self._resumed_from.get(key)
        if resumed_from is not None:
            value = _parse(latest_record.get(self.replication_key))
            if value is not None and value < resumed_from:
                return
            del self._resumed_from[key]
        super()._increment_stream_state(latest_record, context=context)

    def windows(self, context: Context | None) -> list[Window]:
        """The passes one sync makes over the replication key.

        The main pass stops at the run's start (or ``end_date``). Records dated after
        the run started (future-dated ones exist in Klaviyo) are fetched by a tail pass
        whose values never advance the bookmark past the run's start.
        """
        if not self.replication_key:
            return [Window(None, None)]
        start = self._lower_bound(context)
        if self.end_date:
            return [Window(start, self.end_date)]
        if not (self.is_sorted and self.bounded_above):
            return [Window(start, None)]  # the SDK caps unsorted bookmarks at the run start
        now = self.run_started_at(context)
        return [Window(start, now), Window(now, None)]

    @override
    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        tune_gc()
        if self._progress is None:
            self._progress = Progress(
                self.name, self.logger, interval=PROGRESS_INTERVAL, counters=self._progress_counters
            )
        self._track_window(context)
        if self.reads_in_parallel:
            yield from self._parallel_records(context)
        else:
            yield from self._sequential_records(context)
        self._cap_bookmark_at_run_start(context)

    def _track_window(self, context: Context | None) -> None:
        """Progress lines say how much of the main window is done (sorted incremental streams only)."""
        if self._progress is None or not (self.replication_key and self.is_sorted):
            return
        lower, upper = self.windows(context)[0]
        end = upper or self.end_date or self.run_started_at(context)
        self._progress.window(_epoch_or_none(lower), end.timestamp())

    def _sequential_records(self, context: Context | None) -> t.Iterator[dict]:
        progress = self._progress
        for window in self.windows(context):
            self._window = window
            count = 0
            for record in self.request_records(context):
                if self.in_window(record, window):
                    yield record
                    count += 1
                    if progress and not count % 256:
                        progress.add(256)
                        if self.replication_key and self.is_sorted:
                            progress.at(self._sort_key_seconds(record))
                        progress.tick()
            if progress:
                progress.add(count % 256)

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

    # -- parallel reads (see tap_klaviyo.concurrency) --------------------------------

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

    def _parallel_records(self, context: Context | None) -> t.Iterator[dict]:
        reader, passes = self._reader_for(context)
        progress = self._progress
        heartbeat = progress.tick if progress else None
        finished = False
        try:
            with self.get_http_request_counter() as counter:
                counter.with_context(context)
                for pass_id, window in passes:
                    lower, upper = _epoch_or_none(window.lower), _epoch_or_none(window.upper)
                    for page in reader.pages(pass_id, heartbeat=heartbeat):
                        counter.increment()
                        if progress:
                            progress.add(len(page.records))
                            if self.replication_key:
                                progress.at(page.last)
                            progress.tick()
                        if _page_inside(page, lower, upper) or not self.replication_key:
                            yield from page.records
                        else:
                            for record in page.records:
                                if self.in_window(record, window):
                                    yield record
            finished = True
        finally:
            if not finished or not reader.pending_passes():
                self._close_reader()

    def _reader_for(self, context: Context | None) -> tuple[ParallelReader, list[tuple[t.Hashable, Window]]]:
        """The reader whose next pass is this context's, else a new one planned from it.

        For a partitioned stream (one partition per list) the plan runs on to the
        partitions after this one, so their first pages are fetched while this one
        is read.
        """
        key = _context_key(context)
        reader = self._reader
        if reader is not None and not reader.closed:
            pending = reader.pending_passes()
            if pending and t.cast("PassId", pending[0])[0] == key:
                return reader, self._passes_of(key)
            self._close_reader()
        contexts: list[Context | None] = [context]
        partitions = self.partitions if context is not None else None
        if partitions and context in partitions:
            later = partitions[partitions.index(t.cast("dict", context)) + 1 :]
            contexts = [context, *(each for each in later if not self.skips_partition(each))]
        reader = ParallelReader(
            self._fetch_page,
            self._sort_key_seconds,
            workers=self.max_concurrency,
            page_size=endpoints.page_size_max(self.operation_id) or 1,
            horizon=self._slice_horizon(context),
            name=f"{self.name}-fetch",
            logger=self.logger,
        )
        self._pass_contexts, self._pass_windows = {}, {}
        for each in contexts:
            previous = None
            for index, window in enumerate(self.windows(each)):
                pass_id = (_context_key(each), index)
                self._pass_contexts[pass_id] = each
                self._pass_windows[pass_id] = window
                # A tail pass starts when its main pass is fetched (as when reading one page at a time).
                reader.add_pass(pass_id, _epoch_or_none(window.lower), _epoch_or_none(window.upper), after=previous)
                previous = pass_id
        self._reader = reader
        return reader, self._passes_of(key)

    def skips_partition(self, context: Context | None) -> bool:
        """Whether this run does not read the partition (a resumed run skips what was read in full)."""
        return False

    def _passes_of(self, key: str) -> list[tuple[t.Hashable, Window]]:
        return [
            (pass_id, window) for pass_id, window in self._pass_windows.items() if t.cast("PassId", pass_id)[0] == key
        ]

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _slice_horizon(self, context: Context | None) -> float:
        """Unbounded slices are split up to the run's start; past it, one chain reads on."""
        if self.replication_key:
            return self.run_started_at(context).timestamp()
        return self._initialized_at / 1000.0

    def _fetch_page(self, piece: Slice, next_url: str | None) -> Page:
        """One page of a slice (in a worker thread): the slice's first request, or ``next_url``."""
        if next_url is None:
            context = self._pass_contexts[piece.pass_id]
            window = self._pass_windows[piece.pass_id]
            self._window = Window(  # the pass's own bounds exactly where the slice keeps them
                window.lower if piece.lower == _epoch_or_none(window.lower) else _datetime_or_none(piece.lower),
                window.upper if piece.upper == _epoch_or_none(window.upper) else _datetime_or_none(piece.upper),
            )
            http = self.get_http_request(page=PageContext(stream_context=context, next_page_token=None))
            request = requests.Request(http.method, http.url, params=http.encode_params(), headers=http.headers)
        else:
            request = requests.Request("GET", next_url, headers=self.http_headers)
        records, next_url = fetch_records(self.connection, request.prepare(), self.to_record)  # JSON until read
        key = self._sort_key_seconds
        return Page(
            records=records,  # type: ignore[arg-type]  # a Sequence: read once, in order, like the list it was
            next_url=next_url,
            full=len(records) >= (endpoints.page_size_max(self.operation_id) or 1),
            first=key(records[0]) if records else None,
            last=key(records[-1]) if records else None,
        )

    def _sort_key_seconds(self, record: dict) -> float | None:
        value = _parse(record.get(self.range_key))
        return value.timestamp() if value else None

    def _progress_counters(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for stats in self.connection.stats():
            name = str(stats["endpoint"])
            if name != self.operation_id and not name.startswith(self.operation_id + "+"):
                continue
            for field in ("requests", "waits", "waited_seconds", "throttled"):
                totals[field] = totals.get(field, 0) + stats[field]
            totals["steady_per_minute"] = max(totals.get("steady_per_minute", 0), stats["steady_per_minute"])
        if self._reader is not None:
            totals["buffered_pages"] = self._reader.buffered_pages
        return totals


def _context_key(context: Context | None) -> str:
    return json.dumps(context, sort_keys=True, default=str) if context else ""


def _page_inside(page: Page, lower: float | None, upper: float | None) -> bool:
    """Whether a sorted page lies wholly inside [lower, upper)."""
    if page.first is None or page.last is None:
        return False
    return (lower is None or page.first >= lower) and (upper is None or page.last < upper)


def _epoch_or_none(value: dt.datetime | None) -> float | None:
    return value.timestamp() if value else None


def _datetime_or_none(value: float | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(value, tz=dt.timezone.utc) if value is not None else None


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
