"""The content behind every send: campaign messages, flow actions and messages, templates,
tags and tag groups, catalog items/variants/categories, coupons and coupon codes, forms, images.

Like the rest of the dataset, every record is a pure function of (seed, kind, index). These
collections are small (hundreds of records at scale 1), so each is generated once per dataset
(``Content.records``) and served by the generic list source. They link to the existing data:
campaign messages and flow actions hang off the generated campaigns and flows, email messages
use generated templates, catalog items carry the ids reviews already point at
(``$custom:::$default:::SKU-n``), coupon codes are assigned to generated profiles.
"""

from __future__ import annotations

import functools

from .util import B62, AffineCodec, Rng, h, iso, mix, parse_ts, salt, uuid_from

DAY = 86400
CATALOG_PREFIX = "$custom:::$default:::"
#: Flow actions per flow are at most this many (ids encode flow * MAX_ACTIONS + slot).
MAX_ACTIONS = 8
#: Messages a flow action has at most (an A/B test has two).
MAX_FLOW_MESSAGES = 2
MESSAGE_ACTIONS = {"send-email": "email", "send-sms": "sms"}
ACTION_PATTERNS = [
    ["send-email", "time-delay", "send-email", "time-delay", "send-sms"],
    ["time-delay", "send-email", "conditional-split", "send-sms", "send-email", "time-delay", "send-email"],
    ["send-sms", "time-delay", "send-email"],
    ["send-email", "update-profile"],
]
TAG_GROUPS = [("Season", True, False), ("Audience", False, False), ("Team", False, False), ("Default", False, True)]
TAG_NAMES = [
    "Summer",
    "Winter",
    "Black Friday",
    "VIP",
    "Win-back",
    "New customers",
    "Growth team",
    "CRM 🧪",
    "Q4 / holiday",
    "Evergreen",
    'Test "quoted"',
    "Ünïcode tag",
]
COUPONS = [
    ("WELCOME10", "10% off a first order"),
    ("VIP-20", "20% for VIPs"),
    ("FREESHIP", None),
    ("SUMMER-25", "Summer sale ☀️"),
    ("WINBACK", "Come back: 15% off"),
]
EDITOR_TYPES = ("CODE", "SYSTEM_DRAGGABLE", "SIMPLE", "USER_DRAGGABLE")
IMAGE_FORMATS = ("png", "jpeg", "gif")


def _utm(r: Rng):
    return (
        None
        if r.chance(0.6)
        else [{"param": "utm_source", "value": "klaviyo"}, {"param": "utm_campaign", "value": "{{ campaign.name }}"}]
    )


