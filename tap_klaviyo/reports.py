"""Klaviyo's Reporting API and metric aggregates as streams (see docs/reports.md).

A report is one POST that answers for every campaign, flow message, form or segment
at once, so the tap asks once per report and timeframe, never once per campaign.
The report endpoints allow 1 request a second, 2 a minute and 225 a day per account:
pacing comes from the shared limiter (``klaviyo_core.ratelimit``); the daily cap is
kept by a budget persisted in each report's state, counted per UTC day. When it is
spent the report is deferred, with a log line, and its state tells the next run where
to resume.

Report streams are not selected by default: they spend a scarce daily quota.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import typing as t
from functools import cached_property
from importlib import resources

from typing_extensions import override

from klaviyo_core import dates, endpoints
from klaviyo_core.client import JSONAPI, decode_document
from klaviyo_core.errors import KlaviyoError, KlaviyoQuotaExhausted
from tap_klaviyo.stream import KlaviyoStream, load_schema
from tap_klaviyo.windows import WHOLE_RANGE, Window

if t.TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context

DEFAULT_CONVERSION_METRIC = "Placed Order"
DEFAULT_DAILY_BUDGET = 100
DEFAULT_VALUES_WINDOW_DAYS = 30
DEFAULT_INTERVAL = "daily"
DEFAULT_LOOKBACK_INTERVALS = 3
#: A first run without start_date reads this far back; no run reads further back than a year.
DEFAULT_BACKFILL = dt.timedelta(days=30)
MAX_BACKFILL = dt.timedelta(days=365)
#: The longest timeframe one series request may cover, per interval (the spec's limits;
#: "weekly" has none stated, so the one-year cap of every timeframe applies).
MAX_TIMEFRAME = {
    "hourly": dt.timedelta(days=7),
    "daily": dt.timedelta(days=60),
    "weekly": dt.timedelta(days=364),
    "monthly": dt.timedelta(weeks=52),
}
AGGREGATE_INTERVAL = {"hourly": "hour", "daily": "day", "weekly": "week", "monthly": "month"}
AGGREGATE_PAGE_SIZE = 500  # Klaviyo's default page_size of metric aggregates


def report_options() -> dict:
    """Allowed setting values, generated from the spec (scripts/generate_from_spec.py)."""
    return json.loads(resources.files("tap_klaviyo").joinpath("report_options.json").read_text())


def dimension_column(name: str) -> str:
    """A ``by`` dimension as a column name: ``$attributed_message`` -> ``attributed_message``."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def utc_day(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).date().isoformat()


# -- time arithmetic on interval boundaries (UTC calendar) --------------------------


