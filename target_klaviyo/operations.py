"""Rows to request bodies for the consent, suppression and event operations.

Each operation says which columns it needs, turns a row into one checked item (or
raises RowRejected with the reason), and builds the body of one request from a batch
of items. Limits come from the spec's operation descriptions (revision 2026-07-15):

===============  =========================================  =============================
operation        Klaviyo operation                          items a request
===============  =========================================  =============================
subscribe        bulk_subscribe_profiles                    1,000 profiles
unsubscribe      bulk_unsubscribe_profiles                  100 profiles
suppress         bulk_suppress_profiles                     100 emails
unsuppress       bulk_unsuppress_profiles                   100 emails
track            bulk_create_events                         1,000 events, 5 MB a payload
===============  =========================================  =============================

Consent is only ever written here, by subscribe and unsubscribe, and only for the
channels asked for. Profile attributes ride along only with ``track`` (standard
attributes by column name; the row's other columns are the event's properties).
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import typing as t
from dataclasses import dataclass

from typing_extensions import override

from klaviyo_core import dates
from target_klaviyo.profiles import (
    ID_COLUMNS,
    IDENTIFIERS,
    ColumnRules,
    encoded_size,
    identifiers,
    identity_key,
    is_blank,
    json_safe,
    missing_identifier,
    profile_id,
    standard_attributes,
)
from target_klaviyo.rejects import RowRejected

#: Consent channels: name -> (subscriptions key, kind, identifier it needs).
CHANNELS = {
    "email_marketing": ("email", "marketing", "email"),
    "sms_marketing": ("sms", "marketing", "phone_number"),
    "sms_transactional": ("sms", "transactional", "phone_number"),
}
#: Without a setting or a ``channels`` column: each channel the row has an identifier for.
DEFAULT_CHANNELS = {"email": "email_marketing", "phone_number": "sms_marketing"}
EVENT_COLUMNS = frozenset({"metric_name", "time", "value", "value_currency", "properties", "unique_id"})
MAX_METRIC_NAME = 127  # "Must be less than 128 characters"
MAX_EVENT_PROPERTIES = 400
MAX_STRING_BYTES = 100_000  # 100 KB a string, counted in decimal bytes for margin
MAX_PAYLOAD_BYTES = 5_000_000
EARLIEST_EVENT = dt.datetime(1990, 1, 1, tzinfo=dt.timezone.utc)


@dataclass
class Item:
    """One checked row: what goes into the request, and which request group it belongs to."""

    row: dict
    payload: dict
    size: int
    group: t.Hashable = None  # rows of different groups never share a request (e.g. historical_import)


@dataclass(frozen=True)
class Options:
    """The settings an operation reads."""

    rules: ColumnRules = ColumnRules()
    channels: tuple[str, ...] | None = None
    metric_name: str | None = None


class Operation:
    """How one operation checks rows and builds requests."""

    name: t.ClassVar[str]
    operation_id: t.ClassVar[str]
    path: t.ClassVar[str]
    max_items: t.ClassVar[int]
    max_bytes: t.ClassVar[int] = MAX_PAYLOAD_BYTES
    #: Path of the job the POST creates, to poll (None: Klaviyo answers 202 with no job to follow).
    job_path: t.ClassVar[str | None] = None
    #: Columns of which the stream needs at least one.
    needs_one_of: t.ClassVar[tuple[str, ...]] = ("email",)

    def __init__(self, options: Options) -> None:
        self.options = options

    def prepare(self, row: dict) -> Item:
        raise NotImplementedError

    def body(self, items: list[Item], group: t.Hashable, list_id: str | None) -> dict:
        raise NotImplementedError


def _item(row: dict, payload: dict, group: t.Hashable = None) -> Item:
    return Item(row=row, payload=payload, size=encoded_size(payload), group=group)


def _list_relationship(list_id: str | None) -> dict:
    return {"relationships": {"list": {"data": {"type": "list", "id": list_id}}}} if list_id else {}


def row_channels(row: dict, found: dict[str, str], configured: tuple[str, ...] | None) -> list[str]:
    """The consent channels of a row: its ``channels`` column, else the setting, else its identifiers.

    A channel the row's ``channels`` column names needs its address (email or phone) in the
    row; from the setting, only the channels the row has an address for are used.
    """
    raw = row.get("channels")
    if not is_blank(raw):
        names = [part.strip() for part in raw.split(",")] if isinstance(raw, str) else raw
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise RowRejected("invalid channels", "channels must be a list or a comma-separated text of channel names")
        unknown = sorted({n for n in names if n} - set(CHANNELS))
        if unknown:
            raise RowRejected("invalid channels", f"channel {unknown[0]!r} is not one of {', '.join(CHANNELS)}")
        chosen = [n for n in dict.fromkeys(names) if n]
        for channel in chosen:  # the row itself asks for it: its address must be there
            needed = CHANNELS[channel][2]
            if needed not in found:
                raise RowRejected(f"missing {needed}", f"channel {channel} needs a {needed} and the row has none")
    elif configured:  # the setting: the configured channels this row has an address for
        chosen = [channel for channel in configured if CHANNELS[channel][2] in found]
        if not chosen:
            wanted = " or ".join(sorted({CHANNELS[c][2] for c in configured}))
            raise RowRejected("no address for the channels", f"consent_channels need a {wanted} and the row has none")
    else:
        chosen = [channel for column, channel in DEFAULT_CHANNELS.items() if column in found]
    if not chosen:
        raise RowRejected("no channels", "the channels column is empty: no channel to change")
    return chosen


def parse_time(value: t.Any, column: str) -> dt.datetime:
    """An aware datetime (UTC) from text, a date or a datetime; a time without an offset is taken as UTC."""
    if not isinstance(value, str | dt.date):
        raise RowRejected(f"invalid {column}", f"{column} must be a date-time text, not {type(value).__name__}")
    try:
        moment = dates.parse(value.isoformat() if isinstance(value, dt.date) else value)
    except ValueError:
        moment = None
    if moment is None:
        raise RowRejected(f"invalid {column}", f"{column} is not an ISO 8601 date-time")
    return moment


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


class Subscribe(Operation):
    """``bulk_subscribe_profiles``; rows with ``consented_at`` go in ``historical_import`` requests."""

    name = "subscribe"
    operation_id = "bulk_subscribe_profiles"
    path = "/api/profile-subscription-bulk-create-jobs"
    max_items = 1000
    needs_one_of = ("email", "phone_number")
    consent = "SUBSCRIBED"

    @override
    def prepare(self, row: dict) -> Item:
        found = identifiers(row, ("email", "phone_number"))
        if not found:
            raise missing_identifier(row, ("email", "phone_number"))
        channels = row_channels(row, found, self.options.channels)
        consented_at = self.consented_at(row)
        subscriptions: dict[str, dict] = {}
        for channel in channels:
            key, kind, _ = CHANNELS[channel]
            parameters = {"consent": self.consent}
            if consented_at:
                parameters["consented_at"] = consented_at
            subscriptions.setdefault(key, {})[kind] = parameters
        payload: dict[str, t.Any] = {"type": "profile", "attributes": {**found, "subscriptions": subscriptions}}
        pid = profile_id(row) if self.consent == "SUBSCRIBED" else None
        if pid:
            payload["id"] = pid
        return _item(row, payload, group=bool(consented_at))

    def consented_at(self, row: dict) -> str | None:
        value = row.get("consented_at")
        if is_blank(value):
            return None
        moment = parse_time(value, "consented_at")
        if moment > dt.datetime.now(dt.timezone.utc):
            raise RowRejected("consented_at in the future", "consented_at must be in the past")
        return iso(moment)

    @override
    def body(self, items: list[Item], group: t.Hashable, list_id: str | None) -> dict:
        attributes: dict[str, t.Any] = {"profiles": {"data": [item.payload for item in items]}}
        if group:
            attributes["historical_import"] = True
        return {"data": {"type": "profile-subscription-bulk-create-job", "attributes": attributes,
                         **_list_relationship(list_id)}}  # fmt: skip


class Unsubscribe(Subscribe):
    """``bulk_unsubscribe_profiles``: the same channels, consent UNSUBSCRIBED."""

    name = "unsubscribe"
    operation_id = "bulk_unsubscribe_profiles"
    path = "/api/profile-subscription-bulk-delete-jobs"
    max_items = 100
    consent = "UNSUBSCRIBED"

    @override
    def consented_at(self, row: dict) -> None:
        return None  # not part of an unsubscribe

    @override
    def body(self, items: list[Item], group: t.Hashable, list_id: str | None) -> dict:
        return {"data": {"type": "profile-subscription-bulk-delete-job",
                         "attributes": {"profiles": {"data": [item.payload for item in items]}},
                         **_list_relationship(list_id)}}  # fmt: skip


class Suppress(Operation):
    """``bulk_suppress_profiles``: by email (Klaviyo suppresses email only)."""

    name = "suppress"
    operation_id = "bulk_suppress_profiles"
    path = "/api/profile-suppression-bulk-create-jobs"
    job_path = "/api/profile-suppression-bulk-create-jobs/{id}"
    job_type = "profile-suppression-bulk-create-job"
    max_items = 100

    @override
    def prepare(self, row: dict) -> Item:
        found = identifiers(row, ("email",))
        if not found:
            raise missing_identifier(row, ("email",))
        return _item(row, {"type": "profile", "attributes": {"email": found["email"]}})

    @override
    def body(self, items: list[Item], group: t.Hashable, list_id: str | None) -> dict:
        profiles = {"data": [item.payload for item in items]}
        return {"data": {"type": self.job_type, "attributes": {"profiles": profiles}}}


class Unsuppress(Suppress):
    """``bulk_unsuppress_profiles``: lifts suppressions Klaviyo marks USER_SUPPRESSED (only those)."""

    name = "unsuppress"
    operation_id = "bulk_unsuppress_profiles"
    path = "/api/profile-suppression-bulk-delete-jobs"
    job_path = "/api/profile-suppression-bulk-delete-jobs/{id}"
    job_type = "profile-suppression-bulk-delete-job"


class Track(Operation):
    """``bulk_create_events``: one event a row, for the profile the row identifies."""

    name = "track"
    operation_id = "bulk_create_events"
    path = "/api/event-bulk-create-jobs"
    max_items = 1000
    needs_one_of = (*IDENTIFIERS, *ID_COLUMNS)

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        self._seen: set[tuple[str, str, str]] = set()  # (profile, metric, unique_id) of this run

    @override
    def prepare(self, row: dict) -> Item:
        found = identifiers(row)
        pid = profile_id(row)
        if not found and pid is None:
            raise missing_identifier(row, (*IDENTIFIERS, *ID_COLUMNS))
        profile: dict[str, t.Any] = {"type": "profile", "attributes": {**found, **standard_attributes(row)}}
        if pid:
            profile["id"] = pid
        event = self.event(row)
        unique = event["unique_id"] = self.unique_id(row, found, pid, event)
        seen = (identity_key(found, pid), event["metric"]["data"]["attributes"]["name"], unique)
        if seen in self._seen:
            raise RowRejected(
                "duplicate event",
                "an earlier row has the same unique_id, metric and profile: Klaviyo records that event once",
            )
        self._seen.add(seen)
        payload = {"type": "event-bulk-create", "attributes": {
            "profile": {"data": profile}, "events": {"data": [{"type": "event", "attributes": event}]},
        }}  # fmt: skip
        return _item(row, payload)

    def event(self, row: dict) -> dict[str, t.Any]:
        metric = row.get("metric_name")
        metric = self.options.metric_name if is_blank(metric) else metric
        if is_blank(metric):
            raise RowRejected("missing metric_name", "metric_name is empty and the metric_name setting is not set")
        if not isinstance(metric, str) or len(metric.strip()) > MAX_METRIC_NAME:
            raise RowRejected(
                "invalid metric_name", f"metric_name must be text of at most {MAX_METRIC_NAME} characters"
            )
        event: dict[str, t.Any] = {
            "properties": self.properties(row),
            "metric": {"data": {"type": "metric", "attributes": {"name": metric.strip()}}},
        }
        if not is_blank(row.get("time")):
            event["time"] = self.time(row["time"])
        if not is_blank(row.get("value")):
            event["value"] = self.value(row["value"])
        if not is_blank(row.get("value_currency")):
            event["value_currency"] = str(row["value_currency"]).strip()
        return event

    def properties(self, row: dict) -> dict:
        nested = row.get("properties")
        if not is_blank(nested) and not isinstance(nested, dict):
            raise RowRejected("properties not an object", "properties must be an object (JSON) of event properties")
        merged = {str(k): v for k, v in (nested or {}).items()}
        rules = self.options.rules
        merged.update({c: v for c, v in row.items() if rules.is_property(c) and c not in EVENT_COLUMNS})
        properties = {k: json_safe(v, k) for k, v in merged.items() if not is_blank(v)}
        if len(properties) > MAX_EVENT_PROPERTIES:
            raise RowRejected("too many properties", f"an event may have at most {MAX_EVENT_PROPERTIES} properties")
        for text in _strings(properties):
            if len(text.encode("utf-8")) > MAX_STRING_BYTES:
                raise RowRejected("string over 100 KB", "a property holds text over Klaviyo's 100 KB limit")
        return properties

    @staticmethod
    def time(value: t.Any) -> str:
        moment = parse_time(value, "time")
        latest = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=365)
        if not EARLIEST_EVENT < moment <= latest:
            raise RowRejected("time out of range", "time must be after 1990 and at most one year ahead")
        return iso(moment.replace(microsecond=0))  # Klaviyo truncates to the second

    @staticmethod
    def value(value: t.Any) -> float | int:
        if isinstance(value, bool) or not isinstance(value, (int, float, decimal.Decimal)):
            raise RowRejected("value not a number", f"value must be a number, not {type(value).__name__}")
        return json_safe(value, "value")

    @staticmethod
    def unique_id(row: dict, found: dict, pid: str | None, event: dict) -> str:
        """The row's ``unique_id``, else one derived from the event's content (so a rerun adds nothing)."""
        given = row.get("unique_id")
        if not is_blank(given):
            if not isinstance(given, (str, int)) or isinstance(given, bool):
                raise RowRejected("invalid unique_id", f"unique_id must be text, not {type(given).__name__}")
            return str(given).strip()
        content = json.dumps([found, pid, event], sort_keys=True, default=str)
        return hashlib.sha256(content.encode("utf-8")).hexdigest()[:40]

    @override
    def body(self, items: list[Item], group: t.Hashable, list_id: str | None) -> dict:
        return {
            "data": {
                "type": "event-bulk-create-job",
                "attributes": {"events-bulk-create": {"data": [item.payload for item in items]}},
            }
        }


def _strings(value: t.Any) -> t.Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


OPERATIONS: dict[str, type[Operation]] = {op.name: op for op in (Subscribe, Unsubscribe, Suppress, Unsuppress, Track)}


def split(items: list[Item], operation: Operation, list_id: str | None) -> list[tuple[t.Hashable, list[Item]]]:
    """Consecutive requests of one group each, within the operation's count and byte limits."""
    by_group: dict[t.Hashable, list[Item]] = {}
    for item in items:
        by_group.setdefault(item.group, []).append(item)
    requests: list[tuple[t.Hashable, list[Item]]] = []
    separator = len(", ")
    for group, members in by_group.items():
        overhead = encoded_size(operation.body([], group, list_id))
        current: list[Item] = []
        size = overhead
        for item in members:
            added = item.size + (separator if current else 0)
            if current and (len(current) >= operation.max_items or size + added > operation.max_bytes):
                requests.append((group, current))
                current, size, added = [], overhead, item.size
            current.append(item)
            size += added
        if current:
            requests.append((group, current))
    return requests
