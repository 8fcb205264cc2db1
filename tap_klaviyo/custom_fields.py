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

    Conforming happens when the run's schema has the ``_unmapped`` column; a
    catalog made with discovery off (``properties`` a free-form object, no
    ``_unmapped`` column) passes the objects through untouched, as before.
"""

from __future__ import annotations

import copy
import typing as t
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from klaviyo_core import endpoints
from klaviyo_core.errors import KlaviyoError
from tap_klaviyo.inference import Conformer, SchemaInferrer

if t.TYPE_CHECKING:
    import logging

    from singer_sdk.helpers.types import Context

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


PROFILE_FIELDS = CustomFieldSource("profiles", "properties", "get_profiles", "profile", "-updated")
EVENT_FIELDS = CustomFieldSource("events", "event_properties", "get_events", "event", "-datetime")


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
    """Scans each source at most once and keeps the inferred schema."""

    def __init__(self, connection: KlaviyoConnection, row_scan_depth: int, logger: logging.Logger) -> None:
        self.connection = connection
        self.row_scan_depth = row_scan_depth
        self.logger = logger
        self._schemas: dict[str, dict] = {}

    def schema(self, source: CustomFieldSource) -> dict:
        """The inferred schema of ``source``'s custom-field object (a fresh copy)."""
        if source.name not in self._schemas:
            self._schemas[source.name] = self._scan(source)
        return copy.deepcopy(self._schemas[source.name])

    def _scan(self, source: CustomFieldSource) -> dict:
        depth = self.row_scan_depth
        page_size = endpoints.page_size_max(source.operation_id) or 100
        if depth:
            page_size = min(page_size, depth)
        params = {
            f"fields[{source.resource_type}]": source.field,
            "sort": source.sort,
            "page[size]": page_size,
        }
        inferrer = SchemaInferrer()
        path = endpoints.endpoint(source.operation_id).path
        for resource in self.connection.paginate(path, params):
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


class CustomFieldsMixin:
    """Stream mixin: conform each record's custom-field object to the run's schema.

    Mixed into streams whose records carry ``custom_source.field``. The run's
    schema is the input catalog's when one was given (``effective_schema``).
    """

    custom_source: t.ClassVar[CustomFieldSource]

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

    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        row = super().post_process(row, context)  # type: ignore[misc]
        if row is not None and self.custom_field_conformer is not None:
            conform_custom_fields(row, self.custom_source.field, self.custom_field_conformer)
        return row


def conform_custom_fields(row: dict, field: str, conformer: Conformer) -> dict:
    """Split ``row[field]`` into its typed part and ``row[field + '_unmapped']``, in place."""
    if field not in row:
        return row
    value = row[field]
    unmapped: dict | None
    if value is None:
        typed, unmapped = None, None
    elif isinstance(value, Mapping):
        typed, unmapped = conformer(value)
    else:
        typed, unmapped = None, {NOT_AN_OBJECT_KEY: value}
    row[field] = typed
    row[unmapped_column(field)] = unmapped or None
    return row
