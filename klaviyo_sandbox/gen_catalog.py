"""Small collections: campaigns, flows, metrics, reviews, lists, segments, the account."""

from __future__ import annotations

from .util import Rng, iso

DAY = 86400
CHANNELS = ("email", "sms", "mobile_push")
METRIC_NAMES = [
    ("Placed Order", "shopify"),
    ("Opened Email", "klaviyo"),
    ("Received Email", "klaviyo"),
    ("Clicked Email", "klaviyo"),
    ("Viewed Product", "klaviyo"),
    ("Active on Site", "klaviyo"),
    ("Added to Cart", "shopify"),
    ("Started Checkout", "shopify"),
    ("Placed Order", "api"),
    ("Fulfilled Order", "shopify"),
    ("Received SMS", "klaviyo"),
    ("Clicked SMS", "klaviyo"),
    ("Subscribed to List", "klaviyo"),
    ("Unsubscribed", "klaviyo"),
    ("Bounced Email", "klaviyo"),
    ("Marked Email as Spam", "klaviyo"),
    ("Refunded Order", "shopify"),
    ("Submitted Review ⭐", "reviews"),
    # Sign-up form activity, counted by the Reporting API's form statistics (viewed_form, closed_form, submits)
    ("Viewed Form", "klaviyo"),
    ("Closed Form", "klaviyo"),
    ("Submitted Form", "klaviyo"),
]
INTEGRATIONS = {
    "klaviyo": ("Klaviyo", "Internal"),
    "shopify": ("Shopify", "eCommerce"),
    "api": ("API", "API"),
    "reviews": ("Klaviyo Reviews", "Reviews"),
    "custom": ("Custom Integration", "Custom"),
}
# Archived records every dataset has, whatever the seed and scale (tests rely on them):
# one campaign per channel (indices 6-8 are email, sms, mobile_push) and one flow.
ARCHIVED_CAMPAIGNS = (6, 7, 8)
ARCHIVED_FLOWS = (3,)
THEMES = [
    "Summer Sale",
    "Black Friday",
    "Welcome back",
    "Nouveautés",
    "Restock alert 🔔",
    "VIP preview",
    "Newsletter #",
    "Flash sale ⚡",
    "Weekend / Holiday",
    "Ürgent: last chance",
]


def metric(ds, k: int) -> dict:
    r = ds.rng("metric", k)
    if k < len(METRIC_NAMES):
        name, key = METRIC_NAMES[k]
    else:
        name, key = f"Custom Event {k}", "custom"
    iname, category = INTEGRATIONS[key]
    created = ds.t_start + r.int(0, 400) * DAY
    return {
        "type": "metric",
        "id": ds.metric_ids.id(k),
        "attributes": {
            "name": name,
            "created": iso(created),
            "updated": iso(created + r.int(0, 300) * DAY),
            "integration": {
                "object": "integration",
                "id": ds.metric_ids.id(10_000 + len(key)),
                "key": key,
                "name": iname,
                "category": category,
            },
        },
        "relationships": {"flow-triggers": None},
        "_i": k,
    }


def _tracking(r: Rng, channel: str):
    if channel == "mobile_push":
        return None
    params = (
        None
        if r.chance(0.6)
        else [
            {"type": "static", "value": "newsletter", "name": "utm_source"},
            {"type": "dynamic", "value": "campaign_name", "name": "utm_campaign"},
        ]
    )
    opts = {"add_tracking_params": params is not None, "custom_tracking_params": params}
    if channel == "email":
        opts.update(is_tracking_clicks=True, is_tracking_opens=r.chance(0.9))
    return opts


