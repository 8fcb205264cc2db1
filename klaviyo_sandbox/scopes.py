"""Scopes each operation needs (the spec's `x-klaviyo-scopes`), and keys granted only some.

Copied rather than loaded at runtime so the sandbox works without the spec file.
A key listed in `SandboxConfig.key_scopes` holds only the scopes given there; every other
valid key (and OAuth token) holds all scopes.

Choices where Klaviyo's docs are silent or only describe the UI:
- A `X:write` grant includes `X:read` (Klaviyo's key editor offers "Read Access" or "Full
  Access" per area, and full access is read and write).
- The check comes right after authentication, before the revision header, rate limits and
  any validation of the request: a key without the scope gets 403 whatever it sends, and
  nothing changes.
- The 403 body is Klaviyo's `permission_denied` error.
"""

from __future__ import annotations

SCOPES = {
    "get_accounts": ("accounts:read",),
    "get_campaigns": ("campaigns:read",),
    "get_events": ("events:read",),
    "get_flows": ("flows:read",),
    "get_lists": ("lists:read",),
    "get_list": ("lists:read",),
    "create_list": ("lists:write",),
    "delete_list": ("lists:write",),
    "get_metrics": ("metrics:read",),
    "get_profiles": ("profiles:read",),
    "get_reviews": ("reviews:read",),
    "get_segments": ("segments:read",),
    "get_profiles_for_list": ("lists:read", "profiles:read"),
    "get_profile_ids_for_list": ("lists:read", "profiles:read"),
    "add_profiles_to_list": ("lists:write", "profiles:write"),
    "remove_profiles_from_list": ("lists:write", "profiles:write"),
    "get_profiles_for_segment": ("profiles:read", "segments:read"),
    "get_profile_ids_for_segment": ("profiles:read", "segments:read"),
    "get_bulk_import_profiles_jobs": ("lists:read", "profiles:read"),
    "bulk_import_profiles": ("lists:write", "profiles:write"),
    "get_bulk_import_profiles_job": ("lists:read", "profiles:read"),
    "get_errors_for_bulk_import_profiles_job": ("profiles:read",),
    "get_flow_action_messages": ("flows:read",),
    "get_templates": ("templates:read",),
    "get_tags": ("tags:read",),
    "get_tag_groups": ("tags:read",),
    "get_catalog_items": ("catalogs:read",),
    "get_catalog_variants": ("catalogs:read",),
    "get_catalog_categories": ("catalogs:read",),
    "get_coupons": ("coupons:read",),
    "get_coupon_codes": ("coupon-codes:read",),
    "get_forms": ("forms:read",),
    "get_images": ("images:read",),
    "bulk_subscribe_profiles": ("lists:write", "profiles:write", "subscriptions:write"),
    "bulk_unsubscribe_profiles": ("lists:write", "profiles:write", "subscriptions:write"),
    "bulk_suppress_profiles": ("profiles:write", "subscriptions:write"),
    "get_bulk_suppress_profiles_job": ("subscriptions:read",),
    "bulk_unsuppress_profiles": ("subscriptions:write",),
    "get_bulk_unsuppress_profiles_job": ("subscriptions:read",),
    "bulk_create_events": ("events:write",),
    "query_campaign_values": ("campaigns:read",),
    "query_flow_values": ("flows:read",),
    "query_flow_series": ("flows:read",),
    "query_form_series": ("forms:read",),
    "query_segment_series": ("segments:read",),
    "query_metric_aggregates": ("metrics:read",),
}


def granted(grants: tuple) -> set:
    """The scopes a grant list gives (a write scope gives the matching read scope too)."""
    out = set(grants)
    out |= {g.split(":")[0] + ":read" for g in grants if g.endswith(":write")}
    return out


def missing(op: str, grants: tuple) -> list:
    """The scopes `op` needs that `grants` lack."""
    have = granted(grants)
    return [scope for scope in SCOPES.get(op, ()) if scope not in have]
