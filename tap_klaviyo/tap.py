"""tap-klaviyo: Klaviyo campaigns, events, flows, lists, metrics, profiles, reviews, segments."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import typing as t
from collections.abc import Mapping
from functools import cached_property

import click
from singer_sdk import Tap, typing as th
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import PluginCapabilities
from singer_sdk.mapper import PluginMapper
from singer_sdk.singerlib import Catalog
from singer_sdk.tap_base import CliTestOptionValue
from typing_extensions import override

from klaviyo_core import dates, endpoints
from klaviyo_core.cli import interrupted, interrupted_exit_code, note_interrupted, run_cli
from klaviyo_core.client import KlaviyoConnection
from klaviyo_core.env_config import with_typed_config
from klaviyo_core.scopes import missing_scopes_error, probe_scopes, scopes_of
from klaviyo_core.setting_names import check_setting_names
from klaviyo_core.settings import (
    CONNECTION_SETTINGS,
    DEFAULT_MAX_CONCURRENCY,
    check_connection_settings,
    config_error,
    redact_config_errors,
)
from tap_klaviyo import groups, reports, sync_catalog
from tap_klaviyo.custom_fields import (
    DEFAULT_ROW_SCAN_DEPTH,
    PROFILE_FIELDS,
    CustomFieldDiscovery,
    CustomFieldSource,
    with_custom_fields,
)
from tap_klaviyo.prefetch import StreamPrefetch, sync_order
from tap_klaviyo.sdk_compat import CompatTap, stream_selected
from tap_klaviyo.state import check_state, move_old_bookmarks
from tap_klaviyo.stream import load_schema
from tap_klaviyo.streams import STREAM_TYPES
from tap_klaviyo.writer import KlaviyoMessageWriter

if t.TYPE_CHECKING:
    from tap_klaviyo.stream import KlaviyoStream

TAP_SETTINGS = th.PropertiesList(
    th.Property(
        "start_date",
        th.DateTimeType,
        title="Start date",
        description="Earliest record to sync on a first run (UTC when no offset is given). Default: everything.",
    ),
    th.Property(
        "end_date",
        th.DateTimeType,
        title="End date",
        description="Stop incremental streams at this moment (exclusive); bounds a backfill. Default: now.",
    ),
    th.Property(
        "include_predictive_analytics",
        th.BooleanType,
        default=False,
        title="Include predictive analytics",
        description=(
            "Add `predictive_analytics` (CLV, churn...) to profiles and to the `list_<name>` / "
            "`segment_<name>` streams. Klaviyo then allows those reads at 10/s instead of 75/s, "
            "so they sync more slowly."
        ),
    ),
    th.Property(
        "include_archived",
        th.BooleanType,
        default=True,
        title="Include archived campaigns and flows",
        description=(
            "Read archived campaigns and flows too (their `archived` attribute says which). Klaviyo "
            "hides them unless asked, so each campaign channel and flows get a second pass with its "
            "own bookmark (a few requests per sync). Off: archived ones are left out."
        ),
    ),
    th.Property(
        "events_lookback",
        th.DurationType,
        default="PT0S",
        title="Events lookback",
        description=(
            "ISO 8601 duration (e.g. PT6H, P1D, P1W; days, hours, minutes, seconds only) that incremental "
            "event syncs re-read before the bookmark, to catch events Klaviyo receives late with an "
            "earlier `datetime` (backfills, integrations that sync late). Re-read events are emitted "
            "again: the warehouse must de-duplicate on `id`. The bookmark never moves back. "
            "Default PT0S: no lookback."
        ),
    ),
    th.Property(
        "discover_custom_fields",
        th.BooleanType,
        default=True,
        title="Discover custom fields",
        description=(
            "Type the custom fields of profiles (`properties`) and events (`event_properties`) in "
            "the catalog (integer, number, boolean, date, date-time, string, object, array), "
            "inferred from the most recent records. Values that do not fit, and fields first "
            "seen after discovery, go untouched to `properties_unmapped` / "
            "`event_properties_unmapped`. Off: both stay free-form objects."
        ),
    ),
    th.Property(
        "row_scan_depth",
        th.IntegerType(minimum=0),
        default=DEFAULT_ROW_SCAN_DEPTH,
        title="Row scan depth",
        description=(
            "How many of the most recently updated profiles, and of the most recent events, "
            "custom-field discovery reads. 0 reads every record (slow on large accounts)."
        ),
    ),
    th.Property(
        "list_and_segment_streams",
        th.BooleanType,
        default=False,
        title="One stream per list and segment",
        description=(
            "Add a stream per Klaviyo list (`list_<name>`) and segment (`segment_<name>`) with "
            "its current members as full profiles plus `joined_group_at` (full table). Names are "
            "lowercase ASCII; names that clash get the Klaviyo id appended."
        ),
    ),
    th.Property(
        "report_conversion_metric",
        th.StringType,
        default=reports.DEFAULT_CONVERSION_METRIC,
        title="Report conversion metric",
        description=(
            "Metric whose events count as conversions in campaign and flow reports: a metric id, or a "
            "name (found with get_metrics; of several same-named metrics an eCommerce one wins)."
        ),
    ),
    th.Property(
        "report_daily_request_budget",
        th.IntegerType(minimum=1, maximum=225),
        default=reports.DEFAULT_DAILY_BUDGET,
        title="Report requests per day",
        description=(
            "Requests each report stream may make per UTC day (Klaviyo allows 225 per report endpoint "
            "and account, shared with every app). Counted in the state; a report past it is deferred "
            "to the next run of the next day. 1 to 225."
        ),
    ),
    th.Property(
        "report_values_window_days",
        th.IntegerType(minimum=1, maximum=365),
        default=reports.DEFAULT_VALUES_WINDOW_DAYS,
        title="Values report window (days)",
        description=(
            "Campaign and flow values reports cover this many days up to the end of today "
            "(campaigns sent in it; flow activity in it). Each run replaces the rows. 1 to 365."
        ),
    ),
    th.Property(
        "report_interval",
        th.StringType,
        default=reports.DEFAULT_INTERVAL,
        allowed_values=reports.report_options()["series_intervals"],
        title="Report interval",
        description="Interval of series reports and metric aggregates: hourly, daily, weekly or monthly.",
    ),
    th.Property(
        "report_lookback_intervals",
        th.IntegerType(minimum=0, maximum=1000),
        default=reports.DEFAULT_LOOKBACK_INTERVALS,
        title="Report lookback (intervals)",
        description=(
            "Series reports and metric aggregates re-read this many intervals before the one the "
            "last run stopped in, so late conversions are counted."
        ),
    ),
    th.Property(
        "metric_aggregates_metrics",
        th.ArrayType(th.StringType),
        title="Metric aggregates: metrics",
        description="Metric names or ids of the metric_aggregates stream. Default: report_conversion_metric.",
    ),
    th.Property(
        "metric_aggregates_by",
        th.ArrayType(th.StringType(allowed_values=reports.report_options()["metric_aggregates_by"])),
        title="Metric aggregates: dimensions",
        description=(
            "Klaviyo `by` dimensions of metric_aggregates (e.g. `$attributed_message`, `Campaign Name`); "
            "each becomes a key column (lowercase, `$` dropped). Default: none."
        ),
    ),
)


#: Where ``--test``'s value waits (click's ``Context.meta``) until every option is read.
TEST_MODE = "tap_klaviyo.test"

_DURATION = re.compile(r"P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?")


def parse_duration(text: str) -> dt.timedelta | None:
    """An ISO 8601 duration of weeks, days, hours, minutes and seconds; None if it is not one.

    Years and months are refused: their length varies, and a lookback should be exact.
    """
    match = _DURATION.fullmatch(text.upper())
    if not match or text.upper() in ("P", "PT") or text.upper().endswith("T"):
        return None
    weeks, days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return dt.timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)


#: The SDK's own ``mapper`` property: its setter stores the mapper (public, unlike where it stores it).
_SDK_MAPPER = t.cast("property", Tap.mapper)


class TapKlaviyo(CompatTap):
    """Singer tap for Klaviyo: campaigns, events, flows, lists, metrics, profiles, reviews, segments."""

    # The docstring above is what `--about` prints as the description: one line, plain text.
    # The catalog is dynamic: discovery reads the account's custom fields (tap_klaviyo.custom_fields)
    # and, when asked, its lists and segments (tap_klaviyo.groups). With --catalog nothing is
    # discovered: the catalog's schemas and streams are used as given.

    name = "tap-klaviyo"
    package_name = "klaviyo-singer"  # the distribution that ships this tap, for --version and --about
    dynamic_catalog = True
    message_writer_class = KlaviyoMessageWriter  # msgspec-encoded, flushed per STATE (tap_klaviyo.writer)
    config_jsonschema = th.PropertiesList(
        *CONNECTION_SETTINGS.wrapped.values(), *TAP_SETTINGS.wrapped.values()
    ).to_dict()
    # The SDK's defaults less BATCH: its batch files bypass this tap's writer and were never
    # tested here, so batch_config is not offered (a config that sets it gets a one-line error).
    capabilities: t.ClassVar[list] = [c for c in Tap.capabilities if c != PluginCapabilities.BATCH]
    _mapper_pending = False  # set up on first use (see setup_mapper)
    _building_for_sync = False  # set by sync_all (see _builds)
    #: Pages of the streams to sync next, fetched ahead while a sync runs (tap_klaviyo.prefetch).
    stream_prefetch: StreamPrefetch | None = None

    def __init__(self, *args: t.Any, validate_config: bool = True, **kwargs: t.Any) -> None:
        catalog = kwargs.get("catalog")
        # Custom catalog metadata (list ids) is lost when the SDK parses the catalog.
        self._raw_catalog = catalog if isinstance(catalog, Mapping) else None
        self._settings_to_check = validate_config
        try:
            super().__init__(*args, validate_config=validate_config, **with_typed_config(type(self), kwargs))
        except ConfigValidationError as exc:
            raise redact_config_errors(exc) from None  # the SDK's messages quote the values
        self._check_settings()

    @override
    def setup_mapper(self) -> None:
        """Defer the mapper to its first use (see ``mapper``).

        The SDK sets the mapper up in ``__init__`` from the whole catalog, and this
        tap's catalog needs the API: deferring it keeps building a tap offline, and
        discovery then runs when a sync (or ``--discover``) starts.
        """
        self._mapper_pending = True

    @property  # type: ignore[explicit-override]  # mypy#15900: a property with a setter is not seen as marked
    @override
    def mapper(self) -> PluginMapper:
        if self._mapper_pending:
            self._mapper_pending = False
            if self._sync_catalog() is not None:
                self._map_streams_built()
            else:
                super().setup_mapper()
        return super().mapper

    @mapper.setter
    def mapper(self, mapper: PluginMapper) -> None:
        self._mapper_pending = False
        _SDK_MAPPER.__set__(self, mapper)

    def _map_streams_built(self) -> None:
        """The SDK's ``Tap.setup_mapper`` (a mapper, then every stream of the catalog registered
        with it), over the streams this sync built (see ``_builds``): registering a stream resolves
        and copies its schema, for nothing when the sync never reads it."""
        self.mapper = PluginMapper(plugin_config=dict(self.config), logger=self.logger)
        built = self.streams
        catalog = Catalog((name, entry) for name, entry in self.catalog.items() if name in built)
        self.mapper.register_raw_streams_from_catalog(catalog)

    def _check_settings(self) -> None:
        """Once, before the first request (discovery may run inside the SDK's __init__)."""
        if not self._settings_to_check:
            return
        self._settings_to_check = False
        check_setting_names(self.config, type(self))
        check_connection_settings(self.config)
        self._check_dates()
        _ = self.events_lookback  # a bad duration fails here, before any request

    @cached_property
    def events_lookback(self) -> dt.timedelta:
        """How far before the bookmark incremental event syncs start (see EventsStream)."""
        text = str(self.config.get("events_lookback") or "").strip()
        lookback = parse_duration(text) if text else dt.timedelta(0)
        if lookback is None:
            raise config_error(
                f"Setting events_lookback is {text[:40]!r}, not an ISO 8601 duration: use e.g. PT6H (6 hours), "
                "P1D (1 day) or P1W (1 week); years and months are not accepted."
            )
        return lookback

    def _check_dates(self) -> None:
        start, end = (self._parse_setting(key) for key in ("start_date", "end_date"))
        if start and end and end <= start:
            raise config_error("Setting end_date must be after start_date: move it later, or remove it.")
        if start and start > dates.utc_now():
            # Not an error: a schedule may be set up ahead of time. But say why nothing comes.
            self.logger.warning(
                "Setting start_date %s is in the future: incremental streams sync nothing until then "
                "(full-table streams are unaffected). Move it earlier, or remove it to sync everything.",
                start.isoformat(),
            )

    def _parse_setting(self, key: str) -> dt.datetime | None:
        value = self.config.get(key)
        if not value:
            return None
        try:
            return dates.parse(str(value))
        except ValueError:
            raise config_error(
                f"Setting {key} is not a date: use ISO 8601, e.g. 2024-01-31 or 2024-01-31T00:00:00Z."
            ) from None

    @override
    def on_termination_signal(self, signum: int) -> None:
        """SIGINT/SIGTERM: emit the current STATE, then exit 130/143.

        The SDK's handler exits 0, so a scheduler would record an interrupted sync as a success
        (the SDK installs its handler in ``__init__``: see tap_klaviyo.sdk_compat;
        tests/faults/test_signals.py sends real signals to a running tap).
        Every record before the STATE was written (the writer flushes them first), so the
        next run resumes from it without losing or repeating more than the bookmark's second.
        A second signal stops at once.
        """
        if interrupted():  # a second signal: the first may wait on a pipe nobody reads any more
            self.logger.warning("Second signal: stopping now.")
            raise SystemExit(interrupted_exit_code(signum))
        note_interrupted(signum, self.logger, "emitting the last state; the next run resumes from it")
        writer = getattr(self, "message_writer", None)  # None: the signal came while the tap was being built
        if writer is None or not hasattr(writer, "when_idle"):
            self._terminate(signum)
        else:
            writer.when_idle(lambda: self._terminate(signum))

    def _terminate(self, signum: int) -> None:
        if getattr(self, "message_writer", None) is not None:  # None: no STATE to write yet
            self.state_writer.write_state(self.state)  # what the SDK's own handler writes
        raise SystemExit(interrupted_exit_code(signum))

    @override
    def load_state(self, state: dict[str, t.Any]) -> None:
        check_state(state)  # an unreadable bookmark as one line, not a traceback mid-sync
        move_old_bookmarks(state)
        super().load_state(state)

    @cached_property
    def end_date(self) -> dt.datetime | None:
        return self._parse_setting("end_date")

    @cached_property
    def start_date(self) -> dt.datetime | None:
        return self._parse_setting("start_date")

    def _resolve_report_metrics(self) -> None:
        """Resolve the metrics selected reports need first: a missing one is one line, before any record."""
        for stream in self.streams.values():
            if stream.selected and isinstance(stream, reports.ReportStream):
                stream.resolve_metrics()

    @cached_property
    def _metrics(self) -> list[dict]:
        """The account's metrics (one get_metrics read per run, only when a report needs it)."""
        return list(self.connection.paginate("/api/metrics"))

    @cached_property
    def conversion_metric_id(self) -> str:
        wanted = str(self.config.get("report_conversion_metric") or reports.DEFAULT_CONVERSION_METRIC).strip()
        return reports.resolve_metric(self._metrics, wanted, "report_conversion_metric", self.logger)

    @cached_property
    def aggregate_metric_ids(self) -> list[str]:
        names = self.config.get("metric_aggregates_metrics") or []
        if not names:
            return [self.conversion_metric_id]
        return [
            reports.resolve_metric(self._metrics, str(n).strip(), "metric_aggregates_metrics", self.logger)
            for n in names
        ]

    @cached_property
    def connection(self) -> KlaviyoConnection:
        """The one connection every stream shares (limiters are per account and endpoint)."""
        return KlaviyoConnection(self.config, logger=self.logger)

    @cached_property
    def custom_fields(self) -> CustomFieldDiscovery:
        """Custom-field scans, at most one per source for this tap instance."""
        depth = self.config.get("row_scan_depth", DEFAULT_ROW_SCAN_DEPTH)
        return CustomFieldDiscovery(self.connection, depth, self.logger)

    @override
    def discover_streams(self) -> list[KlaviyoStream]:
        self._check_settings()
        self._prefetch_custom_fields()
        readable = self._readable_stream_types()
        streams: list[KlaviyoStream] = []
        for stream_type in self._types_to_build(readable):
            source = getattr(stream_type, "custom_source", None)
            if source is None:
                streams.append(stream_type(self))
            else:
                name = stream_type.name  # type: ignore[misc]  # a class attribute of every stream here
                streams.append(stream_type(self, schema=self._schema_with_custom_fields(name, source)))
        if self.config.get("list_and_segment_streams") and self._can_read_groups():
            streams.extend(self._group_streams(reserved={stream.name for stream in streams}))
        elif self.input_catalog is not None:
            self._warn_about_catalog_group_streams()
        return streams

    def _builds(self, name: str) -> bool:
        """Whether the stream ``name`` is built: always, except in a sync from a catalog that deselects it.

        With ``list_and_segment_streams`` a catalog holds a stream per list and segment, often
        hundreds; each stream built had its schema read, resolved and copied by the SDK (its
        catalog, its stream maps) although the sync never reads it. With 370 lists and segments,
        a sync of one small stream took 3.65-3.76 s of CPU and 173 MB; with this and the catalog's
        deselected lists cut before parsing (tap_klaviyo/sync_catalog.py), 0.57-0.86 s and 69 MB
        (``scripts/benchmark.py --streams '' --group-catalog 10``).
        """
        catalog = self._sync_catalog()
        if catalog is None:
            return True
        entry = catalog.get_stream(name)
        return entry is None or stream_selected(entry.metadata)  # no entry: the SDK's default selection decides

    def _sync_catalog(self) -> Catalog | None:
        """The input catalog, once ``sync_all`` has started (None outside a sync, or without one)."""
        return self.input_catalog if self._building_for_sync else None

    def _types_to_build(self, stream_types: list[type[KlaviyoStream]]) -> list[type[KlaviyoStream]]:
        """The stream types whose stream is built (see ``_builds``), with their parents: a parent
        stream syncs its children, selected or not."""
        kept = {stream_type for stream_type in stream_types if self._builds(stream_type.name)}  # type: ignore[misc]  # a class attribute of every stream here
        for stream_type in list(kept):
            parent = stream_type.parent_stream_type
            while parent is not None:
                kept.add(parent)  # type: ignore[arg-type]  # parents of this tap's streams are its streams
                parent = parent.parent_stream_type
        return [stream_type for stream_type in stream_types if stream_type in kept]

    def _prefetch_custom_fields(self) -> None:
        """Start the custom-field scans discovery will need, while the scopes are probed.

        The scans and the probes each wait on Klaviyo's answers: run at once, discovery
        takes about as long as the slowest of them instead of all of them in a row.
        """
        if self.input_catalog is not None or not self.config.get("discover_custom_fields", True):
            return
        sources = {stream_type.custom_source for stream_type in STREAM_TYPES if hasattr(stream_type, "custom_source")}
        self.custom_fields.prefetch(sorted(sources, key=lambda source: source.name))

    # -- scopes: what the credentials can read ------------------------------------------

    def scopes_granted(self, scopes: t.Iterable[str]) -> dict[str, bool | None]:
        """Probe each scope once per run (see klaviyo_core.scopes)."""
        known = self.__dict__.setdefault("_scopes_known", {})
        unknown = [scope for scope in scopes if scope not in known]
        if unknown:
            known.update(probe_scopes(self.connection, unknown))
        return known

    @override
    def run_discovery(self) -> str:
        """``--discover``: the catalog of what the credentials can read (see ``_readable_stream_types``)."""
        self._probe_in_discovery = True
        return super().run_discovery()

    def _readable_stream_types(self) -> list[type[KlaviyoStream]]:
        """For ``--discover``: the stream types the credentials can read, naming the others.

        Otherwise every type: with a catalog, ``sync_all`` checks the selected streams'
        scopes; without one, it leaves out what cannot be read. Building streams then
        needs no request (an offline tap can still be built).
        """
        if self.input_catalog is not None or not getattr(self, "_probe_in_discovery", False):
            return list(STREAM_TYPES)
        operations = [stream_type.operation_id for stream_type in STREAM_TYPES]
        if self.config.get("list_and_segment_streams"):
            operations += ["get_lists", "get_segments"]
        granted = self.scopes_granted(scopes_of(operations))
        readable, left_out = [], {}
        for stream_type in STREAM_TYPES:
            missing = [s for s in endpoints.endpoint(stream_type.operation_id).scopes if granted.get(s) is False]
            if missing:
                left_out[stream_type.name] = missing  # type: ignore[misc]  # a class attribute of every stream here
            else:
                readable.append(stream_type)
        if left_out:
            named = "; ".join(f"{name} (needs {' '.join(scopes)})" for name, scopes in left_out.items())
            self.logger.warning(
                "The credentials cannot read %d stream%s, left out of the catalog: %s. "
                "Grant those scopes to the private key (or OAuth app) to include them.",
                len(left_out),
                "s" if len(left_out) != 1 else "",
                named,
            )
        return readable

    def _can_read_groups(self) -> bool:
        """For ``--discover`` with list_and_segment_streams: whether the list_/segment_ streams can be read."""
        if self.input_catalog is not None or not getattr(self, "_probe_in_discovery", False):
            return True
        needed = scopes_of(["get_profiles_for_list", "get_profiles_for_segment"])
        granted = self.scopes_granted(needed)
        missing = [scope for scope in needed if granted.get(scope) is False]
        if missing:
            self.logger.warning(
                "list_and_segment_streams is on but the credentials lack %s: no list_ or segment_ streams "
                "are in the catalog. Grant those scopes to include them.",
                " ".join(missing),
            )
        return not missing

    def missing_read_scopes(self, streams: t.Iterable[t.Any]) -> dict[str, list[str]]:
        """``{scope: [stream names]}`` for the scopes these streams need that the credentials lack."""
        streams = list(streams)
        granted = self.scopes_granted(scopes_of(stream.operation_id for stream in streams))
        missing: dict[str, list[str]] = {}
        for stream in streams:
            for scope in endpoints.endpoint(stream.operation_id).scopes:
                if granted.get(scope) is False:
                    missing.setdefault(scope, []).append(stream.name)
        return missing

    def selected_streams(self) -> list[KlaviyoStream]:
        # every stream of this tap is a KlaviyoStream (the SDK types them as Stream)
        return [t.cast("KlaviyoStream", stream) for stream in self.streams.values() if stream.selected]

    @override  # type: ignore[misc]  # final in the SDK; extended, then the SDK's runs
    def sync_all(self) -> None:
        """Check the selected streams' scopes, then the metrics selected reports need, before any record.

        With a catalog, every missing scope is named in one line and nothing is synced.
        Without one (every stream is selected), streams the credentials cannot read are
        left out with a warning naming them, as ``--discover`` leaves them out.
        """
        self._building_for_sync = True  # streams built from here on are those the sync needs
        missing = self.missing_read_scopes(self.selected_streams())
        if missing and self.input_catalog is not None:
            raise missing_scopes_error(missing, ", or deselect those streams in the catalog")
        if missing:
            left_out = sorted({name for names in missing.values() for name in names})
            self.logger.warning(
                "The credentials cannot read %s (missing %s): those streams are left out. "
                "Grant the scopes to the private key (or OAuth app) to sync them.",
                ", ".join(left_out),
                " ".join(sorted(missing)),
            )
            for name in left_out:
                self.streams.pop(name, None)
        self._resolve_report_metrics()  # after the scopes: the streams left out need no metric
        workers = int(self.config.get("max_concurrency") or DEFAULT_MAX_CONCURRENCY)
        if workers > 1:  # max_concurrency 1: one request at a time, none ahead
            streams = sync_order(t.cast("KlaviyoStream", stream) for stream in self.streams.values())
            self.stream_prefetch = StreamPrefetch(streams, workers=workers, logger=self.logger)
        try:
            super().sync_all()
        finally:
            if self.stream_prefetch is not None:
                self.stream_prefetch.close()
                self.stream_prefetch = None

    def _warn_about_catalog_group_streams(self) -> None:
        catalog = self.input_catalog
        if catalog is None:
            return
        for group in groups.groups_from_catalog(catalog, self._raw_catalog):
            entry = catalog.get_stream(group.stream_name)
            if entry and entry.metadata.root.selected:
                self.logger.warning(
                    "Catalog stream %s is selected but list_and_segment_streams is off: it is not synced. "
                    "Turn the setting on to sync it.",
                    group.stream_name,
                )

    def _schema_with_custom_fields(self, name: str, source: CustomFieldSource, base: dict | None = None) -> dict | None:
        """The input catalog's schema when given; else the discovered one (None: the static one)."""
        if self.input_catalog is not None:
            entry = self.input_catalog.get_stream(name)
            return entry.schema.to_dict() if entry else base
        if not self.config.get("discover_custom_fields", True):
            return base
        return with_custom_fields(base or load_schema(name), source.field, self.custom_fields.schema(source))

    @cached_property
    def _groups(self) -> list[groups.Group]:
        """The lists and segments to stream: from the input catalog, else from Klaviyo."""
        if self.input_catalog is not None:
            return groups.groups_from_catalog(self.input_catalog, self._raw_catalog)
        reserved = {stream_type.name for stream_type in STREAM_TYPES}  # type: ignore[misc]  # class attributes here
        return groups.name_streams(groups.groups_from_api(self.connection), reserved)

    def _group_streams(self, reserved: set[str]) -> list[KlaviyoStream]:
        profile_schema = load_schema("profiles")
        if self.input_catalog is None:
            # Every group's profiles carry the same custom fields: typed once, not in a deep copy of
            # the profile schema per group (--discover with 370 groups: peak RSS 180 -> 164 MB).
            profile_schema = (
                self._schema_with_custom_fields("profiles", PROFILE_FIELDS, profile_schema) or profile_schema
            )
        streams: list[KlaviyoStream] = []
        for group in self._groups:
            if group.stream_name in reserved:
                continue  # only a hand-made catalog can do this
            if not self._builds(group.stream_name):
                continue
            schema = groups.group_schema(profile_schema, group)
            if self.input_catalog is not None:  # the catalog's own schema of the group
                schema = self._schema_with_custom_fields(group.stream_name, PROFILE_FIELDS, schema) or schema
            streams.append(groups.GroupProfilesStream(self, group, schema))
        return streams

    @override
    @classmethod
    def cb_test(cls, ctx: t.Any, param: t.Any, value: str) -> None:
        """``--test`` is remembered, and run by ``invoke`` once click has read every option.

        click runs an option's callback as it meets the option, so ``--catalog`` written
        after ``--test`` would not be known yet here.
        """
        if value != CliTestOptionValue.Disabled.value:
            ctx.meta[TEST_MODE] = value

    @override
    @classmethod
    def invoke(  # type: ignore[override]  # the SDK's own signature, keyword-only
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: t.Any = None,
        state: t.IO[str] | None = None,
        catalog: t.IO[str] | None = None,
    ) -> None:
        mode = click.get_current_context().meta.get(TEST_MODE)
        if mode is None:
            if catalog is not None and not about:  # a sync: only the catalog entries it builds are parsed
                catalog = io.StringIO(sync_catalog.for_sync(catalog.read()))
            super().invoke(about=about, about_format=about_format, config=config, state=state, catalog=catalog)
        else:
            cls.run_test(mode, config, catalog)

    @classmethod
    def run_test(cls, mode: str, config: t.Any, catalog: t.IO[str] | None) -> None:
        """``--test`` checks what a sync needs: the credentials, and the read scope of each selected stream.

        It syncs no record, and builds the catalog only from ``--catalog`` when given
        (else every stream counts as selected and nothing is discovered). It prints what it
        found; a selected stream the credentials cannot read fails the test.
        ``--test=schema`` prints every stream's schema (it discovers).
        """
        checks = mode == CliTestOptionValue.All.value
        tap = cls(
            config=config.config if config else None,
            catalog=json.load(catalog) if checks and catalog is not None else None,
            parse_env_config=config.parse_env if config else False,
            validate_config=True,
            setup_mapper=not checks,  # the checks send no record; the schemas go through the stream maps
        )
        if checks:
            tap.run_connection_test()
        else:
            tap.write_schemas()

    @override  # type: ignore[misc]  # final in the SDK; one cheap call instead
    def run_connection_test(self) -> bool:
        """Check the credentials (GET /api/accounts, as Klaviyo suggests), then each selected stream's scopes."""
        account = (self.connection.get("/api/accounts").get("data") or [{}])[0]
        self.logger.info("Connected to Klaviyo account %s", account.get("id", "(unknown)"))
        # Without a catalog a sync would discover every stream the credentials can read:
        # the stream classes do here, as only their names and operations are needed.
        streams = self.selected_streams() if self.input_catalog is not None else list(STREAM_TYPES)
        missing = self.missing_read_scopes(streams)
        needed = scopes_of(stream.operation_id for stream in streams)
        for scope in needed:
            users = [
                stream.name  # type: ignore[misc]  # a class attribute of every stream here
                for stream in streams
                if scope in endpoints.endpoint(stream.operation_id).scopes
            ]
            state = "MISSING" if scope in missing else "granted"
            self.logger.info("Scope %s: %s (streams %s)", scope, state, ", ".join(users))
        if missing and self.input_catalog is not None:
            raise missing_scopes_error(missing, ", or deselect those streams in the catalog")
        if missing:
            self.logger.warning("A sync without --catalog leaves out the streams these scopes are needed for.")
        self.logger.info(
            "Test passed: %d stream%s can be synced",
            len(streams) - len({name for users in missing.values() for name in users}),
            "" if len(streams) == 1 else "s",
        )
        return True

    @override
    @classmethod
    def get_singer_command(cls) -> t.Any:
        """The SDK's command, with ``--test`` described as it behaves here."""
        command = super().get_singer_command()
        for option in command.params:
            if "--test" in getattr(option, "opts", ()):
                option.help = (
                    "Use --test to check the credentials and the read scope of each selected stream "
                    "(all streams without --catalog), printing what it finds; no record is synced. "
                    "Use --test=schema to print the schemas without syncing records."
                )
        return command


def cli() -> None:
    """Console entry point: the SDK's CLI, with Klaviyo errors shown as one line."""
    run_cli(TapKlaviyo.cli)