def campaign(ds, k: int) -> dict:
    r = ds.rng("campaign", k)
    channel = CHANNELS[k % 3] if k < 9 else r.choice(CHANNELS * 2 + ("email", "email", "sms"))
    created = ds.t_start + r.int(0, 3 * 365 - 10) * DAY + r.int(0, DAY)
    updated = created + r.int(0, max(1, ds.now - DAY - created))
    status = r.choice(["Sent", "Sent", "Sent", "Draft", "Scheduled", "Cancelled", "Sending"])
    scheduled = send_time = None
    strategy: dict = {"method": "immediate"}
    if status == "Scheduled":  # future-dated on purpose
        scheduled = send_time = ds.now + r.int(1, 60) * DAY
        strategy = {"method": "static", "datetime": iso(send_time), "options": {"is_local": False}}
    elif status in ("Sent", "Sending", "Cancelled"):
        scheduled = send_time = min(updated, created + r.int(0, 20) * DAY)
        if r.chance(0.3):
            strategy = {"method": "smart_send_time", "date": iso(send_time)[:10]}
        elif r.chance(0.5):
            strategy = {"method": "static", "datetime": iso(send_time), "options": None}
    lists = [ds.list_ids.id(r.int(0, ds.n_lists - 1)) for _ in range(r.int(1, 2))]
    attrs = {
        "name": f"{r.choice(THEMES)} {k} ({channel})",
        "status": status,
        "archived": r.chance(0.1) or k in ARCHIVED_CAMPAIGNS,
        "audiences": {"included": lists, "excluded": [] if r.chance(0.7) else [ds.segment_ids.id(0)]},
        "send_options": {"use_smart_sending": r.chance(0.7)},
        "tracking_options": _tracking(r, channel),
        "send_strategy": strategy,
        "created_at": iso(created),
        "scheduled_at": iso(scheduled) if scheduled else None,
        "updated_at": iso(updated),
        "send_time": iso(send_time) if send_time else None,
    }
    messages = [{"type": "campaign-message", "id": ds.message_ids.id(k * 4 + m, created)} for m in range(r.int(1, 2))]
    return {
        "type": "campaign",
        "id": ds.campaign_ids.id(k, created),
        "attributes": attrs,
        "relationships": {"campaign-messages": messages, "tags": _tags(ds, "campaign", k)},
        "_i": k,
        "_x": {"messages.channel": channel},
    }


def flow(ds, k: int) -> dict:
    r = ds.rng("flow", k)
    created = ds.t_start + r.int(0, 900) * DAY
    attrs = {
        "name": r.choice(
            [
                "Welcome Series",
                "Abandoned Cart",
                "Browse Abandonment",
                "Win-back 💌",
                "Post-purchase / Cross-sell",
                "Birthday 🎂",
            ]
        )
        + f" #{k}",
        "status": r.choice(["live", "live", "draft", "manual"]),
        "archived": r.chance(0.1) or k in ARCHIVED_FLOWS,
        "created": iso(created),
        "updated": iso(created + r.int(0, max(1, ds.now - DAY - created))),
        "trigger_type": r.choice(
            ["Metric", "Added to List", "Date Based", "Price Drop", "Low Inventory", "Unconfigured"]
        ),
    }
    return {
        "type": "flow",
        "id": ds.flow_ids.id(k),
        "attributes": attrs,
        "relationships": {"flow-actions": ds.content.action_refs(k), "tags": _tags(ds, "flow", k)},
        "_i": k,
    }


def _tags(ds, kind: str, k: int) -> list:
    return [{"type": "tag", "id": ds.content.tag_id(j)} for j in ds.content.tags_of(kind, k)]


