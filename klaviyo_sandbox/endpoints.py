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


def S(*ops, t="string", enum=()):
    return FieldSpec(single=ops, type=t, enum=enum)


def L(single=(), lst=("any", "equals"), t="string", enum=()):
    return FieldSpec(single=single, list=lst, type=t, enum=enum)


CAMPAIGN_STATUS = (
    "Scheduled", "Sent", "Draft", "Cancelled", "Adding Recipients", "Sending", "Variations Sent",
    "Sending Segments", "Cancelled: Smart Sending", "Preparing to send", "Cancelled: Account Disabled",
    "Cancelled: No Recipients", "Preparing to schedule", "Cancelled: Internal Error",
    "Queued without Recipients", "Cancelled: Billing Limit", "Cancelled: Misconfigured", "Unknown",
)
TRIGGER_TYPES = ("Metric", "Added to List", "Unconfigured", "Date Based", "Price Drop", "Low Inventory")
MEMBER_FILTERS = {
    "email": L(), "phone_number": L(), "push_token": L(), "_kx": S("equals"),
    "joined_group_at": S(*DT4, t="datetime"),
}
PROFILE_ADDITIONAL = ("subscriptions", "predictive_analytics")
MEMBER_SORTS = ("joined_group_at",)

ENDPOINTS = {
    e.op: e
    for e in [
        Endpoint("get_accounts", "account", 1, 15),
        Endpoint(
            "get_campaigns", "campaign", 10, 150, page=(100, 1, 100), filter_required=True,
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
            "get_events", "event", 350, 3500, page=(200, 1, 1000),
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
            "get_flows", "flow", 3, 60, page=(50, 1, 50),
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
            "get_lists", "list", 75, 750, page=(10, 1, 10),
            filters={
                "name": L(), "id": L(single=("equals",)),
                "created": S("greater-than", t="datetime"), "updated": S("greater-than", t="datetime"),
            },
            sorts=("created", "id", "name", "updated"),
            includes=("flow-triggers", "tags"),
        ),
        Endpoint("get_list", "list", 75, 750, includes=("flow-triggers", "tags"), additional=("profile_count",)),
        Endpoint("create_list", "list", 10, 150, daily=150),
        Endpoint("delete_list", "list", 10, 150),
        Endpoint(
            "get_metrics", "metric", 10, 150,
            filters={"integration.name": S("equals"), "integration.category": S("equals")},
            includes=("flow-triggers",),
        ),
        Endpoint(
            "get_profiles", "profile", 75, 750, page=(20, 1, 100),
            filters={
                "id": L(single=("equals",)), "email": L(single=("equals",)),
                "phone_number": L(single=("equals",)), "external_id": L(single=("equals",)),
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
                "created", "email", "id", "subscriptions.email.marketing.list_suppressions.timestamp",
                "subscriptions.email.marketing.suppression.timestamp", "updated",
            ),
            includes=("conversations", "push-tokens"),
            additional=PROFILE_ADDITIONAL,
        ),
        Endpoint(
            "get_reviews", "review", 10, 150, page=(20, 1, 100),
            filters={
                "created": S("greater-or-equal", "less-or-equal", t="datetime"),
                "rating": L(single=("equals", "greater-or-equal", "less-or-equal"), t="integer"),
                "id": L(single=("equals",)), "item.id": L(single=("equals",)),
                "content": S("contains"),
                "status": S("equals", enum=("published", "unpublished", "rejected", "featured", "pending", "all")),
                "review_type": S("equals", enum=("question", "review", "rating", "store")),
                "verified": S("equals", t="boolean"),
            },
            sorts=("created", "rating", "updated"),
            includes=("events",),
        ),
        Endpoint(
            "get_segments", "segment", 75, 750, page=(10, 1, 10),
            filters={
                "name": L(), "id": L(single=("equals",)),
                "created": S("greater-than", t="datetime"), "updated": S("greater-than", t="datetime"),
                "is_active": L(single=("equals",), t="boolean"), "is_starred": S("equals", t="boolean"),
            },
            sorts=("created", "id", "name", "updated"),
            includes=("flow-triggers", "tags"),
        ),
        Endpoint(
            "get_profiles_for_list", "profile", 75, 750, page=(20, 1, 100), filters=MEMBER_FILTERS,
            sorts=MEMBER_SORTS, additional=PROFILE_ADDITIONAL,
        ),
        Endpoint("get_profile_ids_for_list", "profile", 75, 750, page=(20, 1, 100), filters=MEMBER_FILTERS,
                 sorts=MEMBER_SORTS),
        Endpoint("add_profiles_to_list", "profile", 10, 150),
        Endpoint("remove_profiles_from_list", "profile", 10, 150),
        Endpoint(
            "get_profiles_for_segment", "profile", 75, 750, page=(20, 1, 100),
            filters={"profile_id": L(), **MEMBER_FILTERS}, sorts=MEMBER_SORTS, additional=PROFILE_ADDITIONAL,
        ),
        Endpoint("get_profile_ids_for_segment", "profile", 75, 750, page=(20, 1, 100),
                 filters={"profile_id": L(), **MEMBER_FILTERS}, sorts=MEMBER_SORTS),
        Endpoint("get_bulk_import_profiles_jobs", "profile-bulk-import-job", 10, 150, page=(20, 1, 100),
                 filters={"status": S("equals", enum=("queued", "processing", "complete"))},
                 sorts=("created_at",), includes=("lists",)),
        Endpoint("bulk_import_profiles", "profile-bulk-import-job", 10, 150),
        Endpoint("get_bulk_import_profiles_job", "profile-bulk-import-job", 10, 150, includes=("lists",)),
        Endpoint("get_errors_for_bulk_import_profiles_job", "import-error", 10, 150, page=(20, 1, 100)),
    ]
}

# Secondary limits quoted in the operation descriptions.
SLOW_ADDITIONAL = {"predictive_analytics": (10, 150), "profile_count": (1, 15)}
METRICS_PAGE = 200  # get_metrics takes no page[size]; "returns a maximum of 200 results per page"
