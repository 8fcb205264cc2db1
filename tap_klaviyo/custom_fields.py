"""Typed custom fields: profile ``properties`` and event ``event_properties``.

Klaviyo keeps an account's own data in two free-form objects: a profile's
``properties`` and an event's ``event_properties``. With the
``discover_custom_fields`` setting on (the default) the tap types them.

Discovery
    At discovery (``--discover``, or a run started without ``--catalog``) the tap
    reads the ``row_scan_depth`` most recent records (``0``: all of them) of each
    source it needs: profiles by ``-updated``, events by ``-datetime``, through
    the shared connection (paced like every other request, retried on 429/5xx),
    at the largest page size the endpoint allows, asking only for the custom
    field (sparse fieldset). :mod:`tap_klaviyo.inference` infers a JSON schema
    per field: integer, number, boolean, date, date-time, string, object (typed
    recursively), array (with its item type), or ``string`` for a field only ever
    seen null. Conflicting values widen to the narrowest type holding them all
    (integer + number -> number, anything else -> string); every field is
    nullable. A source is scanned at most once per tap instance; profiles and
    every list/segment stream share the profiles scan. The log says how many
    records were scanned and how many fields were found.

Catalog
    The stream's ``properties`` (``event_properties``) schema gets the discovered
    fields as typed sub-properties, sorted by name, so the same data always gives
    the same catalog. A sibling column ``properties_unmapped``
    (``event_properties_unmapped``), a free-form nullable object, is added next
    to it. A loader then creates typed columns, e.g. with the SDK's
    ``flattening_enabled: true`` and ``flattening_max_depth: 1``:
    ``properties__plan`` (string), ``properties__lifetime_orders`` (integer).
    With ``--catalog`` the catalog's schema is used as given: nothing is scanned.

Sync: nothing crashes, nothing is dropped
    Each record's custom-field object goes through one
    :class:`~tap_klaviyo.inference.Conformer` built per stream from the schema the
    run uses (the catalog's, when one is given). Values that fit their field's
    type stay, typed, in ``properties``. A field that discovery never saw, or a
    value that does not fit (``"n/a"`` in an integer field, an unknown key inside
    an object field, an array with one misfitting element), goes untouched into
    ``properties_unmapped`` under its key (a dotted path for nested keys, e.g.
    ``prefs.colour``). ``properties_unmapped`` is null when everything fitted. A
    custom-field value that is not an object at all is kept there under
    :data:`NOT_AN_OBJECT_KEY`.

    Most records never reach the Conformer: :mod:`tap_klaviyo.typed_decoding` turns the
    schema into msgspec types and checks the values while the resource is decoded, in C;
    the Conformer makes the records msgspec refuses (the same record either way).

    Conforming happens when the run's schema has the ``_unmapped`` column; a
    catalog made with discovery off (``properties`` a free-form object, no
    ``_unmapped`` column) passes the objects through untouched, as before.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import threading
import typing as t
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

import msgspec

from klaviyo_core import endpoints, filters
from klaviyo_core.errors import KlaviyoError
from tap_klaviyo import records
from tap_klaviyo.inference import Conformer, SchemaInferrer
from tap_klaviyo.stream import flatten
from tap_klaviyo.typed_decoding import TypedRecords, Unsupported

if t.TYPE_CHECKING:
    import logging

    import requests

    from klaviyo_core.client import KlaviyoConnection

DEFAULT_ROW_SCAN_DEPTH = 1000
#: Key under which ``*_unmapped`` keeps a custom-field value that is not an object.
NOT_AN_OBJECT_KEY = "_value"


@dataclass(frozen=True)
class CustomFieldSource:
    """Where a custom-field object lives and how to scan its most recent records."""

    name: str  # the stream whose records are scanned
    field: str  # the custom-field attribute
    operation_id: str
    resource_type: str
    sort: str  # most recent first

    @property
    def unmapped(self) -> str:
        return unmapped_column(self.field)

    @property
    def time_key(self) -> str:
        """The timestamp attribute the scan is sorted on (newest first)."""
        return self.sort.lstrip("-")


PROFILE_FIELDS = CustomFieldSource("profiles", "properties", "get_profiles", "profile", "-updated")
EVENT_FIELDS = CustomFieldSource("events", "event_properties", "get_events", "event", "-datetime")
#: Requests a scan sends at once (each source's endpoint is paced by the connection as usual):
#: the default depth's 1,000 profiles at 100 a page as half-page windows, plus the open one,
#: so the scan takes two round trips (the connection's first flight on profiles admits 22).
SCAN_WORKERS = 21


def unmapped_column(field: str) -> str:
    return f"{field}_unmapped"


def unmapped_schema(field: str) -> dict:
    return {
        "type": ["object", "null"],
        "description": (
            f"Custom fields from `{field}` that discovery never saw or whose value does not fit "
            "the discovered type, untouched (nested keys as dotted paths). Null when all fitted."
        ),
    }


def with_custom_fields(schema: dict, field: str, custom: dict) -> dict:
    """``schema`` with ``field`` typed as ``custom`` and its ``_unmapped`` sibling after it."""
    schema = copy.deepcopy(schema)
    properties: dict = {}
    for name, value in schema["properties"].items():
        if name == unmapped_column(field):
            continue
        properties[name] = copy.deepcopy(custom) if name == field else value
        if name == field:
            properties[unmapped_column(field)] = unmapped_schema(field)
    if field not in properties:
        properties[field] = copy.deepcopy(custom)
        properties[unmapped_column(field)] = unmapped_schema(field)
    schema["properties"] = properties
    return schema


def count_fields(schema: Mapping[str, t.Any]) -> tuple[int, int]:
    """(top-level fields, fields at every level) of an inferred object schema."""
    top = schema.get("properties") or {}
    total = 0
    stack = [top]
    while stack:
        props = stack.pop()
        total += len(props)
        for sub in props.values():
            while sub.get("items"):  # arrays of objects (of arrays...)
                sub = sub["items"]
            if sub.get("properties"):
                stack.append(sub["properties"])
    return len(top), total


class CustomFieldDiscovery:
    """Scans each source at most once and keeps the inferred schema.

    :meth:`prefetch` starts scans in the background (discovery starts them while it probes
    the credentials' scopes); :meth:`schema` waits for one. A scan whose depth is more than
    a page reads its pages concurrently (see :class:`_WindowedScan`).
    """

    def __init__(self, connection: KlaviyoConnection, row_scan_depth: int, logger: logging.Logger) -> None:
        self.connection = connection
        self.row_scan_depth = row_scan_depth
        self.logger = logger
        self._scans: dict[str, Future[dict]] = {}
        self._lock = threading.Lock()

    def prefetch(self, sources: t.Iterable[CustomFieldSource]) -> None:
        """Start scanning ``sources`` now. A scan that fails only fails :meth:`schema` of its
        source: the scan of a stream the credentials turn out not to read is never asked for."""
        for source in sources:
            self._future(source)

    def schema(self, source: CustomFieldSource) -> dict:
        """The inferred schema of ``source``'s custom-field object (a fresh copy)."""
        return copy.deepcopy(self._future(source).result())

    def _future(self, source: CustomFieldSource) -> Future[dict]:
        with self._lock:
            if source.name not in self._scans:
                future: Future[dict] = Future()
                thread = threading.Thread(
                    target=_run_into, args=(future, self._scan, source), name=f"scan-{source.name}", daemon=True
                )
                self._scans[source.name] = future
                thread.start()
            return self._scans[source.name]

    def _scan(self, source: CustomFieldSource) -> dict:
        depth = self.row_scan_depth
        page_size = endpoints.page_size_max(source.operation_id) or 100
        if depth:
            page_size = min(page_size, depth)
        params = {
            f"fields[{source.resource_type}]": f"{source.field},{source.time_key}",
            "sort": source.sort,
            "page[size]": page_size,
        }
        inferrer = SchemaInferrer()
        path = endpoints.endpoint(source.operation_id).path
        if depth > page_size:
            resources: t.Iterable[dict] = _WindowedScan(self.connection, path, params, source, depth).resources()
        else:
            resources = self.connection.paginate(path, params)
        for resource in resources:
            value = (resource.get("attributes") or {}).get(source.field)
            inferrer.observe(value if isinstance(value, Mapping) else None)
            if depth and inferrer.records_seen >= depth:
                break  # before paginate asks for another page
        schema = inferrer.schema()
        top, total = count_fields(schema)
        self.logger.info(
            "Custom fields of %s.%s: scanned %d record(s) (row_scan_depth %s), found %d field(s), "
            "%d counting nested ones.",
            source.name,
            source.field,
            inferrer.records_seen,
            depth or "0 = all",
            top,
            total,
        )
        return schema


def _run_into(future: Future[dict], function: t.Callable[[CustomFieldSource], dict], source: CustomFieldSource) -> None:
    try:
        future.set_result(function(source))
    except BaseException as exc:  # noqa: BLE001 - handed to whoever asks for the schema
        future.set_exception(exc)


class _WindowedScan:
    """The ``depth`` most recent records of a source, their pages read concurrently.

    A cursor chain gives one page per round trip: 1,000 profiles at 100 a page took ten in a
    row. Here the newest page tells how many records a second of the time key holds; the
    time before it is cut into windows expected to hold half a page each, plus a last window
    open to the past, and every window's first page is asked for at once. In later rounds,
    windows that hold more follow their ``links.next`` and the open window, when still
    needed, is cut the same way from its first page, each only as far as the records before
    it fall short of ``depth``. Windows partition time at whole seconds (Klaviyo's timestamps
    have no fraction), so the records are those one chain would give, in its order.
    """

    def __init__(
        self, connection: KlaviyoConnection, path: str, params: dict, source: CustomFieldSource, depth: int
    ) -> None:
        self.connection, self.path, self.params, self.key, self.depth = connection, path, params, source.time_key, depth
        self.page_size = int(params["page[size]"])

    def resources(self) -> list[dict]:
        chains = [_Chain(self.params)]
        with ThreadPoolExecutor(SCAN_WORKERS, thread_name_prefix="scan-page") as pool:
            pending = chains
            while pending:
                list(pool.map(self._advance, pending))
                pending = self._next_round(chains)
        return [resource for chain in chains for resource in chain.resources]

    def _next_round(self, chains: list[_Chain]) -> list[_Chain]:
        """The chains to read next (splitting the open last one when it is needed)."""
        pending, count = [], 0
        for index, chain in enumerate(chains):
            if count >= self.depth:
                break
            needs_more = bool(chain.next_url) and count + len(chain.resources) < self.depth
            if needs_more and index == len(chains) - 1:
                windows = self._split(chain, count)
                if windows:
                    chains += windows
                    pending += windows
                    break
            count += len(chain.resources)
            if needs_more:
                pending.append(chain)
        return pending

    def _split(self, chain: _Chain, before: int) -> list[_Chain]:
        """Cut what is older than ``chain``'s first page into windows; keep the page's records
        newer than its oldest second in ``chain``. Nothing when the page cannot tell (no
        timestamps, or a page already continued)."""
        if chain.pages != 1 or len(chain.resources) < self.page_size:
            return []
        seconds = [self._seconds(resource) for resource in chain.resources]
        if None in seconds:
            return []
        newest, oldest = t.cast("int", seconds[0]), t.cast("int", seconds[-1])
        chain.resources = [resource for resource, at in zip(chain.resources, seconds) if t.cast("int", at) > oldest]
        chain.next_url = None
        width = max(1, (newest - oldest) // 2)  # a page held newest - oldest seconds: half a page per window
        needed = -(-(self.depth - before - len(chain.resources)) * 2 // self.page_size)  # half pages, rounded up
        bounds = [oldest + 1 - width * n for n in range(max(1, min(needed, SCAN_WORKERS - 1)) + 1)]
        windows = [_Chain(self._filter(upper, lower)) for upper, lower in itertools.pairwise(bounds)]
        return [*windows, _Chain(self._filter(bounds[-1], None))]  # the rest of the past

    def _advance(self, chain: _Chain) -> None:
        document = self.connection.get(chain.next_url or self.path, None if chain.next_url else chain.params)
        chain.resources += document.get("data") or []
        chain.next_url = (document.get("links") or {}).get("next")
        chain.pages += 1

    def _filter(self, upper: int, lower: int | None) -> dict:
        """Params of the window [lower, upper) in whole seconds (Klaviyo: ``greater-than``, ``less-than``)."""
        conditions = [filters.condition("less-than", self.key, _utc(upper))]
        if lower is not None:
            conditions.append(filters.condition("greater-than", self.key, _utc(lower - 1)))
        return {**self.params, "filter": filters.combine(*conditions)}

    def _seconds(self, resource: dict) -> int | None:
        value = (resource.get("attributes") or {}).get(self.key)
        try:
            return int(dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())
        except ValueError:
            return None


class _Chain:
    """One window's pages: its first request, then ``links.next``."""

    def __init__(self, params: dict) -> None:
        self.params = params
        self.resources: list[dict] = []
        self.next_url: str | None = None
        self.pages = 0


def _utc(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc)


class CustomFieldsMixin:
    """Stream mixin: each record's custom-field object conformed to the run's schema.

    Mixed into streams whose records carry ``custom_source.field``. The run's
    schema is the input catalog's when one was given (``effective_schema``).
    Records are made conformed: typed while decoded (:mod:`tap_klaviyo.typed_decoding`),
    or flattened and then conformed by the :class:`Conformer` when msgspec's types refuse
    the record (the same record either way).
    """

    custom_source: t.ClassVar[CustomFieldSource]
    #: Columns set to these values when Klaviyo leaves them out of a resource.
    attribute_defaults: t.ClassVar[dict[str, t.Any]] = {}
    #: Whether records are typed while decoded (off: the Conformer types every record).
    typed_decoding: t.ClassVar[bool] = True

    @cached_property
    def custom_field_conformer(self) -> Conformer | None:
        """Built once per stream; None when the schema does not type the field."""
        field = self.custom_source.field
        properties = self.effective_schema.get("properties") or {}  # type: ignore[attr-defined]
        custom = properties.get(field)
        if unmapped_column(field) not in properties or not isinstance(custom, Mapping):
            return None
        if "properties" not in custom:
            return None
        try:
            return Conformer(custom)
        except ValueError as exc:
            raise KlaviyoError(
                f"Stream {self.name}: the catalog's schema of {field} is not usable ({exc}). "  # type: ignore[attr-defined]
                "Run discovery again, or use JSON schema types only."
            ) from exc

    @cached_property
    def typed_records(self) -> TypedRecords | None:
        """The record maker typing custom fields while decoding; None: the Conformer alone."""
        if self.custom_field_conformer is None or not self.typed_decoding:
            return None
        field = self.custom_source.field
        properties = self.effective_schema["properties"]  # type: ignore[attr-defined]
        columns = [name for name in properties if name not in ("id", unmapped_column(field))]
        for_writer = self.writes_records_directly  # type: ignore[attr-defined]
        decoded = {self.replication_key, self.range_key} - {None}  # type: ignore[attr-defined]  # the stream reads them
        try:
            return TypedRecords(
                columns, field, properties[field], self.attribute_defaults, for_writer=for_writer, decoded=decoded
            )
        except Unsupported as exc:
            self.logger.info("Stream %s: custom fields typed by the Conformer alone (%s).", self.name, exc)  # type: ignore[attr-defined]
            return None

    def page_records(self, response: requests.Response) -> t.Sequence[dict]:
        page = records.decode_page(response)
        typed = self.typed_records
        if typed is None or isinstance(page, records.Decoded):
            return records.lazy_records(page, self.to_record, response.content)
        return records.LazyRecords(page.data, self._raw_to_record, typed.record, source=response.content)

    def to_record(self, resource: dict) -> dict:
        record = flatten(resource)
        for name, value in self.attribute_defaults.items():
            record.setdefault(name, value)
        if self.custom_field_conformer is not None:
            conform_custom_fields(record, self.custom_source.field, self.custom_field_conformer)
        return record

    def _raw_to_record(self, raw: msgspec.Raw) -> dict:
        return self.to_record(msgspec.json.decode(raw))


def conform_custom_fields(row: dict, field: str, conformer: Conformer) -> dict:
    """Split ``row[field]`` into its typed part and ``row[field + '_unmapped']``, in place."""
    if field not in row:
        return row
    value = row[field]
    unmapped: dict | None
    if value is None:
        typed, unmapped = None, None
    elif type(value) is dict or isinstance(value, Mapping):  # a dict skips the ABC check
        typed, unmapped = conformer(value)
    else:
        typed, unmapped = None, {NOT_AN_OBJECT_KEY: value}
    row[field] = typed
    row[unmapped_column(field)] = unmapped or None
    return row