def review(ds, k: int) -> dict:
    r = ds.rng("review", k)
    created = ds.r_created(k)
    updated = created
    if created < ds.now - 90 * DAY and r.chance(0.12):
        updated = ds.now - r.int(1, 20 * DAY)  # an old review edited recently
    rtype = r.choice(["review", "review", "review", "rating", "question", "store"])
    status = r.choice(
        [{"value": "published"}] * 5 + [{"value": "featured"}, {"value": "pending"}, {"value": "unpublished"}]
    )
    if r.chance(0.03):
        status = {"value": "rejected", "rejection_reason": {"reason": "other", "status_explanation": "spam"}}
    sku = f"SKU-{r.int(1, 60)}"
    product = (
        None
        if rtype == "store"
        else {
            "url": f"https://shop.example.com/products/{sku.lower()}",
            "name": r.choice(["Trail Shoe", "Café Mug ☕", "Tote / Bag"]),
            "image_url": r.choice([None, f"https://images.example.com/{sku}.jpg"]),
            "external_id": sku,
        }
    )
    attrs = {
        "email": r.choice([None, f"reviewer{k}@example.com"]),
        "status": status,
        "verified": r.chance(0.7),
        "review_type": rtype,
        "created": iso(created),
        "updated": iso(updated),
        "images": [] if r.chance(0.8) else [f"https://images.example.com/r/{k}.jpg"],
        "product": product,
        "rating": None if rtype == "question" else r.int(1, 5),
        "author": r.choice(["Zoë K.", "Anonymous", "José", "李 W."]),
        "content": r.choice(["Love it! 😍", "Runs small, order a size up.", "Décevant…", "Does it ship to Canada?"]),
        "title": r.choice([None, "Great", "Meh", "Question about sizing"]),
        "smart_quote": None,
        "public_reply": None
        if r.chance(0.85)
        else {"content": "Thanks!", "author": "Store team", "updated": iso(updated)},
    }
    item = None if product is None else {"type": "catalog-item", "id": f"$custom:::$default:::{sku}"}
    return {
        "type": "review",
        "id": ds.review_ids.id(k),
        "attributes": attrs,
        "relationships": {"events": None, "item": item},
        "_i": k,
        "_x": {"item.id": item and item["id"]},
    }


def group(ds, kind: str, j: int) -> dict:
    g = ds.group(kind, j)
    return group_record(kind, g.id, g.name, g.created, g.updated, g.opt_in, j, ds)


def group_record(kind, ident, name, created, updated, opt_in, j, ds) -> dict:
    attrs = {"name": name, "created": iso(created), "updated": iso(updated)}
    if kind == "list":
        attrs["opt_in_process"] = opt_in
    else:
        attrs = {
            "name": name,
            "definition": _definition(ds, j),
            "created": attrs["created"],
            "updated": attrs["updated"],
            "is_active": j != 5,
            "is_processing": False,
            "is_starred": j % 4 == 0,
        }
    return {
        "type": kind,
        "id": ident,
        "attributes": attrs,
        "relationships": {"profiles": None, "tags": None, "flow-triggers": None},
        "_i": j,
    }


def _definition(ds, j: int) -> dict:
    return {
        "condition_groups": [
            {
                "conditions": [
                    {
                        "type": "profile-group-membership",
                        "is_member": True,
                        "group_ids": [ds.list_ids.id(j % ds.n_lists)],
                        "timeframe_filter": None,
                    }
                ]
            }
        ]
    }


def account(ds) -> dict:
    return {
        "type": "account",
        "id": ds.account_id,
        "attributes": {
            "test_account": False,
            "contact_information": {
                "default_sender_name": "Sandbox Store",
                "default_sender_email": "hello@sandbox.example.com",
                "website_url": "https://sandbox.example.com",
                "organization_name": "Sandbox Store Ltd",
                "street_address": {
                    "address1": "1 Loopback Way",
                    "address2": None,
                    "city": "Boston",
                    "region": "MA",
                    "country": "US",
                    "zip": "02139",
                },
            },
            "industry": "Apparel & Accessories",
            "timezone": "America/New_York",
            "preferred_currency": "USD",
            "public_api_key": ds.account_id,
            "locale": "en-US",
        },
        "relationships": {},
        "_i": 0,
    }


GENERATORS = {
    "campaign": campaign,
    "flow": flow,
    "metric": metric,
    "review": review,
    "list": lambda ds, j: group(ds, "list", j),
    "segment": lambda ds, j: group(ds, "segment", j),
}
