"""Klaviyo streams: one small declaration per endpoint."""

from __future__ import annotations

import collections
import datetime as dt
import typing as t
from functools import cached_property
from urllib.parse import quote

from typing_extensions import override

from klaviyo_core import dates, filters
from klaviyo_core.client import decode_document
from tap_klaviyo.custom_fields import EVENT_FIELDS, PROFILE_FIELDS, CustomFieldsMixin
from tap_klaviyo.parallel import ChildPrefetch
from tap_klaviyo.reports import REPORT_STREAM_TYPES
from tap_klaviyo.stream import KlaviyoStream, profile_fields_params
from tap_klaviyo.windows import WHOLE_RANGE, Window

if t.TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context

    from tap_klaviyo.concurrency import Page

CAMPAIGN_CHANNELS = ("email", "sms", "mobile_push")


def archived_condition(context: Context | None) -> str:
    """Klaviyo leaves archived campaigns and flows out unless the filter asks for them
    (``equals`` is the only operator it allows on ``archived``): each pass says which it reads."""
    return filters.condition("equals", "archived", bool((context or {}).get("archived")))


class PrefetchedChildMixin:
    """A child stream whose contexts' first pages its parent has fetched ahead (:class:`ChildPrefetch`)."""

    @cached_property
    def prefetch(self) -> ChildPrefetch:
        stream = t.cast("KlaviyoStream", self)
        return ChildPrefetch(stream, stream.max_concurrency, fetch=super().fetch_page)  # type: ignore[misc]  # KlaviyoStream's

    def fetch_page(self, context: Context | None, window: Window, next_url: str | None = None) -> Page:
        if next_url is None:
            page = self.prefetch.first_page(context, window)
            if page is not None:
                return page
        return super().fetch_page(context, window, next_url)  # type: ignore[misc]  # KlaviyoStream's

    def expect(self, context: Context) -> None:
        """Fetch the context's first page ahead when its first window is known now.

        The SDK sets where a context starts (its bookmark, else ``start_date``) only when it
        syncs it: a context with a bookmark of its own is left to that sync; one without
        starts at ``start_date`` (capped at the run's start, as ``get_starting_timestamp``).
        The state is only read here: the SDK adds a context's entry when it syncs it.
        """
        stream = t.cast("KlaviyoStream", self)
        if stream.max_concurrency <= 1 or not (stream.selected or stream.has_selected_descendents):
            return
        if not stream.replication_key:
            window = WHOLE_RANGE
        else:
            partitions = stream.stream_state.get("partitions") or []
            if any(p.get("context") == context and p.get("replication_key_value") for p in partitions):
                return
            start = dates.parse(stream.config.get("start_date"))
            window = Window(min(start, stream.run_started_at(context)) if start else None, stream.end_date)
        self.prefetch.expect(context, window)


class PrefetchingParentMixin:
    """A parent stream that announces its records' child contexts a few records ahead.

    The SDK syncs a record's children before it takes the parent's next record: holding
    back a few records lets the children's first pages be fetched concurrently, while
    every record still goes out in order, each followed by its children.
    """

    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        stream = t.cast("KlaviyoStream", self)
        children = [c for c in stream.child_streams if isinstance(c, PrefetchedChildMixin)]
        if not children or stream.max_concurrency <= 1:
            yield from super().get_records(context)  # type: ignore[misc]  # KlaviyoStream's
            return
        ahead: collections.deque[dict] = collections.deque()
        try:
            for record in super().get_records(context):  # type: ignore[misc]
                for child_context in stream.generate_child_contexts(record, context):
                    for child in children:
                        if child_context is not None:
                            child.expect(child_context)
                ahead.append(record)
                if len(ahead) > 2 * stream.max_concurrency:
                    yield ahead.popleft()
            while ahead:
                yield ahead.popleft()
        finally:
            for child in children:
                child.prefetch.close()


