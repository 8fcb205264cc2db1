"""Klaviyo streams: one small declaration per endpoint."""

from __future__ import annotations

import typing as t
from functools import cached_property
from urllib.parse import quote

from klaviyo_core import filters
from tap_klaviyo.client import KlaviyoStream, NextLinkPaginator, Window, _parse
from tap_klaviyo.custom_fields import EVENT_FIELDS, PROFILE_FIELDS, CustomFieldsMixin

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

CAMPAIGN_CHANNELS = ("email", "sms", "mobile_push")


class CampaignsStream(KlaviyoStream):
    """Campaigns, one pass per channel (Klaviyo requires a channel filter).

    Klaviyo returns campaigns unsorted whatever ``sort`` says, so the stream is
    declared unsorted: its bookmark is committed when each channel's pass ends.
    """

    name = "campaigns"
    operation_id = "get_campaigns"
    replication_key = "updated_at"
    is_sorted = False
    sort = "updated_at"

    @property
    def partitions(self) -> list[dict]:
        return [{"channel": channel} for channel in CAMPAIGN_CHANNELS]

    def filter_conditions(self, context: Context | None) -> list[str | None]:
        channel = (context or {})["channel"]
        return [filters.condition("equals", "messages.channel", channel), *super().filter_conditions(context)]


class EventsStream(CustomFieldsMixin, KlaviyoStream):
    """Events in time order; they never change once written.

    ``event_properties`` is typed by custom-field discovery (see
    :mod:`tap_klaviyo.custom_fields`); misfits go to ``event_properties_unmapped``.
    """

    custom_source = EVENT_FIELDS
    name = "events"
    operation_id = "get_events"
    replication_key = "datetime"
    is_sorted = True
    sort = "datetime"
    parallel = True  # slices of the range fetched concurrently (tap_klaviyo.concurrency)


class FlowsStream(KlaviyoStream):
    name = "flows"
    operation_id = "get_flows"
    replication_key = "updated"
    is_sorted = True
    sort = "updated"


class ListsStream(KlaviyoStream):
    """Lists. Klaviyo filters ``updated`` with ``greater-than`` only and no upper bound."""

    name = "lists"
    operation_id = "get_lists"
    replication_key = "updated"
    is_sorted = False
    sort = "updated"
    lower_bound_operator = "greater-than"
    bounded_above = False


class SegmentsStream(ListsStream):
    name = "segments"
    operation_id = "get_segments"


class MetricsStream(KlaviyoStream):
    """Metrics, discovered from the account (no names are assumed); small, so full table."""

    name = "metrics"
    operation_id = "get_metrics"


class ProfilesStream(CustomFieldsMixin, KlaviyoStream):
    """Profiles with their subscriptions; predictive analytics only when asked for.

    ``updated`` accepts only ``greater-than``/``less-than``, so the lower bound
    looks back one second and records before the bookmark are dropped.
    ``properties`` is typed by custom-field discovery (see
    :mod:`tap_klaviyo.custom_fields`); misfits go to ``properties_unmapped``.
    """

    custom_source = PROFILE_FIELDS
    name = "profiles"
    operation_id = "get_profiles"
    replication_key = "updated"
    is_sorted = True
    sort = "updated"
    lower_bound_operator = "greater-than"
    parallel = True  # slices of the range fetched concurrently (tap_klaviyo.concurrency)

    @property
    def extra_params(self) -> dict[str, str]:  # type: ignore[override]
        fields = ["subscriptions"]
        if self.config.get("include_predictive_analytics"):
            fields.append("predictive_analytics")
        return {"additional-fields[profile]": ",".join(fields)}


