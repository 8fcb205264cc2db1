"""The Reporting API (campaign/flow values, flow/form/segment series) and metric aggregates.

Numbers are computed from the sandbox's own events with the attribution rule of
:mod:`klaviyo_sandbox.messages`; requests are validated as the spec describes them
(required attributes, statistic names, timeframe at most one year, interval limits).
Choices where Klaviyo's documentation is silent are marked "Choice".
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import json
import typing as t
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import filters, gen_catalog, messages
from .data import first_index
from .render import bad_request, document

DAY = dt.timedelta(days=1)
YEAR = dt.timedelta(days=366)  # "Max length: 1 year" (a leap year's worth allowed)
INTERVAL_LIMITS = {
    "hourly": dt.timedelta(days=7),
    "daily": dt.timedelta(days=60),
    "weekly": YEAR,
    "monthly": dt.timedelta(weeks=52),
}
SEGMENT_DATA_SINCE = dt.datetime(2023, 6, 1)  # "Data is unavailable before June 1st, 2023"
MESSAGE_STATISTICS = (
    "average_order_value",
    "bounce_rate",
    "bounced",
    "bounced_or_failed",
    "bounced_or_failed_rate",
    "click_rate",
    "click_to_open_rate",
    "clicks",
    "clicks_unique",
    "conversion_rate",
    "conversion_uniques",
    "conversion_value",
    "conversions",
    "delivered",
    "delivery_rate",
    "failed",
    "failed_rate",
    "message_segment_count_sum",
    "open_rate",
    "opens",
    "opens_unique",
    "recipients",
    "revenue_per_recipient",
    "spam_complaint_rate",
    "spam_complaints",
    "text_message_credit_usage_amount",
    "text_message_roi",
    "text_message_spend",
    "unsubscribe_rate",
    "unsubscribe_uniques",
    "unsubscribes",
)
FORM_STATISTICS = (
    "closed_form",
    "closed_form_uniques",
    "qualified_form",
    "qualified_form_uniques",
    "submit_rate",
    "submits",
    "submitted_form_step",
    "submitted_form_step_uniques",
    "viewed_form",
    "viewed_form_step",
    "viewed_form_step_uniques",
    "viewed_form_uniques",
)
SEGMENT_STATISTICS = ("members_added", "members_removed", "net_members_changed", "total_members")
CAMPAIGN_GROUPS = (
    "campaign_id",
    "campaign_message_id",
    "campaign_message_name",
    "group",
    "group_name",
    "send_channel",
    "tag_id",
    "tag_name",
    "text_message_format",
    "variation",
    "variation_name",
)
FLOW_GROUPS = (
    "flow_id",
    "flow_message_id",
    "flow_message_name",
    "flow_name",
    "send_channel",
    "tag_id",
    "tag_name",
    "text_message_format",
    "variation",
    "variation_name",
)
TIMEFRAME_KEYS = (
    "last_12_months",
    "last_30_days",
    "last_365_days",
    "last_3_months",
    "last_7_days",
    "last_90_days",
    "last_month",
    "last_week",
    "last_year",
    "this_month",
    "this_week",
    "this_year",
    "today",
    "yesterday",
)
MEASUREMENTS = ("count", "sum_value", "unique")
AGGREGATE_BY = (
    "$attributed_channel",
    "$attributed_flow",
    "$attributed_message",
    "$attributed_variation",
    "$campaign_channel",
    "$flow",
    "$flow_channel",
    "$message",
    "$message_send_cohort",
    "$usage_amount",
    "$value_currency",
    "$variation",
    "$variation_send_cohort",
    "Bot Click",
    "Bounce Type",
    "Campaign Name",
    "Client Canonical",
    "Client Name",
    "Client Type",
    "Email Domain",
    "Failure Source",
    "Failure Type",
    "From Number",
    "From Phone Region",
    "Inbox Provider",
    "List",
    "Message Format",
    "Message Name",
    "Message Type",
    "Method",
    "Segment Count",
    "Subject",
    "To Number",
    "To Phone Region",
    "URL",
    "form_id",
)
AGGREGATE_INTERVALS = {"hour": "hourly", "day": "daily", "week": "weekly", "month": "monthly"}
#: Engagement metric -> the tally it adds to.
TALLY = {
    "Received Email": "delivered",
    "Received SMS": "delivered",
    "Opened Email": "opens",
    "Clicked Email": "clicks",
    "Clicked SMS": "clicks",
    "Bounced Email": "bounced",
    "Marked Email as Spam": "spam_complaints",
    "Unsubscribed": "unsubscribes",
}
UNIQUE = {"opens": "opens_unique", "clicks": "clicks_unique", "unsubscribes": "unsubscribe_uniques"}
SMS_CREDIT_PRICE = 0.01  # Choice: the sandbox's price of one SMS credit


class Spec(t.NamedTuple):
    rtype: str
    statistics: tuple
    groups: tuple  # allowed group_by values (empty: no group_by attribute)
    default_groups: tuple
    required_groups: tuple
    series: bool
    conversion: bool


REPORTS = {
    "query_campaign_values": Spec(
        "campaign-values-report",
        MESSAGE_STATISTICS,
        CAMPAIGN_GROUPS,
        ("campaign_id", "campaign_message_id", "send_channel"),
        ("campaign_id", "campaign_message_id"),
        False,
        True,
    ),
    "query_flow_values": Spec(
        "flow-values-report",
        MESSAGE_STATISTICS,
        FLOW_GROUPS,
        ("flow_id", "flow_message_id", "send_channel"),
        ("flow_id", "flow_message_id"),
        False,
        True,
    ),
    "query_flow_series": Spec(
        "flow-series-report",
        MESSAGE_STATISTICS,
        FLOW_GROUPS,
        ("flow_id", "flow_message_id", "send_channel"),
        ("flow_id", "flow_message_id"),
        True,
        True,
    ),
    "query_form_series": Spec(
        "form-series-report", FORM_STATISTICS, ("form_id", "form_version_id"), ("form_id",), ("form_id",), True, False
    ),
    "query_segment_series": Spec("segment-series-report", SEGMENT_STATISTICS, (), ("segment_id",), (), True, False),
}
#: Groupings the sandbox can compute (the others exist in Klaviyo but need data the sandbox lacks).
SUPPORTED_GROUPS = {
    "campaign_id",
    "campaign_message_id",
    "send_channel",
    "flow_id",
    "flow_message_id",
    "form_id",
    "form_version_id",
    "segment_id",
}
#: Form metric -> the form statistic its events count (messages.FORM_METRICS).
FORM_TALLY = {"Viewed Form": "viewed_form", "Closed Form": "closed_form", "Submitted Form": "submits"}


# ---------------------------------------------------------------- request parsing
def _attributes(req, rtype: str) -> dict:
    try:
        body = json.loads(req.body or b"null")
    except ValueError:
        raise bad_request("The request body is not valid JSON.", pointer="/data") from None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise bad_request("'data' is a required field.", pointer="/data")
    if data.get("type") != rtype:
        raise bad_request(f"'data.type' must be '{rtype}'.", pointer="/data/type")
    attrs = data.get("attributes")
    if not isinstance(attrs, dict):
        raise bad_request("'attributes' is a required field.", pointer="/data/attributes")
    return attrs


def _names(attrs: dict, field: str, allowed: tuple, *, required: bool) -> list:
    value = attrs.get(field)
    pointer = f"/data/attributes/{field}"
    if value is None:
        if required:
            raise bad_request(f"'{field}' is a required field.", pointer=pointer)
        return []
    if not isinstance(value, list) or (required and not value):
        raise bad_request(f"'{field}' must be a non-empty list.", pointer=pointer)
    for name in value:
        if name not in allowed:
            raise bad_request(
                f"'{name}' is not a valid choice for {field}. Valid choices are: {', '.join(allowed)}.", pointer=pointer
            )
    return value


def company_zone(store) -> ZoneInfo:
    return ZoneInfo(gen_catalog.account(store.ds)["attributes"]["timezone"])


def _local(text, zone: ZoneInfo, pointer: str) -> dt.datetime:
    """A timeframe bound: Klaviyo ignores the offset and reads it in the company's timezone."""
    try:
        value = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f"'{text}' is not a valid datetime.", pointer=pointer) from None
    return value.replace(tzinfo=None).replace(tzinfo=zone)