class CampaignsStream(KlaviyoStream):
    """Campaigns, one pass per channel (Klaviyo requires a channel filter), live then archived.

    Klaviyo returns campaigns unsorted whatever ``sort`` says, so the stream is
    declared unsorted: its bookmark is committed when each pass ends. Archived
    campaigns are hidden unless asked for, so with ``include_archived`` each channel
    gets a second pass (``{"channel": ..., "archived": true}``) with its own bookmark;
    the live passes keep their ``{"channel": ...}`` bookmarks of earlier versions.
    """

    name = "campaigns"
    operation_id = "get_campaigns"
    replication_key = "updated_at"
    is_sorted = False
    sort = "updated_at"

    @override
    @property
    def partitions(self) -> list[dict]:
        archived = self.config.get("include_archived", True)
        return [
            context
            for channel in CAMPAIGN_CHANNELS
            for context in ({"channel": channel}, {"channel": channel, "archived": True})
            if archived or "archived" not in context
        ]

    @override
    def filter_conditions(self, context: Context | None, window: Window) -> list[str | None]:
        channel = (context or {})["channel"]
        return [
            filters.condition("equals", "messages.channel", channel),
            archived_condition(context),
            *super().filter_conditions(context, window),
        ]


class EventsStream(CustomFieldsMixin, KlaviyoStream):
    """Events in time order; they never change once written.

    ``event_properties`` is typed by custom-field discovery (see
    :mod:`tap_klaviyo.custom_fields`); misfits go to ``event_properties_unmapped``.
    With ``events_lookback`` an incremental run starts that long before its bookmark.
    """

    custom_source = EVENT_FIELDS
    name = "events"
    operation_id = "get_events"
    replication_key = "datetime"
    is_sorted = True
    sort = "datetime"
    parallel = True  # slices of the range fetched concurrently (tap_klaviyo.parallel)

    @override
    @property
    def lookback(self) -> dt.timedelta:
        """``events_lookback``: events Klaviyo receives late carry an earlier ``datetime``."""
        return self.klaviyo_tap.events_lookback


class FlowsStream(KlaviyoStream):
    """Flows, live then archived (with ``include_archived``): one pass and bookmark each.

    Klaviyo hides archived flows unless the filter asks for them. A bookmark of an
    earlier version (one for the stream) becomes the live pass's (tap_klaviyo.state).
    """

    name = "flows"
    operation_id = "get_flows"
    replication_key = "updated"
    is_sorted = True
    sort = "updated"

    @override
    @property
    def partitions(self) -> list[dict]:
        if self.config.get("include_archived", True):
            return [{"archived": False}, {"archived": True}]
        return [{"archived": False}]

    @override
    def filter_conditions(self, context: Context | None, window: Window) -> list[str | None]:
        return [archived_condition(context), *super().filter_conditions(context, window)]


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
    parallel = True  # slices of the range fetched concurrently (tap_klaviyo.parallel)

    @override
    @property
    def extra_params(self) -> dict[str, str]:  # type: ignore[override]
        return profile_fields_params(self.config)


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

    @override
    def filter_conditions(self, context: Context | None, window: Window) -> list[str | None]:
        return []  # the window is applied while reading (see in_window and reads_on)

    @override
    def reads_on(self, context: Context | None) -> bool:
        return not self._reached_bookmark

    @override
    def reads_whole_chain(self, window: Window) -> bool:
        return window.lower is None  # nothing to stop at without a bookmark or start_date

    @override
    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        self._reached_bookmark = False
        yield from super().get_records(context)

    @override
    def in_window(self, record: dict, window: Window) -> bool:
        value = dates.parse(record.get("updated"))
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
    # first pages are fetched while one is read (tap_klaviyo.parallel).
    parallel = True
    slice_key = "joined_group_at"
    sort = "joined_group_at"
    prefetch_ahead = False  # its contexts (the groups) take requests to find: its own reader is started ahead

    @override
    @cached_property
    def partitions(self) -> list[dict]:
        groups = self.connection.paginate(f"/api/{self.group_type}s", {f"fields[{self.group_type}]": "name"})
        return [{self.group_key: group["id"]} for group in groups]

    @override
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

    @override
    def skips_partition(self, context: Context | None) -> bool:
        if not context:
            return False
        # Read without adding the stream's entry to the state (``stream_state`` would): the
        # prefetch plans the groups while other streams sync (tap_klaviyo.prefetch).
        stream_state = (self.tap_state.get("bookmarks") or {}).get(self.name) or {}
        return context.get(self.group_key) in (stream_state.get(GROUPS_DONE) or ())

    def _log_resume(self, count: int) -> None:
        if not getattr(self, "_resume_logged", False):
            self._resume_logged = True
            self.logger.info(
                "%s: resuming an interrupted run, %d %ss already read in full are skipped",
                self.name,
                count,
                self.group_type,
            )

    @override
    def get_url(self, context: Context | None) -> str:
        group_id = quote(str((context or {})[self.group_key]), safe="")
        return f"{self.url_base}/api/{self.group_type}s/{group_id}/profiles"

    @override
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


