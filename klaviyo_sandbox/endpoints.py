"""Per-operation facts copied from Klaviyo's OpenAPI spec (revision 2026-07-15).

Copied rather than loaded at runtime so the sandbox works without the spec file.
Sources: `x-klaviyo-ratelimit`, `x-klaviyo-filters`, the `page[size]`, `sort`,
`include` and `additional-fields[...]` parameter schemas of each operation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DT4 = ("greater-or-equal", "greater-than", "less-or-equal", "less-than")


@dataclass(frozen=True)
class FieldSpec:
    single: tuple = ()
    list: tuple = ()
    none: tuple = ()
    type: str = "string"  # string | datetime | boolean | number | integer
    enum: tuple = ()


@dataclass(frozen=True)
class Endpoint:
    op: str
    rtype: str  # JSON:API type of the primary data
    burst: int  # per second
    steady: int  # per minute
    daily: int = 0
    page: tuple | None = None  # (default, min, max)
    filters: dict = field(default_factory=dict)
    sorts: tuple = ()
    includes: tuple = ()
    additional: tuple = ()  # allowed additional-fields values for rtype
    filter_required: bool = False


def S(*ops, t="string", enum=()):  # noqa: N802 - short names keep the endpoint table readable
    return FieldSpec(single=ops, type=t, enum=enum)


def L(single=(), lst=("any", "equals"), t="string", enum=()):  # noqa: N802 - as S
    return FieldSpec(single=single, list=lst, type=t, enum=enum)


CAMPAIGN_STATUS = (
    "Scheduled",
    "Sent",
    "Draft",
    "Cancelled",
    "Adding Recipients",
    "Sending",
    "Variations Sent",
    "Sending Segments",
    "Cancelled: Smart Sending",
    "Preparing to send",
    "Cancelled: Account Disabled",
    "Cancelled: No Recipients",
    "Preparing to schedule",
    "Cancelled: Internal Error",
    "Queued without Recipients",
    "Cancelled: Billing Limit",
    "Cancelled: Misconfigured",
    "Unknown",
)
TRIGGER_TYPES = ("Metric", "Added to List", "Unconfigured", "Date Based", "Price Drop", "Low Inventory")
COUPON_CODE_STATUS = ("ASSIGNED_TO_PROFILE", "DELETING", "PROCESSING", "UNASSIGNED", "USED", "VERSION_NOT_ACTIVE")
MEMBER_FILTERS = {
    "email": L(),
    "phone_number": L(),
    "push_token": L(),
    "_kx": S("equals"),
    "joined_group_at": S(*DT4, t="datetime"),
}
PROFILE_ADDITIONAL = ("subscriptions", "predictive_analytics")
MEMBER_SORTS = ("joined_group_at",)

ENDPOINTS = {
    e.op: e
    for e in [
        Endpoint("get_accounts", "account", 1, 15),
        Endpoint(
            "get_campaigns",
            "campaign",
            10,
            150,
            page=(100, 1, 100),
            filter_required=True,
            filters={
                "id": FieldSpec(list=("any",)),
                "messages.channel": S("equals", enum=("email", "sms", "mobile_push")),
                "name": S("contains"),
                "status": L(single=("equals",), enum=CAMPAIGN_STATUS),
                "archived": S("equals", t="boolean"),
                "created_at": S(*DT4, t="datetime"),
                "scheduled_at": S(*DT4, t="datetime"),
                "updated_at": S(*DT4, t="datetime"),
            },
            sorts=("created_at", "id", "name", "scheduled_at", "updated_at"),
            includes=("campaign-messages", "tags"),
        ),
        Endpoint(
            "get_events",
            "event",
            350,
            3500,
            page=(200, 1, 1000),
            filters={
                "metric_id": FieldSpec(single=("equals",), list=("equals",)),
                "profile_id": S("equals"),
                "profile": FieldSpec(none=("has",)),
                "metric": FieldSpec(none=("has",)),
                "datetime": S(*DT4, t="datetime"),
                "timestamp": S(*DT4, t="number"),
            },
            sorts=("datetime", "timestamp"),
            includes=("attributions", "metric", "profile"),
        ),
        Endpoint(
            "get_flows",
            "flow",
            3,
            60,
            page=(50, 1, 50),
            filters={
                "id": FieldSpec(list=("any",)),
                "name": S("contains", "ends-with", "equals", "starts-with"),
                "status": S("equals"),
                "archived": S("equals", t="boolean"),
                "created": S("equals", *DT4, t="datetime"),
                "updated": S("equals", *DT4, t="datetime"),
                "trigger_type": S("equals", enum=TRIGGER_TYPES),
            },
            sorts=("created", "id", "name", "status", "trigger_type", "updated"),
            includes=("flow-actions", "tags"),
        ),
        Endpoint(
            "get_lists",
            "list",
            75,
            750,
            page=(10, 1, 10),
            filters={
                "name": L(),
                "id": L(single=("equals",)),
                "created": S("greater-than", t="datetime"),
                "updated": S("greater-than", t="datetime"),
            },
            sorts=("created", "id", "name", "updated"),
            includes=("flow-triggers", "tags"),
        ),
        Endpoint("get_list", "list", 75, 750, includes=("flow-triggers", "tags"), additional=("profile_count",)),
        Endpoint("create_list", "list", 10, 150, daily=150),
        Endpoint("delete_list", "list", 10, 150),
        Endpoint(
            "get_metrics",
            "metric",
            10,
            150,
            filters={"integration.name": S("equals"), "integration.category": S("equals")},
            includes=("flow-triggers",),
        ),
        Endpoint(
            "get_profiles",
            "profile",
            75,
            750,
            page=(20, 1, 100),
            filters={
                "id": L(single=("equals",)),
                "email": L(single=("equals",)),
                "phone_number": L(single=("equals",)),
                "external_id": L(single=("equals",)),
                "_kx": S("equals"),
                "created": S("greater-than", "less-than", t="datetime"),
                "updated": S("greater-than", "less-than", t="datetime"),
                "subscriptions.email.marketing.list_suppressions.reason": S("equals"),
                "subscriptions.email.marketing.list_suppressions.timestamp": S(*DT4, t="datetime"),
                "subscriptions.email.marketing.list_suppressions.list_id": S("equals"),
                "subscriptions.email.marketing.suppression.reason": S("equals"),
                "subscriptions.email.marketing.suppression.timestamp": S(*DT4, t="datetime"),
            },
            sorts=(
                "created",
                "email",
                "id",
                "subscriptions.email.marketing.list_suppressions.timestamp",
                "subscriptions.email.marketing.suppression.timestamp",
                "updated",
            ),
            includes=("conversations", "push-tokens"),
            additional=PROFILE_ADDITIONAL,
        ),
        Endpoint(
            "get_reviews",
            "review",
            10,
            150,
            page=(20, 1, 100),
            filters={
                "created": S("greater-or-equal", "less-or-equal", t="datetime"),
                "rating": L(single=("equals", "greater-or-equal", "less-or-equal"), t="integer"),
                "id": L(single=("equals",)),
                "item.id": L(single=("equals",)),
                "content": S("contains"),
                "status": S("equals", enum=("published", "unpublished", "rejected", "featured", "pending", "all")),
                "review_type": S("equals", enum=("question", "review", "rating", "store")),
                "verified": S("equals", t="boolean"),
            },
            sorts=("created", "rating", "updated"),
            includes=("events",),
        ),
        Endpoint(
            "get_segments",
            "segment",
            75,
            750,
            page=(10, 1, 10),
            filters={
                "name": L(),
                "id": L(single=("equals",)),
                "created": S("greater-than", t="datetime"),
                "updated": S("greater-than", t="datetime"),
                "is_active": L(single=("equals",), t="boolean"),
                "is_starred": S("equals", t="boolean"),
            },
            sorts=("created", "id", "name", "updated"),
            includes=("flow-triggers", "tags"),
        ),
        Endpoint(
            "get_profiles_for_list",
            "profile",
            75,
            750,
            page=(20, 1, 100),
            filters=MEMBER_FILTERS,
            sorts=MEMBER_SORTS,
            additional=PROFILE_ADDITIONAL,
        ),
        Endpoint(
            "get_profile_ids_for_list",
            "profile",
            75,
            750,
            page=(20, 1, 100),
            filters=MEMBER_FILTERS,
            sorts=MEMBER_SORTS,
        ),
        Endpoint("add_profiles_to_list", "profile", 10, 150),
        Endpoint("remove_profiles_from_list", "profile", 10, 150),
        Endpoint(
            "get_profiles_for_segment",
            "profile",
            75,
            750,
            page=(20, 1, 100),
            filters={"profile_id": L(), **MEMBER_FILTERS},
            sorts=MEMBER_SORTS,
            additional=PROFILE_ADDITIONAL,
        ),
        Endpoint(
            "get_profile_ids_for_segment",
            "profile",
            75,
            750,
            page=(20, 1, 100),
            filters={"profile_id": L(), **MEMBER_FILTERS},
            sorts=MEMBER_SORTS,
        ),
        Endpoint(
            "get_bulk_import_profiles_jobs",
            "profile-bulk-import-job",
            10,
            150,
            page=(20, 1, 100),
            filters={"status": S("equals", enum=("queued", "processing", "complete"))},
            sorts=("created_at",),
            includes=("lists",),
        ),
        Endpoint("bulk_import_profiles", "profile-bulk-import-job", 10, 150),
        Endpoint("get_bulk_import_profiles_job", "profile-bulk-import-job", 10, 150, includes=("lists",)),
        Endpoint("get_errors_for_bulk_import_profiles_job", "import-error", 10, 150, page=(20, 1, 100)),
        # The content behind every send (klaviyo_sandbox.gen_content).
        Endpoint(
            "get_flow_action_messages",
            "flow-message",
            3,
            60,
            page=(50, 1, 50),
            filters={
                "id": FieldSpec(list=("any",)),
                "name": S("contains", "ends-with", "equals", "starts-with"),
                "created": S("equals", *DT4, t="datetime"),
                "updated": S("equals", *DT4, t="datetime"),
            },
            sorts=("created", "id", "name", "updated"),
        ),
        Endpoint(
            "get_templates",
            "template",
            75,
            750,
            page=(10, 1, 10),
            filters={
                "id": L(single=("equals",)),
                "name": L(single=("contains", "equals")),
                "created": S("equals", *DT4, t="datetime"),
                "updated": S("equals", *DT4, t="datetime"),
            },
            sorts=("created", "id", "name", "updated"),
            additional=("definition",),
        ),
        Endpoint(
            "get_tags",
            "tag",
            3,
            60,
            page=(50, 1, 50),
            filters={"name": L(single=("contains", "ends-with", "equals", "starts-with"), lst=("equals",))},
            sorts=("id", "name"),
            includes=("tag-group",),
        ),
        Endpoint(
            "get_tag_groups",
            "tag-group",
            3,
            60,
            page=(25, 1, 25),
            filters={
                "name": L(single=("contains", "ends-with", "equals", "starts-with"), lst=("equals",)),
                "exclusive": S("equals", t="boolean"),
                "default": S("equals", t="boolean"),
            },
            sorts=("id", "name"),
        ),
        Endpoint(
            "get_catalog_items",
            "catalog-item",
            350,
            3500,
            page=(100, 1, 100),
            filters={
                "ids": FieldSpec(list=("any",)),
                "category.id": S("equals"),
                "title": S("contains"),
                "published": S("equals", t="boolean"),
            },
            sorts=("created",),
            includes=("variants",),
        ),
        Endpoint(
            "get_catalog_variants",
            "catalog-variant",
            350,
            3500,
            page=(100, 1, 100),
            filters={
                "ids": FieldSpec(list=("any",)),
                "item.id": S("equals"),
                "sku": S("equals"),
                "title": S("contains"),
                "published": S("equals", t="boolean"),
            },
            sorts=("created",),
        ),
        Endpoint(
            "get_catalog_categories",
            "catalog-category",
            350,
            3500,
            page=(100, 1, 100),
            filters={"ids": FieldSpec(list=("any",)), "item.id": S("equals"), "name": S("contains")},
            sorts=("created",),
        ),
        Endpoint("get_coupons", "coupon", 75, 750, page=(100, 1, 100)),
        Endpoint(
            "get_coupon_codes",
            "coupon-code",
            350,
            3500,
            page=(100, 1, 100),
            filters={
                "expires_at": S(*DT4, t="datetime"),
                "status": S("equals", enum=COUPON_CODE_STATUS),
                "coupon.id": L(single=("equals",), lst=("any",)),
                "profile.id": L(single=("equals",), lst=("any",)),
            },
            includes=("coupon",),
        ),
        Endpoint(
            "get_forms",
            "form",
            3,
            60,
            page=(20, 1, 100),
            filters={
                "id": L(single=("equals",), lst=("any",)),
                "name": L(single=("contains", "equals"), lst=("any",)),
                "ab_test": S("equals", t="boolean"),
                "updated_at": S(*DT4, t="datetime"),
                "created_at": S(*DT4, t="datetime"),
                "status": S("equals", enum=("draft", "live")),
            },
            sorts=("created_at", "updated_at"),
        ),
        Endpoint(
            "get_images",
            "image",
            10,
            150,
            page=(20, 1, 100),
            filters={
                "id": L(single=("equals",), lst=("any",)),
                "updated_at": S(*DT4, t="datetime"),
                "format": L(single=("equals",), lst=("any",)),
                "name": L(single=("contains", "ends-with", "equals", "starts-with"), lst=("any",)),
                "size": S(*DT4, t="integer"),
                "hidden": L(single=("equals",), lst=("any",), t="boolean"),
            },
            sorts=("format", "id", "name", "size", "updated_at"),
        ),
        Endpoint("bulk_subscribe_profiles", "profile-subscription-bulk-create-job", 75, 750),
        Endpoint("bulk_unsubscribe_profiles", "profile-subscription-bulk-delete-job", 75, 750),
        Endpoint("bulk_suppress_profiles", "profile-suppression-bulk-create-job", 75, 750),
        Endpoint("get_bulk_suppress_profiles_job", "profile-suppression-bulk-create-job", 75, 750),
        Endpoint("bulk_unsuppress_profiles", "profile-suppression-bulk-delete-job", 75, 750),
        Endpoint("get_bulk_unsuppress_profiles_job", "profile-suppression-bulk-delete-job", 75, 750),
        Endpoint("bulk_create_events", "event-bulk-create-job", 10, 150),
        # Reporting API: 1/s, 2/m and 225 a day per operation.
        Endpoint("query_campaign_values", "campaign-values-report", 1, 2, daily=225),
        Endpoint("query_flow_values", "flow-values-report", 1, 2, daily=225),
        Endpoint("query_flow_series", "flow-series-report", 1, 2, daily=225),
        Endpoint("query_form_series", "form-series-report", 1, 2, daily=225),
        Endpoint("query_segment_series", "segment-series-report", 1, 2, daily=225),
        Endpoint("query_metric_aggregates", "metric-aggregate", 3, 60),
    ]
}

# Secondary limits quoted in the operation descriptions.
SLOW_ADDITIONAL = {"predictive_analytics": (10, 150), "profile_count": (1, 15)}
METRICS_PAGE = 200  # get_metrics takes no page[size]; "returns a maximum of 200 results per page"