class ReviewsStream(KlaviyoStream):
    """Reviews, incremental on ``updated`` although Klaviyo can only filter ``created``.

    Reviews change after they are written (status, replies), so a ``created``
    bookmark would miss edits. Pages are read newest-``updated`` first and reading
    stops at the first review older than the bookmark: nothing is missed and old
    reviews are not read again.
    """

    name = "reviews"
    operation_id = "get_reviews"
    replication_key = "updated"
    is_sorted = False
    sort = "-updated"
    bounded_above = False

    def filter_conditions(self, context: Context | None) -> list[str | None]:
        return []  # the window is applied while reading (see in_window and has_more)

    def get_new_paginator(self) -> NextLinkPaginator:
        return NextLinkPaginator(stop=lambda: self._reached_bookmark)

    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        self._reached_bookmark = False
        yield from super().get_records(context)

    def in_window(self, record: dict, window: Window) -> bool:
        value = _parse(record.get("updated"))
        if window.lower and value and value < window.lower:
            self._reached_bookmark = True
        return super().in_window(record, window)


#: Stream state key: the groups an interrupted run read in full (cleared when a run reads all).
GROUPS_DONE = "groups_done"


class _MembersStream(KlaviyoStream):
    """Who is in each list or segment: (group id, profile id) with ``joined_group_at``.

    Full table: Klaviyo does not report removals incrementally, so only a complete
    read gives the true membership. Every group is read, not only changed ones.
    """

    group_type: t.ClassVar[str]
    group_key: t.ClassVar[str]
    extra_params: t.ClassVar[dict[str, str]] = {"fields[profile]": "joined_group_at"}
    # Big groups are read as joined_group_at slices in parallel, and the next groups'
    # first pages are fetched while one is read (tap_klaviyo.concurrency).
    parallel = True
    slice_key = "joined_group_at"
    sort = "joined_group_at"

    @cached_property
    def partitions(self) -> list[dict]:  # type: ignore[override]
        groups = self.connection.paginate(f"/api/{self.group_type}s", {f"fields[{self.group_type}]": "name"})
        return [{self.group_key: group["id"]} for group in groups]

    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        if not context or self.group_key not in context:
            return  # no lists (segments) at all: the SDK then syncs once without a partition
        done = self.stream_state.setdefault(GROUPS_DONE, [])
        if self.skips_partition(context):
            self._log_resume(len(done))  # read in full by the interrupted run this one resumes
        else:
            yield from super().get_records(context)
            done.append(context[self.group_key])  # in the next STATE (every page or so): a kill resumes after it
        if context == self.partitions[-1]:
            self.stream_state.pop(GROUPS_DONE, None)  # every group read: the next run reads all again

    def skips_partition(self, context: Context | None) -> bool:
        return bool(context) and context.get(self.group_key) in (self.stream_state.get(GROUPS_DONE) or ())

    def _log_resume(self, count: int) -> None:
        if not getattr(self, "_resume_logged", False):
            self._resume_logged = True
            self.logger.info(
                "%s: resuming an interrupted run, %d %ss already read in full are skipped",
                self.name, count, self.group_type,
            )

    def get_url(self, context: Context | None) -> str:
        group_id = quote(str((context or {})[self.group_key]), safe="")
        return f"{self.url_base}/api/{self.group_type}s/{group_id}/profiles"

    def to_record(self, resource: dict) -> dict:
        return {
            "profile_id": resource["id"],
            "joined_group_at": (resource.get("attributes") or {}).get("joined_group_at"),
        }


class ListMembersStream(_MembersStream):
    name = "list_members"
    operation_id = "get_profiles_for_list"
    group_type = "list"
    group_key = "list_id"
    primary_keys = ("list_id", "profile_id")


class SegmentMembersStream(_MembersStream):
    name = "segment_members"
    operation_id = "get_profiles_for_segment"
    group_type = "segment"
    group_key = "segment_id"
    primary_keys = ("segment_id", "profile_id")


STREAM_TYPES: tuple[type[KlaviyoStream], ...] = (
    CampaignsStream,
    EventsStream,
    FlowsStream,
    ListsStream,
    MetricsStream,
    ProfilesStream,
    ReviewsStream,
    SegmentsStream,
    ListMembersStream,
    SegmentMembersStream,
)