# -- the content behind every send (docs/streams.md) -------------------------------------


class IncludedMixin:
    """Records that are the ``included`` resources of a parent collection's pages.

    One request per page of parents (50 flows, 100 campaigns) instead of one per
    parent. Each record gets its parent's id from the parent's relationship, which
    Klaviyo fills in; the included resource's own back link may be missing.
    """

    include: t.ClassVar[str]  # the parent's relationship, e.g. "campaign-messages"
    parent_key: t.ClassVar[str]  # the record's key for the parent's id, e.g. "campaign_id"

    @property
    def extra_params(self) -> dict[str, str]:
        return {"include": self.include}

    def page_records(self, response: requests.Response) -> list[dict]:
        document = decode_document(response)
        included = {(r["type"], r["id"]): r for r in document.get("included") or []}
        rows = []
        for parent in document.get("data") or []:
            refs = ((parent.get("relationships") or {}).get(self.include) or {}).get("data") or []
            for ref in refs:
                resource = included.get((ref["type"], ref["id"]))
                if resource is None:
                    continue  # JSON:API includes every related resource; nothing to emit otherwise
                record = self.to_record(resource)  # type: ignore[attr-defined]
                record[self.parent_key] = parent["id"]
                rows.append(record)
        return rows


class CampaignMessagesStream(IncludedMixin, CampaignsStream):  # type: ignore[override]  # extra_params: a property
    """Campaign messages (subject, preview text, sender, template) via ``include`` on campaigns.

    Full table: Klaviyo cannot filter messages on their own change time. Derived from
    the campaigns stream, so it reads every pass that stream reads (each channel, and
    archived campaigns when that stream reads them) with one request per page of 100
    campaigns.
    """

    name = "campaign_messages"
    replication_key = None  # type: ignore[assignment]  # full table, unlike campaigns
    include = "campaign-messages"
    parent_key = "campaign_id"
    # Full table: no bookmark to keep per pass. Only the channel of the pass goes into the
    # records (the SDK copies the state context into them); other pass keys stay out.
    state_partitioning_keys: t.ClassVar[list[str]] = ["channel"]


class FlowActionsStream(PrefetchingParentMixin, IncludedMixin, FlowsStream):  # type: ignore[override]  # extra_params: a property
    """Flow actions (type, status, settings) via ``include`` on flows: one request per 50 flows.

    Full table, derived from the flows stream like campaign messages from campaigns.
    """

    name = "flow_actions"
    replication_key = None  # type: ignore[assignment]  # full table, unlike flows
    include = "flow-actions"
    parent_key = "flow_id"
    state_partitioning_keys: t.ClassVar[list[str]] = []  # full table: nothing to keep per pass

    @override
    def generate_child_contexts(self, record: dict, context: Context | None) -> t.Iterable[Context | None]:
        """Only actions that can send something have messages: delays and splits cost no request."""
        action_type = (record.get("definition") or {}).get("type")
        if self.child_streams and action_type not in ACTIONS_WITHOUT_MESSAGES:
            yield {"flow_action_id": record["id"]}