def _timeframe(store, attrs: dict) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) in the company's timezone."""
    frame, pointer = attrs.get("timeframe"), "/data/attributes/timeframe"
    zone = company_zone(store)
    if not isinstance(frame, dict):
        raise bad_request("'timeframe' is a required field.", pointer=pointer)
    if "key" in frame:
        if frame["key"] not in TIMEFRAME_KEYS:
            raise bad_request(
                f"'{frame['key']}' is not a valid timeframe key. Valid keys are: {', '.join(TIMEFRAME_KEYS)}.",
                pointer=pointer + "/key",
            )
        return _keyed(frame["key"], dt.datetime.fromtimestamp(store.now(), zone))
    if "start" not in frame or "end" not in frame:
        raise bad_request("A timeframe needs a 'key', or a 'start' and an 'end'.", pointer=pointer)
    start, end = _local(frame["start"], zone, pointer + "/start"), _local(frame["end"], zone, pointer + "/end")
    if end <= start:
        raise bad_request("The timeframe's end must be after its start.", pointer=pointer)
    if end - start > YEAR:
        raise bad_request("The timeframe cannot be longer than 1 year.", pointer=pointer)
    return start, end


def _midnight(value: dt.datetime) -> dt.datetime:
    return value.replace(hour=0, minute=0, second=0, microsecond=0)