class Content:
    """Generated content collections of one dataset (each list built on first use)."""

    def __init__(self, ds):
        self.ds = ds
        sc, seed = ds.cfg.scale, ds.seed
        count = _count
        self.n_templates = count(36, sc, 12)
        self.n_images = count(120, sc, 12)
        self.n_forms = count(12, sc, 4)
        self.n_tag_groups = len(TAG_GROUPS)
        self.n_tags = count(16, sc, 6)
        self.n_catalog_items = count(120, sc, 60)  # reviews point at SKU-1..SKU-60
        self.n_categories = count(10, sc, 4)
        self.n_coupons = count(6, sc, 3)
        self.template_ids = AffineCodec(seed, "template", B62, 6)
        self.image_ids = AffineCodec(seed, "image", B62, 8)
        self.form_ids = AffineCodec(seed, "form", B62, 6)
        self.form_version_ids = AffineCodec(seed, "form-version", B62, 6)
        self.tag_group_ids = AffineCodec(seed, "tag-group", B62, 6)
        self.action_ids = AffineCodec(seed, "flow-action", B62, 8)
        self.flow_message_ids = AffineCodec(seed, "flow-message", B62, 6)
        self._tag_salt = h(seed, salt("tag-of"))
        self.records = functools.lru_cache(maxsize=None)(self._records)

    # ------------------------------------------------------------ ids and links
    def tag_id(self, j: int) -> str:
        r = self.ds.rng("tag", j)
        return uuid_from(r.bits64(), r.bits64())

    def tags_of(self, kind: str, k: int) -> list:
        """Tags on a campaign or flow: about a quarter of the tags, deterministic."""
        threshold = int(0.25 * 18446744073709551616.0)
        return [j for j in range(self.n_tags) if mix(self._tag_salt ^ h(salt(kind), k, j)) < threshold]

    def n_actions(self, flow: int) -> int:
        return len(ACTION_PATTERNS[flow % len(ACTION_PATTERNS)])

    def action_type(self, flow: int, slot: int) -> str:
        return ACTION_PATTERNS[flow % len(ACTION_PATTERNS)][slot]

    def action_index(self, ident: str) -> tuple[int, int] | None:
        """(flow, slot) of a generated flow action id, else None."""
        n = self.action_ids.index(ident)
        if n is None:
            return None
        flow, slot = divmod(n, MAX_ACTIONS)
        if flow >= self.ds.n_flows or slot >= self.n_actions(flow):
            return None
        return flow, slot

    def n_flow_messages(self, flow: int, slot: int) -> int:
        if self.action_type(flow, slot) not in MESSAGE_ACTIONS:
            return 0
        return 2 if self.ds.rng("flow-ab", flow * MAX_ACTIONS + slot).chance(0.2) else 1

    def flow_message_refs(self, flow: int, slot: int) -> list:
        base = (flow * MAX_ACTIONS + slot) * MAX_FLOW_MESSAGES
        return [
            {"type": "flow-message", "id": self.flow_message_ids.id(base + m)}
            for m in range(self.n_flow_messages(flow, slot))
        ]

    def action_refs(self, flow: int) -> list:
        return [
            {"type": "flow-action", "id": self.action_ids.id(flow * MAX_ACTIONS + a)}
            for a in range(self.n_actions(flow))
        ]

    def variants_of(self, item: int) -> int:
        return 1 + self.ds.rng("catalog-item", item).int(0, 3)

    def coupon_codes_of(self, coupon: int) -> int:
        # One coupon without codes, one with several pages of them, the rest a page or less.
        return (0, 230)[coupon] if coupon < 2 else 5 + self.ds.rng("coupon", coupon).int(0, 60)

    def template_for(self, r: Rng) -> str:
        return self.template_ids.id(r.int(0, self.n_templates - 1))

    # ------------------------------------------------------------ collections
    def _records(self, kind: str) -> list:
        return GENERATORS[kind](self)


def _count(base: float, scale: float, minimum: int) -> int:
    return max(minimum, round(base * scale))


def _ref(rtype: str, ident: str | None):
    return {"type": rtype, "id": ident} if ident else None


# ---------------------------------------------------------------- campaign messages
def campaign_message(ds, campaign: dict, m: int) -> dict:
    """Message m of a generated campaign: its channel's content, the campaign's template."""
    k, ref = campaign["_i"], campaign["relationships"]["campaign-messages"][m]
    r = ds.rng("campaign-message", k * 4 + m)
    attrs, channel = campaign["attributes"], campaign["_x"]["messages.channel"]
    name = attrs["name"]
    template = None
    if channel == "email":
        template = ds.content.template_for(r)
        definition: dict = {
            "channel": "email",
            "label": f"{name} – message {m + 1}",
            "content": {
                "subject": r.choice(
                    [
                        f"{name.split(' (')[0]} is here",
                        "Last chance ⏰",
                        "Nouveautés de la semaine",
                        "A gift for you, {{ first_name|default:'friend' }}",
                    ]
                ),
                "preview_text": r.choice([None, "Open for a surprise", "Only this weekend"]),
                "from_email": "hello@sandbox.example.com",
                "from_label": "Sandbox Store",
                "reply_to_email": r.choice([None, "support@sandbox.example.com"]),
                "cc_email": None,
                "bcc_email": None,
            },
        }
    elif channel == "sms":
        definition = {
            "channel": "sms",
            "content": {
                "body": r.choice(["Sale ends tonight: {{ url }}", "Your code: WELCOME10 🎉", "Back in stock!"]),
                "media_url": r.choice([None, "https://images.example.com/mms/1.png"]),
            },
            "render_options": {
                "shorten_links": True,
                "add_org_prefix": True,
                "add_info_link": r.chance(0.5),
                "add_opt_out_language": True,
            },
        }
    else:
        definition = {
            "channel": "mobile_push",
            "notification_type": "standard",
            "content": {
                "title": "Sandbox Store",
                "body": r.choice(["New arrivals 👟", "Your cart misses you"]),
                "dynamic_image": None,
            },
            "kv_pairs": None,
            "options": {"play_sound": r.chance(0.5)},
        }
    send_times = [{"datetime": attrs["send_time"], "is_local": False}] if attrs["send_time"] else []
    return {
        "type": "campaign-message",
        "id": ref["id"],
        "attributes": {
            "definition": definition,
            "send_times": send_times,
            "created_at": attrs["created_at"],
            "updated_at": attrs["updated_at"],
        },
        "relationships": {
            "campaign": _ref("campaign", campaign["id"]),
            "template": _ref("template", template),
            "image": None,
        },
        "_i": k * 4 + m,
    }