#: Flow action types (the spec's ``definition.type``) that never have flow messages.
ACTIONS_WITHOUT_MESSAGES = frozenset(
    {
        "action-output-split",
        "back-in-stock-delay",
        "code",
        "conditional-split",
        "countdown-delay",
        "list-update",
        "multi-branch-split",
        "target-date",
        "time-delay",
        "trigger-split",
        "update-profile",
    }
)


class FlowMessagesStream(PrefetchedChildMixin, KlaviyoStream):
    """Messages of each flow action that sends one, incremental on ``updated`` per action.

    Klaviyo allows 3 requests a second here: the shared limiter paces them, the next
    actions' first pages fetched ahead (PrefetchedChildMixin). A bookmark per action
    lets a killed run resume.
    """

    name = "flow_messages"
    operation_id = "get_flow_action_messages"
    parent_stream_type = FlowActionsStream
    replication_key = "updated"
    is_sorted = True
    sort = "updated"

    @override
    def windows_from(self, start: dt.datetime | None, context: Context | None) -> list[Window]:
        """One pass per action, no tail pass: a second request per action would halve the pace.

        (A future-dated ``updated`` is still emitted; the bookmark is capped at the run's start.)
        """
        return [Window(start, self.end_date)]

    @override
    def get_url(self, context: Context | None) -> str:
        action_id = quote(str((context or {})["flow_action_id"]), safe="")
        return f"{self.url_base}/api/flow-actions/{action_id}/flow-messages"


class TemplatesStream(KlaviyoStream):
    """Templates with their HTML, and the drag-and-drop ``definition`` Klaviyo adds when asked."""

    name = "templates"
    operation_id = "get_templates"
    replication_key = "updated"
    is_sorted = True
    sort = "updated"
    extra_params: t.ClassVar[dict[str, str]] = {"additional-fields[template]": "definition"}


class TagsStream(KlaviyoStream):
    """Tags, resolving the ``tag_ids`` of campaigns and flows; no change time, so full table."""

    name = "tags"
    operation_id = "get_tags"


class TagGroupsStream(KlaviyoStream):
    name = "tag_groups"
    operation_id = "get_tag_groups"


class CatalogItemsStream(KlaviyoStream):
    """Catalog items; Klaviyo filters catalog resources on no change time, so full table."""

    name = "catalog_items"
    operation_id = "get_catalog_items"


class CatalogVariantsStream(KlaviyoStream):
    name = "catalog_variants"
    operation_id = "get_catalog_variants"


class CatalogCategoriesStream(KlaviyoStream):
    name = "catalog_categories"
    operation_id = "get_catalog_categories"


class CouponsStream(PrefetchingParentMixin, KlaviyoStream):
    name = "coupons"
    operation_id = "get_coupons"

    @override
    def generate_child_contexts(self, record: dict, context: Context | None) -> t.Iterable[Context | None]:
        if self.child_streams:
            yield {"coupon_id": record["id"]}


class CouponCodesStream(PrefetchedChildMixin, KlaviyoStream):
    """Codes of each coupon (Klaviyo requires a coupon filter); full table."""

    name = "coupon_codes"
    operation_id = "get_coupon_codes"
    parent_stream_type = CouponsStream

    @override
    def filter_conditions(self, context: Context | None, window: Window) -> list[str | None]:
        return [filters.condition("equals", "coupon.id", (context or {})["coupon_id"])]


class FormsStream(KlaviyoStream):
    name = "forms"
    operation_id = "get_forms"
    replication_key = "updated_at"
    is_sorted = True
    sort = "updated_at"


class ImagesStream(KlaviyoStream):
    name = "images"
    operation_id = "get_images"
    replication_key = "updated_at"
    is_sorted = True
    sort = "updated_at"


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
    CampaignMessagesStream,
    FlowActionsStream,
    FlowMessagesStream,
    TemplatesStream,
    TagsStream,
    TagGroupsStream,
    CatalogItemsStream,
    CatalogVariantsStream,
    CatalogCategoriesStream,
    CouponsStream,
    CouponCodesStream,
    FormsStream,
    ImagesStream,
    *REPORT_STREAM_TYPES,  # Reporting API, not selected by default (tap_klaviyo/reports.py)
)