def _month(value: dt.datetime, back: int = 0) -> dt.datetime:
    months = value.year * 12 + value.month - 1 - back
    return _midnight(value).replace(year=months // 12, month=months % 12 + 1, day=1)


def _keyed(key: str, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """Choice: ``last_*`` ranges end at today's midnight (whole days, months, weeks from Monday)."""
    today = _midnight(now)
    monday = today - (today.weekday() * DAY)
    year = today.replace(month=1, day=1)
    days = {"last_7_days": 7, "last_30_days": 30, "last_90_days": 90, "last_365_days": 365}
    if key in days:
        return today - days[key] * DAY, today
    return {
        "today": (today, today + DAY),
        "yesterday": (today - DAY, today),
        "this_week": (monday, monday + 7 * DAY),
        "last_week": (monday - 7 * DAY, monday),
        "this_month": (_month(now), _month(now, -1)),
        "last_month": (_month(now, 1), _month(now)),
        "last_3_months": (_month(now, 3), _month(now)),
        "last_12_months": (_month(now, 12), _month(now)),
        "this_year": (year, year.replace(year=year.year + 1)),
        "last_year": (year.replace(year=year.year - 1), year),
    }[key]


def _interval(attrs: dict, start: dt.datetime, end: dt.datetime) -> str:
    interval, pointer = attrs.get("interval"), "/data/attributes/interval"
    if interval is None:
        raise bad_request("'interval' is a required field.", pointer=pointer)
    if interval not in INTERVAL_LIMITS:
        raise bad_request(
            f"'{interval}' is not a valid interval. Valid intervals are: {', '.join(sorted(INTERVAL_LIMITS))}.",
            pointer=pointer,
        )
    if end - start > INTERVAL_LIMITS[interval]:
        raise bad_request(
            f"The timeframe is too long for the {interval} interval (at most {INTERVAL_LIMITS[interval].days} days).",
            pointer=pointer,
        )
    return interval


def _conversion_metric(req, attrs: dict) -> str:
    metric_id, pointer = attrs.get("conversion_metric_id"), "/data/attributes/conversion_metric_id"
    if not metric_id:
        raise bad_request("'conversion_metric_id' is a required field.", pointer=pointer)
    if _metric_index(req.store, metric_id) is None:
        raise bad_request(f"Metric '{metric_id}' does not exist.", pointer=pointer)
    return metric_id


def _metric_index(store, metric_id) -> int | None:
    k = store.ds.metric_ids.index(str(metric_id))
    return k if k is not None and k < store.ds.n_metrics else None


def _group_by(spec: Spec, attrs: dict) -> list:
    pointer = "/data/attributes/group_by"
    if not spec.groups:
        if attrs.get("group_by") is not None:
            raise bad_request("'group_by' is not a valid field for this report.", pointer=pointer)
        return list(spec.default_groups)
    groups = _names(attrs, "group_by", spec.groups, required=False) or list(spec.default_groups)
    missing = [g for g in spec.required_groups if g not in groups]
    if missing:
        raise bad_request(
            f"The following group by attributes are required: {', '.join(spec.required_groups)}.", pointer=pointer
        )
    unsupported = [g for g in groups if g not in SUPPORTED_GROUPS]
    if unsupported:  # Klaviyo accepts these; the sandbox has no data for them
        raise bad_request(f"The sandbox cannot group by {', '.join(unsupported)}.", pointer=pointer)
    return groups


# ---------------------------------------------------------------- time buckets
def buckets(start: dt.datetime, end: dt.datetime, interval: str) -> list[dt.datetime]:
    """Interval starts (in start's timezone) from the one holding ``start`` up to ``end``."""
    zone = start.tzinfo
    if interval == "hourly":
        first = start.astimezone(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
        count = -(-int((end - first).total_seconds()) // 3600)
        return [(first + dt.timedelta(hours=n)).astimezone(zone) for n in range(count)]
    if interval == "monthly":
        step, current = None, _month(start)
    elif interval == "weekly":  # Choice: weeks start on Monday
        step, current = 7, _midnight(start) - start.weekday() * DAY
    else:
        step, current = 1, _midnight(start)
    out = []
    while current < end:
        out.append(current)
        if step is None:
            current = _month(current, -1)
        else:  # calendar arithmetic on the wall clock, then the zone's offset for that day
            current = (current.replace(tzinfo=None) + step * DAY).replace(tzinfo=zone)
    return out


def _epochs(values: list[dt.datetime]) -> list[float]:
    return [v.timestamp() for v in values]


# ---------------------------------------------------------------- events
def events_between(store, t0: float | None, t1: float | None) -> t.Iterator[dict]:
    """Generated and added events with t0 <= timestamp < t1 (None: unbounded)."""
    ds = store.ds
    lo = 0 if t0 is None else first_index(0, ds.n_events, lambda i: ds.e_datetime(i) >= t0)
    hi = ds.n_events if t1 is None else first_index(lo, ds.n_events, lambda i: ds.e_datetime(i) >= t1)
    for i in range(lo, hi):
        yield ds.event(i)
    with store.lock:
        added = list(store.new_events)
    for rec in added:
        ts = rec["attributes"]["timestamp"]
        if (t0 is None or ts >= t0) and (t1 is None or ts < t1):
            yield rec


class Tally:
    """Counts behind a message's statistics."""

    def __init__(self):
        self.counts = dict.fromkeys(
            (
                "delivered",
                "opens",
                "clicks",
                "bounced",
                "spam_complaints",
                "unsubscribes",
                "conversions",
                "sms_segments",
            ),
            0,
        )
        self.value = 0.0
        self.people: dict = {"opens": set(), "clicks": set(), "unsubscribes": set(), "conversions": set()}

    def add(self, kind: str, profile_id: str, value: float = 0.0, sms: bool = False):
        self.counts[kind] += 1
        if kind in self.people:
            self.people[kind].add(profile_id)
        if kind == "conversions":
            self.value += value
        if sms and kind == "delivered":
            self.counts["sms_segments"] += 1

    def statistics(self, names: list) -> dict:
        c = self.counts
        delivered, bounced = c["delivered"], c["bounced"]
        recipients = delivered + bounced  # the sandbox has no failed sends
        opens_u, clicks_u = len(self.people["opens"]), len(self.people["clicks"])
        conv_u, unsub_u = len(self.people["conversions"]), len(self.people["unsubscribes"])
        spend = round(c["sms_segments"] * SMS_CREDIT_PRICE, 2)
        value = round(self.value, 2)
        every = {
            "recipients": recipients,
            "delivered": delivered,
            "bounced": bounced,
            "failed": 0,
            "bounced_or_failed": bounced,
            "opens": c["opens"],
            "opens_unique": opens_u,
            "clicks": c["clicks"],
            "clicks_unique": clicks_u,
            "spam_complaints": c["spam_complaints"],
            "unsubscribes": c["unsubscribes"],
            "unsubscribe_uniques": unsub_u,
            "conversions": c["conversions"],
            "conversion_uniques": conv_u,
            "conversion_value": value,
            "message_segment_count_sum": c["sms_segments"],
            "text_message_credit_usage_amount": c["sms_segments"],
            "text_message_spend": spend,
            "text_message_roi": ratio(value - spend, spend),
            "delivery_rate": ratio(delivered, recipients),
            "bounce_rate": ratio(bounced, recipients),
            "failed_rate": 0.0,
            "bounced_or_failed_rate": ratio(bounced, recipients),
            "open_rate": ratio(opens_u, delivered),
            "click_rate": ratio(clicks_u, delivered),
            "click_to_open_rate": ratio(clicks_u, opens_u),
            "conversion_rate": ratio(conv_u, delivered),
            "unsubscribe_rate": ratio(unsub_u, delivered),
            "spam_complaint_rate": ratio(c["spam_complaints"], delivered),
            "average_order_value": ratio(value, c["conversions"]),
            "revenue_per_recipient": ratio(value, delivered),
        }
        return {name: every[name] for name in names}


def ratio(a: float, b: float) -> float:
    """Choice: a rate with nothing to divide by is 0 (not null), rounded to 6 places."""
    return round(a / b, 6) if b else 0.0


def tally_events(store, events: t.Iterable[dict], wanted: dict, conversion_metric: str) -> dict:
    """(message id, bucket or None) -> Tally, for messages in ``wanted`` (id -> Message)."""
    names: dict = {}
    out: dict = {}
    for rec in events:
        metric_id = rec["relationships"]["metric"]["id"]
        name = names.get(metric_id)
        if name is None:
            k = _metric_index(store, metric_id)
            name = names[metric_id] = store.ds.small("metric", k)["attributes"]["name"] if k is not None else ""
        props = rec["attributes"]["event_properties"] or {}
        profile_id = rec["relationships"]["profile"]["id"]
        kind = TALLY.get(name)
        if kind and props.get("$message") in wanted:
            out.setdefault(props["$message"], Tally()).add(kind, profile_id, sms=name.endswith("SMS"))
        if metric_id == conversion_metric and props.get("$attributed_message") in wanted:
            value = props.get("$value")
            value = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
            out.setdefault(props["$attributed_message"], Tally()).add("conversions", profile_id, value)
    return out


def _groupings(message: messages.Message, groups: list) -> dict:
    values = {
        "campaign_id": message.campaign_id,
        "campaign_message_id": message.id,
        "flow_id": message.flow_id,
        "flow_message_id": message.id,
        "send_channel": messages.SEND_CHANNEL[message.channel],
    }
    return {g: values[g] for g in groups}


# ---------------------------------------------------------------- handlers
def report(op: str):
    spec = REPORTS[op]

    def handler(req):
        from .api import check_params  # noqa: PLC0415 - api imports this module

        check_params(req)
        attrs = _attributes(req, spec.rtype)
        statistics = _names(attrs, "statistics", spec.statistics, required=True)
        start, end = _timeframe(req.store, attrs)
        interval = _interval(attrs, start, end) if spec.series else None
        conversion = _conversion_metric(req, attrs) if spec.conversion else None
        groups = _group_by(spec, attrs)
        if attrs.get("filter") is not None:
            raise bad_request("The sandbox does not support report filters.", pointer="/data/attributes/filter")
        if op == "query_segment_series" and start.replace(tzinfo=None) < SEGMENT_DATA_SINCE:
            raise bad_request(
                "Data is unavailable before June 1st, 2023. Please use a time frame after this date.",
                pointer="/data/attributes/timeframe",
            )
        attributes = COMPUTE[op](req.store, statistics, start, end, interval, conversion, groups)
        return 200, document({"type": spec.rtype, "attributes": attributes}, {"self": f"{req.base}{req.path}/"})

    return handler


def campaign_values(store, statistics, start, end, interval, conversion, groups):
    """Campaigns sent within the timeframe, with all their events.

    Klaviyo's Reporting API overview: "performance in the Klaviyo UI is calculated based on send date"
    (unlike metric aggregates, which filter on event time).
    """
    ds, t0, t1 = store.ds, start.timestamp(), end.timestamp()
    wanted = {}
    for k in range(ds.n_campaigns):
        send_time = ds.small("campaign", k)["attributes"]["send_time"]
        if messages.is_sent(ds, k) and send_time and t0 <= dt.datetime.fromisoformat(send_time).timestamp() < t1:
            wanted.update({m.id: m for m in messages.campaign_messages(ds, k)})
    tallies = tally_events(store, events_between(store, None, None), wanted, conversion)
    results = [
        {"groupings": _groupings(m, groups), "statistics": tallies.get(m.id, Tally()).statistics(statistics)}
        for m in sorted(wanted.values())
    ]
    return {"results": results}


def _flow_wanted(ds) -> dict:
    return {m.id: m for k in range(ds.n_flows) for m in messages.flow_messages(ds, k)}


def flow_values(store, statistics, start, end, interval, conversion, groups):
    """Flow messages with events in the timeframe (events dated within it)."""
    wanted = _flow_wanted(store.ds)
    tallies = tally_events(store, events_between(store, start.timestamp(), end.timestamp()), wanted, conversion)
    results = [
        {"groupings": _groupings(wanted[mid], groups), "statistics": tallies[mid].statistics(statistics)}
        for mid in sorted(tallies)
    ]
    return {"results": results}


def flow_series(store, statistics, start, end, interval, conversion, groups):
    wanted = _flow_wanted(store.ds)
    starts = buckets(start, end, interval)
    edges = _epochs(starts)
    by_bucket: dict = {}
    for rec in events_between(store, start.timestamp(), end.timestamp()):
        slot = bisect.bisect_right(edges, rec["attributes"]["timestamp"]) - 1
        by_bucket.setdefault(slot, []).append(rec)
    per_slot = {slot: tally_events(store, recs, wanted, conversion) for slot, recs in by_bucket.items()}
    active = sorted({mid for tallies in per_slot.values() for mid in tallies})
    results = []
    for mid in active:
        rows = [per_slot.get(slot, {}).get(mid, Tally()).statistics(statistics) for slot in range(len(starts))]
        results.append(
            {
                "groupings": _groupings(wanted[mid], groups),
                "statistics": {name: [row[name] for row in rows] for name in statistics},
            }
        )
    return {"results": results, "date_times": [s.isoformat() for s in starts]}


class FormTally:
    """Counts behind a form's statistics (events of the form metrics naming the form)."""

    def __init__(self):
        self.counts = dict.fromkeys(FORM_TALLY.values(), 0)
        self.people: dict = {kind: set() for kind in FORM_TALLY.values()}

    def add(self, kind: str, profile_id: str):
        self.counts[kind] += 1
        self.people[kind].add(profile_id)

    def statistics(self, names: list) -> dict:
        """Choice: the sandbox's forms have one step and show to everyone who qualifies, so the step
        statistics are the form's, and qualifying is viewing. ``submit_rate`` = submits / views."""
        views, views_u = self.counts["viewed_form"], len(self.people["viewed_form"])
        submits, submits_u = self.counts["submits"], len(self.people["submits"])
        every = {
            "viewed_form": views,
            "viewed_form_uniques": views_u,
            "qualified_form": views,
            "qualified_form_uniques": views_u,
            "viewed_form_step": views,
            "viewed_form_step_uniques": views_u,
            "submits": submits,
            "submitted_form_step": submits,
            "submitted_form_step_uniques": submits_u,
            "submit_rate": ratio(submits, views),
            "closed_form": self.counts["closed_form"],
            "closed_form_uniques": len(self.people["closed_form"]),
        }
        return {name: every[name] for name in names}


def form_series(store, statistics, start, end, interval, conversion, groups):
    """Forms with form events in the timeframe (``form_id``/``form_version_id`` of the event)."""
    starts = buckets(start, end, interval)
    edges = _epochs(starts)
    metric_kinds = {
        store.ds.metric_id(k): FORM_TALLY.get(store.ds.small("metric", k)["attributes"]["name"])
        for k in range(store.ds.n_metrics)
    }
    per_group: dict = {}
    for rec in events_between(store, start.timestamp(), end.timestamp()):
        kind = metric_kinds.get(rec["relationships"]["metric"]["id"])
        props = rec["attributes"]["event_properties"] or {}
        if not kind or not props.get("form_id"):
            continue
        key = tuple(props.get(g) for g in groups)
        slot = bisect.bisect_right(edges, rec["attributes"]["timestamp"]) - 1
        tallies = per_group.setdefault(key, [FormTally() for _ in starts])
        tallies[slot].add(kind, rec["relationships"]["profile"]["id"])
    results = []
    for key in sorted(per_group, key=lambda k: tuple(str(v) for v in k)):
        rows = [tally.statistics(statistics) for tally in per_group[key]]
        results.append(
            {
                "groupings": dict(zip(groups, key)),
                "statistics": {name: [row[name] for row in rows] for name in statistics},
            }
        )
    return {"results": results, "date_times": [s.isoformat() for s in starts]}


def segment_series(store, statistics, start, end, interval, conversion, groups):
    """Members join at their ``joined_group_at`` and are never removed (generated segments)."""
    ds = store.ds
    starts = buckets(start, end, interval)
    edges = _epochs(starts) + [end.timestamp()]
    results = []
    for j in range(ds.n_segments):
        g = ds.group("segment", j)
        joined = sorted(ds.joined_at(g, i) for i in range(ds.n_profiles) if ds.is_member(g, i))
        added = [bisect.bisect_left(joined, b) - bisect.bisect_left(joined, a) for a, b in itertools.pairwise(edges)]
        every = {
            "members_added": added,
            "members_removed": [0] * len(added),
            "net_members_changed": added,
            "total_members": [bisect.bisect_left(joined, b) for b in edges[1:]],
        }
        results.append({"groupings": {"segment_id": g.id}, "statistics": {n: every[n] for n in statistics}})
    return {"results": results, "date_times": [s.isoformat() for s in starts]}


COMPUTE = {
    "query_campaign_values": campaign_values,
    "query_flow_values": flow_values,
    "query_flow_series": flow_series,
    "query_form_series": form_series,
    "query_segment_series": segment_series,
}


# ---------------------------------------------------------------- metric aggregates
def metric_aggregates(req):
    from .api import check_params  # noqa: PLC0415 - api imports this module

    check_params(req)
    attrs = _attributes(req, "metric-aggregate")
    metric_id = attrs.get("metric_id")
    if not metric_id or _metric_index(req.store, metric_id) is None:
        raise bad_request(f"Metric '{metric_id}' does not exist.", pointer="/data/attributes/metric_id")
    measurements = _names(attrs, "measurements", MEASUREMENTS, required=True)
    by = _names(attrs, "by", AGGREGATE_BY, required=False)
    interval = attrs.get("interval") or "day"
    if interval not in AGGREGATE_INTERVALS:
        raise bad_request(f"'{interval}' is not a valid interval.", pointer="/data/attributes/interval")
    try:
        zone = ZoneInfo(attrs.get("timezone") or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise bad_request(
            f"'{attrs.get('timezone')}' is not a valid timezone.", pointer="/data/attributes/timezone"
        ) from None
    start, end = _aggregate_range(attrs.get("filter"), zone)
    starts = buckets(start, end, AGGREGATE_INTERVALS[interval])
    edges = _epochs(starts)
    groups: dict = {}
    for rec in events_between(req.store, start.timestamp(), end.timestamp()):
        if rec["relationships"]["metric"]["id"] != metric_id:
            continue
        props = rec["attributes"]["event_properties"] or {}
        key = tuple(_dimension(props.get(name)) for name in by)
        slot = bisect.bisect_right(edges, rec["attributes"]["timestamp"]) - 1
        cells = groups.setdefault(key, [[0, 0.0, set()] for _ in starts])
        value = props.get("$value")
        cells[slot][0] += 1
        cells[slot][1] += float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
        cells[slot][2].add(rec["relationships"]["profile"]["id"])
    data = []
    for key in sorted(groups):
        cells = groups[key]
        every = {
            "count": [c[0] for c in cells],
            "sum_value": [round(c[1], 2) for c in cells],
            "unique": [len(c[2]) for c in cells],
        }
        data.append({"dimensions": list(key), "measurements": {m: every[m] for m in measurements}})
    body = {
        "type": "metric-aggregate",
        "id": f"{metric_id}-{int(start.timestamp())}",
        "attributes": {"dates": [s.isoformat() for s in starts], "data": data},
        "links": {"self": f"{req.base}{req.path}/"},
    }
    return 200, document(body, {"self": f"{req.base}{req.path}/"})


def _dimension(value) -> str:
    """Choice: an event without the property is grouped under the empty string."""
    return "" if value is None else str(value)


def _aggregate_range(conditions, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """The ``greater-or-equal``/``less-than`` datetime filters the spec requires."""
    pointer = "/data/attributes/filter"
    if not isinstance(conditions, list) or not conditions:
        raise bad_request("'filter' must list a greater-or-equal and a less-than datetime filter.", pointer=pointer)
    bounds: dict = {}
    for text in conditions:
        try:
            parsed = filters.parse(str(text))
        except filters.FilterError as exc:
            raise bad_request(str(exc), pointer=pointer) from None
        for cond in parsed:
            if cond.field != "datetime" or cond.op not in ("greater-or-equal", "less-than"):
                raise bad_request(f"The sandbox supports only datetime ranges in filter, not {text}.", pointer=pointer)
            bounds[cond.op] = _in_zone(cond.value, zone, pointer)
    if set(bounds) != {"greater-or-equal", "less-than"}:
        raise bad_request("'filter' must list a greater-or-equal and a less-than datetime filter.", pointer=pointer)
    start, end = bounds["greater-or-equal"], bounds["less-than"]
    if end <= start:
        raise bad_request("The filter's less-than datetime must be after its greater-or-equal one.", pointer=pointer)
    if end - start > YEAR:  # Choice: the Reporting API's one-year cap, applied here too
        raise bad_request("The datetime range cannot be longer than 1 year.", pointer=pointer)
    return start, end


def _in_zone(value, zone: ZoneInfo, pointer: str) -> dt.datetime:
    if isinstance(value, filters.Dt):
        value = value.text  # naive times are read in the query's timezone, not UTC
    if isinstance(value, dt.datetime):
        parsed = value
    else:
        try:
            parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise bad_request(f"'{value}' is not a valid datetime.", pointer=pointer) from None
    return parsed.replace(tzinfo=zone) if parsed.tzinfo is None else parsed.astimezone(zone)