# ---------------------------------------------------------------- flows
def flow_action(ds, flow: dict, slot: int) -> dict:
    c, k = ds.content, flow["_i"]
    index = k * MAX_ACTIONS + slot
    r = ds.rng("flow-action", index)
    kind = c.action_type(k, slot)
    created = flow["attributes"]["created"]
    updated = iso(min(ds.now - DAY, _ts(created) + r.int(0, 400) * DAY))
    following = c.action_ids.id(index + 1) if slot + 1 < c.n_actions(k) else None
    status = "live" if flow["attributes"]["status"] == "live" else r.choice(["draft", "manual"])
    data: dict
    if kind in MESSAGE_ACTIONS:
        messages = c.flow_message_refs(k, slot)
        data = {"message": flow_message_definition(ds, kind, index, messages[0]["id"]), "status": status}
    elif kind == "time-delay":
        data = {
            "unit": r.choice(["days", "hours"]),
            "value": r.int(1, 7),
            "secondary_value": None,
            "timezone": "profile",
            "delay_until_time": None,
            "delay_until_weekdays": None,
        }
    elif kind == "update-profile":
        data = {"profile_operations": [{"operation": "set", "key": "welcome_series", "value": "done"}]}
    else:  # conditional-split
        data = {"profile_filter": {"condition_groups": []}}
    definition = {"id": c.action_ids.id(index), "temporary_id": None, "type": kind, "data": data}
    definition["links"] = (
        {"next_if_true": following, "next_if_false": None} if kind == "conditional-split" else {"next": following}
    )
    return {
        "type": "flow-action",
        "id": c.action_ids.id(index),
        "attributes": {"created": created, "updated": updated, "definition": definition},
        "relationships": {"flow": _ref("flow", flow["id"]), "flow-messages": c.flow_message_refs(k, slot)},
        "_i": index,
        "_x": {"action_type": kind, "status": status},
    }


def flow_message_definition(ds, kind: str, action_index: int, message_id: str) -> dict:
    r = ds.rng("flow-message-content", action_index)
    common = {
        "smart_sending_enabled": r.chance(0.8),
        "transactional": False,
        "add_tracking_params": r.chance(0.5),
        "custom_tracking_params": _utm(r),
        "additional_filters": None,
        "id": message_id,
    }
    if kind == "send-email":
        return {
            "from_email": "hello@sandbox.example.com",
            "from_label": "Sandbox Store",
            "reply_to_email": None,
            "cc_email": None,
            "bcc_email": None,
            "subject_line": r.choice(
                ["Welcome aboard 👋", "You left something behind", "We miss you", "Happy birthday, {{ first_name }}!"]
            ),
            "preview_text": r.choice([None, "A little something inside"]),
            "template_id": ds.content.template_for(r),
            "name": f"Email #{action_index}",
            **common,
        }
    return {
        "body": r.choice(["Thanks for joining! Reply STOP to opt out.", "Your cart is waiting: {{ url }}"]),
        "image_id": None,
        "dynamic_image": None,
        "shorten_links": True,
        "include_contact_card": False,
        "add_org_prefix": True,
        "add_info_link": True,
        "add_opt_out_language": True,
        "sms_quiet_hours_enabled": True,
        "template_id": None,
        "name": f"SMS #{action_index}",
        **common,
    }


