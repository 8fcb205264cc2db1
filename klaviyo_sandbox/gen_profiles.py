"""Profile generation: identifiers recoverable from the index, mixed-type custom properties."""

from __future__ import annotations

import re

from . import realistic
from .util import Rng, iso, iso_date, salt

# (display name, ASCII form for the email address); unicode and emoji on purpose.
FIRST = [
    ("Ana", "ana"),
    ("Zoë", "zoe"),
    ("José", "jose"),
    ("Łukasz", "lukasz"),
    ("Søren", "soren"),
    ("Mária", "maria"),
    ("Émile", "emile"),
    ("Aoife", "aoife"),
    ("李", "li"),
    ("Sam 🚀", "sam"),
    ("Ахмед", "ahmed"),
    ("Ngozi", "ngozi"),
    ("Priya", "priya"),
    ("Chloé", "chloe"),
    ("Björn", "bjorn"),
    ("Kenji", "kenji"),
    ("Fatima", "fatima"),
    ("Olu", "olu"),
    ("Mateo", "mateo"),
    ("Grace", "grace"),
]
LAST = [
    ("García", "garcia"),
    ("O'Brien", "obrien"),
    ("Müller", "muller"),
    ("Nguyễn", "nguyen"),
    ("Smith", "smith"),
    ("Kowalski", "kowalski"),
    ("Dubois", "dubois"),
    ("Okafor", "okafor"),
    ("Tanaka", "tanaka"),
    ("van der Berg", "vanderberg"),
    ("Иванова", "ivanova"),
    ("Rossi", "rossi"),
    ("Johnson 🎸", "johnson"),
    ("Lee", "lee"),
    ("Silva", "silva"),
    ("Haddad", "haddad"),
]
DOMAINS = ["example.com", "example.org", "mail.example.net", "shop.example.io"]
CITIES = [
    ("Boston", "MA", "US", "02139", "America/New_York", 42.36, -71.06),
    ("London", "England", "GB", "SW1A 1AA", "Europe/London", 51.5, -0.12),
    ("São Paulo", "SP", "BR", "01310-100", "America/Sao_Paulo", -23.55, -46.63),
    ("Zürich", "ZH", "CH", "8001", "Europe/Zurich", 47.37, 8.54),
    ("東京", "Tokyo", "JP", "100-0001", "Asia/Tokyo", 35.68, 139.69),
    ("Lagos", "Lagos", "NG", "100001", "Africa/Lagos", 6.52, 3.37),
]
PLANS = ["free", "starter", "pro", "enterprise"]
_EMAIL = re.compile(r"^[a-z]+\.[a-z]+(\d+)@", re.I)
_PHONE = re.compile(r"^\+1555(\d{7})$")
_EXT = re.compile(r"^cus_(\d+)$")


def parse_identifier(field: str, value: str) -> int | None:
    """Recover the generated index from an email / phone / external id (no index stored)."""
    if not isinstance(value, str):
        return None
    pat = {"email": _EMAIL, "phone_number": _PHONE, "external_id": _EXT}.get(field)
    m = pat.match(value) if pat else None
    return int(m.group(1)) if m else None


def _properties(r: Rng, ds, i: int, created: int) -> dict:
    ltv = r.money(0, 2500)
    props = {
        "plan": r.choice(PLANS),
        "lifetime_orders": r.int(0, 40),
        "ltv": int(ltv) if r.chance(0.3) else ltv,  # sometimes integer-valued: number type inference
        "vip": r.chance(0.1),
        "birthday": iso_date(ds.now - r.int(18 * 365, 80 * 365) * 86400),
        "last_seen": iso(created + r.int(0, max(1, ds.now - created))),
        "prefs": {
            "channels": r.sample(["email", "sms", "push"], r.int(0, 3)),
            "frequency": r.choice(["daily", "weekly", "monthly"]),
            "topics": r.sample(["shoes", "bags", "sale", "new arrivals", "café ☕"], r.int(1, 3)),
        },
        "loyalty_tier": None if r.chance(0.9) else r.choice(["bronze", "silver", "gold"]),
        # Type conflict on purpose: integer on some profiles, string on others.
        "postal_code": r.int(1000, 99999) if r.chance(0.5) else r.choice(["02139", "SW1A 1AA", "8001", "01310-100"]),
        "$source": r.choice(["Shopify", "API", "Signup Form", "Import"]),
    }
    if r.chance(0.3):
        props["Favourite Colour 🎨"] = r.choice(["red", "green", "bleu", "紫"])
    if r.chance(0.05):  # sparse field
        props["referral_code"] = f"REF-{r.int(10000, 99999)}"
    if ds.cfg.data == "realistic":
        return realistic.profile_properties(r, props)
    return props


def _location(r: Rng) -> dict:
    if r.chance(0.15):  # Klaviyo returns an all-null location object for unknown locations
        keys = ("address1", "address2", "city", "country", "latitude", "longitude", "region", "zip", "timezone", "ip")
        return dict.fromkeys(keys)
    city, region, country, zipc, tz, lat, lon = r.choice(CITIES)
    lat, lon = round(lat + r.u() / 10, 4), round(lon + r.u() / 10, 4)
    as_text = r.chance(0.2)  # the spec allows latitude/longitude as string or number
    return {
        "address1": f"{r.int(1, 999)} {r.choice(['Main St', 'Rua Augusta', 'Bahnhofstrasse', 'High St'])}",
        "address2": r.choice([None, f"Apt {r.int(1, 40)}"]),
        "city": city,
        "country": country,
        "latitude": str(lat) if as_text else lat,
        "longitude": str(lon) if as_text else lon,
        "region": region,
        "zip": zipc,
        "timezone": tz,
        "ip": f"203.0.113.{r.int(1, 254)}",
    }