def floor_to(moment: dt.datetime, interval: str) -> dt.datetime:
    moment = moment.astimezone(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
    if interval == "hourly":
        return moment
    moment = moment.replace(hour=0)
    if interval == "weekly":
        return moment - dt.timedelta(days=moment.weekday())  # weeks start on Monday
    if interval == "monthly":
        return moment.replace(day=1)
    return moment


def step(moment: dt.datetime, interval: str, count: int = 1) -> dt.datetime:
    """``count`` intervals after (or before, when negative) a boundary."""
    if interval == "monthly":
        months = moment.year * 12 + moment.month - 1 + count
        return moment.replace(year=months // 12, month=months % 12 + 1)
    unit = {"hourly": dt.timedelta(hours=1), "daily": dt.timedelta(days=1), "weekly": dt.timedelta(days=7)}
    return moment + unit[interval] * count


def chunks(start: dt.datetime, end: dt.datetime, interval: str) -> list[tuple[dt.datetime, dt.datetime]]:
    """[start, end) (interval boundaries) cut into the fewest timeframes one request may cover."""
    out = []
    while start < end:
        stop = step(start, interval)
        while stop < end and step(stop, interval) - start <= MAX_TIMEFRAME[interval]:
            stop = step(stop, interval)
        out.append((start, stop))
        start = stop
    return out


def timeframe(start: dt.datetime, end: dt.datetime) -> dict:
    """A custom timeframe. Klaviyo reads it in the account's timezone (the offset is ignored)."""
    return {"start": start.isoformat(), "end": end.isoformat()}


class DailyBudget:
    """Requests to one report endpoint this pipeline may still make today (UTC).

    Kept in the stream's state as ``{"day": "YYYY-MM-DD", "requests": n}``, so every run
    of an hourly schedule sees what the earlier runs of the day spent.
    """

    def __init__(self, state: dict, limit: int, today: str) -> None:
        entry = state.get("report_requests")
        if not isinstance(entry, dict) or entry.get("day") != today:
            entry = state["report_requests"] = {"day": today, "requests": 0}
        self.entry, self.limit = entry, limit

    @property
    def used(self) -> int:
        count = self.entry.get("requests") or 0
        # An unreadable count (a hand-edited state) is taken as spent: never exceed the cap.
        return count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else self.limit

    def take(self) -> bool:
        """Count one request, or say False when the day's budget is spent."""
        if self.used >= self.limit:
            return False
        self.entry["requests"] = self.used + 1
        return True

    def exhaust(self) -> None:
        """Klaviyo itself says the day's quota is spent: no more requests today."""
        self.entry["requests"] = max(self.used, self.limit)


class ReportStream(KlaviyoStream):
    """A POST report: the request body is the report query, the answer one document.

    Subclasses declare the operation, request type, groupings and statistics;
    ``timeframes`` plans the requests and ``records`` turns an answer into rows.
    """

    http_method = "POST"
    selected_by_default = False  # reports spend a daily quota of 225 requests: opt in
    request_type: t.ClassVar[str]
    groupings: t.ClassVar[tuple[str, ...]]
    needs_conversion_metric: t.ClassVar[bool] = False

    @override
    @property
    def metadata(self) -> t.Any:
        """Only the stream is off by default: selecting it selects its columns (as for any stream)."""
        metadata = super().metadata
        for breadcrumb, entry in metadata.items():
            if breadcrumb and entry.selected_by_default is False:
                entry.selected_by_default = True
        return metadata

    @override
    @property
    def http_headers(self) -> dict:
        return {**self.connection.headers, "Content-Type": JSONAPI}

    @override
    def request_params(self, context: Context | None, window: Window) -> dict[str, t.Any]:
        return {}  # the query is the body

    @cached_property
    def statistics(self) -> list[str]:
        """Every statistic the spec allows: the schema's columns that are not keys."""
        fixed = {*self.groupings, "date_time", "timeframe_start", "timeframe_end", "conversion_metric_id"}
        return [name for name in self.schema["properties"] if name not in fixed]

    @property
    def conversion_metric_id(self) -> str | None:
        return self.klaviyo_tap.conversion_metric_id if self.needs_conversion_metric else None

    def resolve_metrics(self) -> None:
        """Look up the metrics this report needs (raises a one-line error when one is missing)."""
        _ = self.conversion_metric_id

    @override
    def prepare_request_payload(self, context: Context | None, next_page_token: t.Any) -> dict:
        attributes: dict[str, t.Any] = {"statistics": self.statistics, "timeframe": timeframe(*self._timeframe)}
        if self.conversion_metric_id:
            attributes["conversion_metric_id"] = self.conversion_metric_id
        if self.request_type != "segment-series-report":  # segment reports group by segment, implicitly
            attributes["group_by"] = list(self.groupings)
        return {"data": {"type": self.request_type, "attributes": {**attributes, **self.extra_attributes()}}}

    def extra_attributes(self) -> dict:
        return {}

    # -- planning within the daily budget ---------------------------------------------

    @cached_property
    def _started_at(self) -> dt.datetime:
        return dates.utc_now()

    @override
    def run_started_at(self, context: Context | None) -> dt.datetime:
        return self._started_at

    @property
    def now(self) -> dt.datetime:
        """The run's "now": end_date when it bounds a backfill."""
        started = self.run_started_at(None)
        return min(started, self.end_date) if self.end_date else started

    def timeframes(self, state: dict) -> list[tuple[dt.datetime, dt.datetime]]:
        raise NotImplementedError

    def done(self, state: dict, frame: tuple[dt.datetime, dt.datetime]) -> None:
        """Record in the state that a timeframe was read (series move their start on)."""

    @override
    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        state = self.get_context_state(context)
        daily = endpoints.endpoint(self.operation_id).daily
        budget = DailyBudget(state, self.daily_budget(daily), utc_day(self.run_started_at(context))) if daily else None
        planned = self.timeframes(state)
        with self.get_http_request_counter() as counter:
            counter.with_context(context)
            for number, frame in enumerate(planned):
                if budget is not None and not budget.take():
                    self._log_deferred(budget, len(planned) - number, frame)
                    return
                self._timeframe = frame
                try:
                    page = self.fetch_page(context, WHOLE_RANGE)  # one answer per request
                except KlaviyoQuotaExhausted as exc:
                    if budget is None:
                        raise
                    budget.exhaust()
                    self.logger.warning("Report %s deferred to the next run: %s", self.name, exc)
                    return
                counter.increment()
                yield from page.records
                self.done(state, frame)

    def daily_budget(self, daily: int) -> int:
        return min(daily, int(self.config.get("report_daily_request_budget") or DEFAULT_DAILY_BUDGET))

    def _log_deferred(self, budget: DailyBudget, left: int, frame: tuple[dt.datetime, dt.datetime]) -> None:
        self.logger.warning(
            "Report %s deferred: %d of %d requests of its daily budget (report_daily_request_budget) are "
            "spent for %s (UTC); %d request(s) left for the next run after midnight UTC, from %s.",
            self.name,
            budget.used,
            budget.limit,
            budget.entry["day"],
            left,
            frame[0].isoformat(),
        )

    # -- answers -----------------------------------------------------------------------

    @override
    def page_records(self, response: requests.Response) -> list[dict]:
        attributes = (decode_document(response).get("data") or {}).get("attributes") or {}
        return list(self.records(attributes))

    def records(self, attributes: dict) -> t.Iterable[dict]:
        raise NotImplementedError

    @override
    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        return row  # rows are built from the schema's own columns


class ValuesReportStream(ReportStream):
    """Totals per message over a window ending with today: one request per run.

    Keyed by the groupings only, so every run replaces a message's row with the
    latest window's numbers (``timeframe_start``/``timeframe_end`` say which).
    """

    needs_conversion_metric = True

    @override
    def timeframes(self, state: dict) -> list[tuple[dt.datetime, dt.datetime]]:
        days = int(self.config.get("report_values_window_days") or DEFAULT_VALUES_WINDOW_DAYS)
        end = step(floor_to(self.now, "daily"), "daily")  # through the end of today
        return [(end - dt.timedelta(days=days), end)]

    @override
    def records(self, attributes: dict) -> t.Iterable[dict]:
        start, end = self._timeframe
        for result in attributes.get("results") or []:
            yield {
                **{key: (result.get("groupings") or {}).get(key) for key in self.groupings},
                "timeframe_start": start.isoformat(),
                "timeframe_end": end.isoformat(),
                "conversion_metric_id": self.conversion_metric_id,
                **{name: (result.get("statistics") or {}).get(name) for name in self.statistics},
            }


class SeriesReportStream(ReportStream):
    """One row per grouping and interval; each run re-reads the last few intervals.

    State ``next_start`` is the first interval not yet complete when last read; a run
    starts ``report_lookback_intervals`` before it (late conversions) and moves it on
    as each timeframe is read, so a deferred run resumes where it stopped.
    """

    @property
    def interval(self) -> str:
        return str(self.config.get("report_interval") or DEFAULT_INTERVAL)

    @override
    def extra_attributes(self) -> dict:
        return {"interval": self.interval}

    @override
    def timeframes(self, state: dict) -> list[tuple[dt.datetime, dt.datetime]]:
        interval, now = self.interval, self.now
        end = step(floor_to(now, interval), interval)  # through the current (partial) interval
        resume = dates.parse(state.get("next_start"))  # checked by tap_klaviyo.state
        if resume:
            lookback = int(self.config.get("report_lookback_intervals", DEFAULT_LOOKBACK_INTERVALS))
            start = step(floor_to(min(resume, now), interval), interval, -lookback)
        else:
            start = self.klaviyo_tap.start_date or now - DEFAULT_BACKFILL
        start = floor_to(max(start, now - MAX_BACKFILL), interval)
        return chunks(start, end, interval)

    @override
    def done(self, state: dict, frame: tuple[dt.datetime, dt.datetime]) -> None:
        state["next_start"] = min(frame[1], floor_to(self.now, self.interval)).isoformat()

    @override
    def records(self, attributes: dict) -> t.Iterable[dict]:
        dates = attributes.get("date_times") or []
        for result in attributes.get("results") or []:
            keys = {key: (result.get("groupings") or {}).get(key) for key in self.groupings}
            statistics = result.get("statistics") or {}
            for index, date_time in enumerate(dates):
                row = {**keys, "date_time": date_time}
                if self.needs_conversion_metric:
                    row["conversion_metric_id"] = self.conversion_metric_id
                for name in self.statistics:
                    values = statistics.get(name)
                    row[name] = values[index] if isinstance(values, list) and index < len(values) else None
                yield row


class CampaignValuesReportStream(ValuesReportStream):
    name = "campaign_values_report"
    operation_id = "query_campaign_values"
    request_type = "campaign-values-report"
    groupings = ("campaign_id", "campaign_message_id", "send_channel")
    primary_keys = groupings  # a rerun replaces a message's row


class FlowValuesReportStream(ValuesReportStream):
    name = "flow_values_report"
    operation_id = "query_flow_values"
    request_type = "flow-values-report"
    groupings = ("flow_id", "flow_message_id", "send_channel")
    primary_keys = groupings


class FlowSeriesReportStream(SeriesReportStream):
    name = "flow_series_report"
    operation_id = "query_flow_series"
    request_type = "flow-series-report"
    groupings = ("flow_id", "flow_message_id", "send_channel")
    primary_keys = (*groupings, "date_time")
    needs_conversion_metric = True


class FormSeriesReportStream(SeriesReportStream):
    name = "form_series_report"
    operation_id = "query_form_series"
    request_type = "form-series-report"
    groupings = ("form_id",)
    primary_keys = (*groupings, "date_time")


class SegmentSeriesReportStream(SeriesReportStream):
    name = "segment_series_report"
    operation_id = "query_segment_series"
    request_type = "segment-series-report"
    groupings = ("segment_id",)
    primary_keys = (*groupings, "date_time")


class MetricAggregatesStream(SeriesReportStream):
    """Count, sum of ``$value`` and unique profiles per metric and interval, by chosen dimensions.

    One partition per metric of ``metric_aggregates_metrics`` (default: the conversion
    metric); ``metric_aggregates_by`` adds one key column per dimension.
    """

    name = "metric_aggregates"
    operation_id = "query_metric_aggregates"
    request_type = "metric-aggregate"
    groupings = ()

    def __init__(self, tap: t.Any, schema: dict | None = None, name: str | None = None) -> None:
        super().__init__(tap, schema=schema or self.schema_for(tap.config), name=name)
        # Per instance: the dimensions come from a setting.
        self.primary_keys = ("metric_id", "date", *(dimension_column(by) for by in self.by))  # type: ignore[misc]

    @classmethod
    def schema_for(cls, config: t.Mapping[str, t.Any]) -> dict:
        base = load_schema(cls.name)
        by = config.get("metric_aggregates_by") or []
        dimensions = {dimension_column(name): {"type": ["string", "null"]} for name in by}
        properties = dict(base["properties"])
        keys = ("metric_id", "date")
        return {**base, "properties": {**{k: properties.pop(k) for k in keys}, **dimensions, **properties}}

    @property
    def by(self) -> list[str]:
        return list(self.config.get("metric_aggregates_by") or [])

    @override
    @property
    def statistics(self) -> list[str]:
        fixed = {"metric_id", "date", *(dimension_column(by) for by in self.by)}
        return [name for name in self.schema["properties"] if name not in fixed]

    @override
    @cached_property
    def partitions(self) -> list[dict]:
        return [{"metric_id": metric_id} for metric_id in self.klaviyo_tap.aggregate_metric_ids]

    @override
    def resolve_metrics(self) -> None:
        _ = self.partitions

    @override
    def prepare_request_payload(self, context: Context | None, next_page_token: t.Any) -> dict:
        start, end = self._timeframe
        attributes = {
            "metric_id": (context or {})["metric_id"],
            "measurements": self.statistics,
            "interval": AGGREGATE_INTERVAL[self.interval],
            "by": self.by,
            "timezone": "UTC",
            "filter": [
                f"greater-or-equal(datetime,{start.strftime('%Y-%m-%dT%H:%M:%S')})",
                f"less-than(datetime,{end.strftime('%Y-%m-%dT%H:%M:%S')})",
            ],
        }
        return {"data": {"type": self.request_type, "attributes": attributes}}

    @override
    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        self._metric_id = (context or {}).get("metric_id")
        yield from super().get_records(context)

    @override
    def records(self, attributes: dict) -> t.Iterable[dict]:
        dates = attributes.get("dates") or []
        groups = attributes.get("data") or []
        if len(groups) >= AGGREGATE_PAGE_SIZE:
            self.logger.warning(
                "Stream %s: Klaviyo returned %d groups, a full page; later pages are not read. "
                "Use fewer metric_aggregates_by dimensions or a shorter report_interval.",
                self.name,
                len(groups),
            )
        columns = [dimension_column(by) for by in self.by]
        for group in groups:
            values = group.get("dimensions") or []
            measurements = group.get("measurements") or {}
            for index, date in enumerate(dates):
                row = {"metric_id": self._metric_id, "date": date, **dict(zip(columns, values))}
                for name in self.statistics:
                    series = measurements.get(name)
                    row[name] = series[index] if isinstance(series, list) and index < len(series) else None
                yield row


REPORT_STREAM_TYPES: tuple[type[ReportStream], ...] = (
    CampaignValuesReportStream,
    FlowValuesReportStream,
    FlowSeriesReportStream,
    FormSeriesReportStream,
    SegmentSeriesReportStream,
    MetricAggregatesStream,
)


# -- the conversion metric ------------------------------------------------------------


def resolve_metric(metrics: list[dict], wanted: str, setting: str, logger: t.Any) -> str:
    """A metric id from an id or a name; one-line error naming ``setting`` when absent.

    Several metrics can share a name (Shopify's and an API "Placed Order"): the one of an
    eCommerce integration wins, then the oldest; the choice is logged.
    """
    for metric in metrics:
        if metric["id"] == wanted:
            return wanted
    named = [m for m in metrics if (m.get("attributes") or {}).get("name") == wanted]
    if not named:
        named = [m for m in metrics if str((m.get("attributes") or {}).get("name", "")).lower() == wanted.lower()]
    if not named:
        raise KlaviyoError(
            f"Setting {setting}: this Klaviyo account has no metric with the id or name {wanted!r}. "
            f"Set {setting} to the name or id of an existing metric (the metrics stream lists them)."
        )
    named.sort(key=_metric_preference)
    if len(named) > 1:
        logger.warning(
            "Several metrics are named %r (%s); using %s. Set %s to a metric id to choose another.",
            wanted,
            ", ".join(m["id"] for m in named),
            named[0]["id"],
            setting,
        )
    return named[0]["id"]


def _metric_preference(metric: dict) -> tuple:
    attributes = metric.get("attributes") or {}
    category = ((attributes.get("integration") or {}).get("category") or "").lower()
    return (category != "ecommerce", attributes.get("created") or "", metric["id"])