def flow_message(ds, action: dict, m: int) -> dict:
    index = action["_i"]
    ref = action["relationships"]["flow-messages"][m]
    r = ds.rng("flow-message", index * MAX_FLOW_MESSAGES + m)
    kind = action["_x"]["action_type"]
    definition = flow_message_definition(ds, kind, index, ref["id"])
    if m:  # the B side of an A/B test
        definition = {**definition, "name": definition["name"] + " (B)"}
        if kind == "send-email":
            definition["subject_line"] = "[B] " + definition["subject_line"]
    updated = iso(min(ds.now - DAY, _ts(action["attributes"]["updated"]) + r.int(0, 30) * DAY))
    template = definition.get("template_id")
    return {
        "type": "flow-message",
        "id": ref["id"],
        "attributes": {
            "channel": MESSAGE_ACTIONS[kind],
            "created": action["attributes"]["created"],
            "updated": updated,
            "definition": definition,
        },
        "relationships": {"flow-action": _ref("flow-action", action["id"]), "template": _ref("template", template)},
        "_i": index * MAX_FLOW_MESSAGES + m,
        "_x": {"name": definition["name"]},
    }


# ---------------------------------------------------------------- templates, images, forms
def _templates(c: Content) -> list:
    ds, out = c.ds, []
    for j in range(c.n_templates):
        r = ds.rng("template", j)
        created = ds.t_start + r.int(0, 900) * DAY + r.int(0, DAY)
        updated = created + r.int(0, max(1, ds.now - DAY - created))
        editor = r.choice(EDITOR_TYPES)
        title = r.choice(["Welcome", "Newsletter", "Abandoned cart", "Receipt", "Sale ⚡", "Événement"])
        out.append(
            {
                "type": "template",
                "id": c.template_ids.id(j),
                "attributes": {
                    "name": f"{title} template {j}",
                    "editor_type": editor,
                    "html": f"<html><body><h1>{title}</h1><p>{{{{ first_name|default:'Hi' }}}}</p></body></html>",
                    "text": None if r.chance(0.3) else f"{title}\n\nHello!",
                    "amp": None,
                    "created": iso(created),
                    "updated": iso(updated),
                },
                "relationships": None,
                "_i": j,
                "_definition": _template_definition(title) if editor == "SYSTEM_DRAGGABLE" else None,
            }
        )
    return out


def _template_definition(title: str) -> dict:
    """A drag-and-drop template's structure (sent only with ``additional-fields[template]=definition``)."""
    return {
        "body": {"properties": {"background_color": "#ffffff"}, "styles": {"padding": "0px"}, "sections": []},
        "styles": [],
    }


def _images(c: Content) -> list:
    ds, out = c.ds, []
    for j in range(c.n_images):
        r = ds.rng("image", j)
        fmt = r.choice(IMAGE_FORMATS)
        updated = ds.t_start + r.int(0, 3 * 365 - 2) * DAY + r.int(0, DAY)
        ident = c.image_ids.id(j)
        out.append(
            {
                "type": "image",
                "id": ident,
                "attributes": {
                    "name": r.choice(["hero", "logo", "product shot", "banner 🎉", "footer"]) + f" {j}.{fmt}",
                    "image_url": f"https://images.example.com/{ident}.{fmt}",
                    "format": fmt,
                    "size": r.int(2_000, 2_000_000),
                    "hidden": r.chance(0.1),
                    "updated_at": iso(updated),
                },
                "relationships": None,
                "_i": j,
            }
        )
    return out


def _forms(c: Content) -> list:
    ds, out = c.ds, []
    for j in range(c.n_forms):
        r = ds.rng("form", j)
        created = ds.t_start + r.int(0, 900) * DAY + r.int(0, DAY)
        updated = created + r.int(0, max(1, ds.now - DAY - created))
        versions = [{"type": "form-version", "id": c.form_version_ids.id(j * 4 + v)} for v in range(r.int(1, 3))]
        out.append(
            {
                "type": "form",
                "id": c.form_ids.id(j),
                "attributes": {
                    "name": r.choice(["Newsletter popup", "Exit intent 10%", "Footer signup", "SMS opt-in 📱"])
                    + f" {j}",
                    "status": r.choice(["live", "live", "draft"]),
                    "ab_test": r.chance(0.2),
                    "created_at": iso(created),
                    "updated_at": iso(updated),
                },
                "relationships": {"form-versions": versions},
                "_i": j,
            }
        )
    return out