def profile(ds, i: int) -> dict:
    r = ds.rng("profile", i)
    created, updated = ds.p_created(i), ds.p_updated(i)
    first, first_a = r.choice(FIRST)
    last, last_a = r.choice(LAST)
    email = None if r.chance(0.06) else f"{first_a}.{last_a}{i}@{r.choice(DOMAINS)}"
    phone = f"+1555{i:07d}" if (email is None or r.chance(0.55)) else None
    attrs = {
        "email": email,
        "phone_number": phone,
        "external_id": f"cus_{i}" if r.chance(0.4) else None,
        "first_name": None if r.chance(0.05) else first,
        "last_name": None if r.chance(0.08) else last,
        "organization": r.choice([None, None, "Acme Corp", "Initech", "Ünïcorn GmbH"]),
        "locale": r.choice([None, "en-US", "fr-FR", "pt-BR", "ja-JP"]),
        "title": r.choice([None, None, "Buyer", "CTO", "Head of Growth"]),
        "image": None if r.chance(0.8) else f"https://images.example.com/p/{i}.png",
        "created": iso(created),
        "updated": iso(updated),
        "last_event_date": None if r.chance(0.2) else iso(created + r.int(0, max(1, updated - created))),
        "location": _location(r),
        "properties": _properties(r, ds, i, created),
    }
    return {"type": "profile", "id": ds.profile_id(i), "attributes": attrs, "relationships": {}, "_i": i}


def _email_marketing(r: Rng, ds, created: int) -> dict:
    consent = r.choice(["SUBSCRIBED", "SUBSCRIBED", "UNSUBSCRIBED", "NEVER_SUBSCRIBED"])
    ts = iso(created + r.int(0, 86400 * 30))
    suppression = []
    if consent == "UNSUBSCRIBED":
        suppression = [{"reason": r.choice(["UNSUBSCRIBE", "HARD_BOUNCE", "SPAM_COMPLAINT"]), "timestamp": ts}]
    list_suppressions = []
    if r.chance(0.05):
        list_suppressions = [{"list_id": ds.list_ids.id(0), "reason": "USER_SUPPRESSED", "timestamp": ts}]
    return {
        "can_receive_email_marketing": consent == "SUBSCRIBED",
        "consent": consent,
        "consent_timestamp": ts if consent != "NEVER_SUBSCRIBED" else None,
        "last_updated": ts,
        "method": r.choice(["FORM", "API", "IMPORT"]) if consent != "NEVER_SUBSCRIBED" else None,
        "method_detail": "",
        "custom_method_detail": None,
        "double_optin": r.choice([None, True, False]),
        "suppression": suppression,
        "list_suppressions": list_suppressions,
    }


def subscriptions(ds, i: int | None, rec: dict) -> dict:
    """Only materialised when `additional-fields[profile]=subscriptions` (or a filter) asks."""
    r = ds.rng("subscriptions", i if i is not None else hash_id(rec["id"]))
    created = ds.p_created(i) if i is not None else ds.now
    has_phone = rec["attributes"].get("phone_number") is not None
    sms_consent = r.choice(["SUBSCRIBED", "NEVER_SUBSCRIBED"]) if has_phone else "NEVER_SUBSCRIBED"
    sms_ts = iso(created + r.int(0, 86400)) if sms_consent == "SUBSCRIBED" else None
    return {
        "email": {"marketing": _email_marketing(r, ds, created)},
        "sms": {
            "marketing": {
                "can_receive_sms_marketing": sms_consent == "SUBSCRIBED",
                "consent": sms_consent,
                "consent_timestamp": sms_ts,
                "method": "TEXT" if sms_ts else None,
                "method_detail": "",
                "last_updated": sms_ts,
            },
            "transactional": None,
        },
        "mobile_push": {
            "marketing": {"can_receive_push_marketing": False, "consent": "NEVER_SUBSCRIBED", "consent_timestamp": None}
        },
    }


def predictive(ds, i: int | None) -> dict:
    if i is None:  # brand-new profiles have no predictions yet
        keys = (
            "historic_clv",
            "predicted_clv",
            "total_clv",
            "historic_number_of_orders",
            "predicted_number_of_orders",
            "average_days_between_orders",
            "average_order_value",
            "churn_probability",
            "expected_date_of_next_order",
        )
        return {**dict.fromkeys(keys), "ranked_channel_affinity": None}
    r = ds.rng("predictive", i)
    hist, pred = r.money(0, 3000), r.money(0, 1500)
    orders = r.int(0, 30)
    return {
        "historic_clv": hist,
        "predicted_clv": pred,
        "total_clv": round(hist + pred, 2),
        "historic_number_of_orders": orders,
        "predicted_number_of_orders": round(r.u() * 5, 2),
        "average_days_between_orders": None if orders < 2 else round(r.u() * 90, 1),
        "average_order_value": round(hist / orders, 2) if orders else 0.0,
        "churn_probability": round(r.u(), 3),
        "expected_date_of_next_order": None if orders < 2 else iso(ds.now + r.int(1, 90) * 86400),
        "ranked_channel_affinity": r.sample(["email", "sms", "push", "whatsapp"], r.int(1, 4)),
    }


def hash_id(ident: str) -> int:
    return salt(ident)