# ---------------------------------------------------------------- tags
def _tag_groups(c: Content) -> list:
    return [
        {
            "type": "tag-group",
            "id": c.tag_group_ids.id(g),
            "attributes": {"name": name, "exclusive": exclusive, "default": default},
            "relationships": {
                "tags": [{"type": "tag", "id": c.tag_id(j)} for j in range(c.n_tags) if j % c.n_tag_groups == g]
            },
            "_i": g,
        }
        for g, (name, exclusive, default) in enumerate(TAG_GROUPS)
    ]


def _tags(c: Content) -> list:
    ds, out = c.ds, []
    campaigns: dict[int, list] = {j: [] for j in range(c.n_tags)}
    flows: dict[int, list] = {j: [] for j in range(c.n_tags)}
    for k in range(ds.n_campaigns):
        for j in c.tags_of("campaign", k):
            campaigns[j].append({"type": "campaign", "id": ds.small("campaign", k)["id"]})
    for k in range(ds.n_flows):
        for j in c.tags_of("flow", k):
            flows[j].append({"type": "flow", "id": ds.flow_ids.id(k)})
    for j in range(c.n_tags):
        name = TAG_NAMES[j] if j < len(TAG_NAMES) else f"Tag {j:03d}"
        out.append(
            {
                "type": "tag",
                "id": c.tag_id(j),
                "attributes": {"name": name},
                "relationships": {
                    "tag-group": _ref("tag-group", c.tag_group_ids.id(j % c.n_tag_groups)),
                    "lists": None,
                    "segments": None,
                    "campaigns": campaigns[j],
                    "flows": flows[j],
                },
                "_i": j,
            }
        )
    return out


# ---------------------------------------------------------------- catalog
def _catalog_items(c: Content) -> list:
    ds, out = c.ds, []
    for j in range(c.n_catalog_items):
        r = ds.rng("catalog-item", j)
        r.int(0, 3)  # the variant count (variants_of) comes first
        sku = f"SKU-{j + 1}"
        created = ds.t_start + r.int(0, 700) * DAY + r.int(0, DAY)
        title = r.choice(["Trail Shoe", "Café Mug ☕", "Tote / Bag", "Rain Jacket", "Wool Socks", "Sunglasses"])
        out.append(
            {
                "type": "catalog-item",
                "id": CATALOG_PREFIX + sku,
                "attributes": {
                    "external_id": sku,
                    "title": f"{title} {j + 1}",
                    "description": f"The {title.lower()} everyone asks about.",
                    "price": r.money(5, 250),
                    "url": f"https://shop.example.com/products/{sku.lower()}",
                    "image_full_url": f"https://images.example.com/{sku}.jpg",
                    "image_thumbnail_url": f"https://images.example.com/{sku}-thumb.jpg",
                    "images": [f"https://images.example.com/{sku}.jpg"],
                    "custom_metadata": {"brand": r.choice(["Acme", "Zoë"])},
                    "published": r.chance(0.9),
                    "created": iso(created),
                    "updated": iso(created + r.int(0, max(1, ds.now - DAY - created))),
                },
                "relationships": {
                    "variants": [
                        {"type": "catalog-variant", "id": f"{CATALOG_PREFIX}{sku}-{v + 1}"}
                        for v in range(c.variants_of(j))
                    ]
                },
                "_i": j,
                "_x": {"category.id": _category_id(j % c.n_categories)},
            }
        )
    return out


def _category_id(j: int) -> str:
    return f"{CATALOG_PREFIX}CAT-{j + 1}"


def _catalog_variants(c: Content) -> list:
    out: list = []
    for item in c.records("catalog-items"):
        a = item["attributes"]
        for v, ref in enumerate(item["relationships"]["variants"]):
            r = c.ds.rng("catalog-variant", item["_i"] * 4 + v)
            size = ("S", "M", "L", "XL")[v]
            out.append(
                {
                    "type": "catalog-variant",
                    "id": ref["id"],
                    "attributes": {
                        "external_id": f"{a['external_id']}-{v + 1}",
                        "title": f"{a['title']} / {size}",
                        "description": a["description"],
                        "sku": f"{a['external_id']}-{size}",
                        "inventory_policy": r.choice([0, 1, 2]),
                        "inventory_quantity": r.int(0, 500),
                        "price": a["price"],
                        "url": a["url"],
                        "image_full_url": a["image_full_url"],
                        "image_thumbnail_url": a["image_thumbnail_url"],
                        "images": a["images"],
                        "custom_metadata": {"size": size},
                        "published": a["published"],
                        "created": a["created"],
                        "updated": a["updated"],
                    },
                    "relationships": {"item": _ref("catalog-item", item["id"])},
                    "_i": len(out),
                    "_x": {"item.id": item["id"]},
                }
            )
    return out


def _catalog_categories(c: Content) -> list:
    ds, items = c.ds, c.records("catalog-items")
    out = []
    for j in range(c.n_categories):
        r = ds.rng("catalog-category", j)
        ident = _category_id(j)
        out.append(
            {
                "type": "catalog-category",
                "id": ident,
                "attributes": {
                    "external_id": f"CAT-{j + 1}",
                    "name": r.choice(["Shoes", "Kitchen", "Bags", "Outerwear", "Accessories"]) + f" {j + 1}",
                    "updated": iso(ds.t_start + r.int(0, 3 * 365 - 2) * DAY),
                },
                "relationships": {
                    "items": [{"type": "catalog-item", "id": i["id"]} for i in items if i["_x"]["category.id"] == ident]
                },
                "_i": j,
                "_x": {"item.id": [i["id"] for i in items if i["_x"]["category.id"] == ident]},
            }
        )
    return out


# ---------------------------------------------------------------- coupons
def _coupon(c: Content, j: int) -> tuple[str, str | None]:
    return COUPONS[j] if j < len(COUPONS) else (f"PROMO-{j}", f"Promotion {j}")


def _coupons(c: Content) -> list:
    out = []
    for j in range(c.n_coupons):
        ident, description = _coupon(c, j)
        monitor = {"low_balance_threshold": 100} if j % 2 else None
        out.append(
            {
                "type": "coupon",
                "id": ident,
                "attributes": {"external_id": ident, "description": description, "monitor_configuration": monitor},
                "relationships": None,
                "_i": j,
            }
        )
    return out


def _coupon_codes(c: Content) -> list:
    ds, out = c.ds, list[dict]()
    for j in range(c.n_coupons):
        coupon, _ = _coupon(c, j)
        for n in range(c.coupon_codes_of(j)):
            r = ds.rng("coupon-code", j * 10_000 + n)
            code = f"{coupon[:4]}{mix(h(ds.seed, j, n)) % 36**8:08X}"[:14]
            status = r.choice(["ASSIGNED_TO_PROFILE", "UNASSIGNED", "UNASSIGNED", "USED"])
            profile = ds.profile_id(r.int(0, ds.n_profiles - 1)) if status != "UNASSIGNED" else None
            expires = None if r.chance(0.3) else iso(ds.now + r.int(-60, 365) * DAY)
            out.append(
                {
                    "type": "coupon-code",
                    "id": f"{coupon}-{code}",
                    "attributes": {"unique_code": code, "expires_at": expires, "status": status},
                    "relationships": {"coupon": _ref("coupon", coupon), "profile": _ref("profile", profile)},
                    "_i": len(out),
                    "_x": {"coupon.id": coupon, "profile.id": profile},
                }
            )
    return out


def _ts(text: str) -> int:
    return int(parse_ts(text) or 0)  # the generator's own timestamps: always valid


GENERATORS = {
    "templates": _templates,
    "images": _images,
    "forms": _forms,
    "tags": _tags,
    "tag-groups": _tag_groups,
    "catalog-items": _catalog_items,
    "catalog-variants": _catalog_variants,
    "catalog-categories": _catalog_categories,
    "coupons": _coupons,
    "coupon-codes": _coupon_codes,
}
