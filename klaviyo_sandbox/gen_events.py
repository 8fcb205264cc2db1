"""Event generation plus a string-template renderer (events are served 1000 per page)."""

from __future__ import annotations

import json

from . import messages, realistic
from .util import Rng, iso, uuid_from

PRODUCTS = [
    ("Trail Shoe", 89.0),
    ("Café Mug ☕", 14.5),
    ("Tote / Bag", 35.0),
    ("Gift Card 🎁", 50),
    ("Socks (3-pack)", 12.99),
]
_DUMPS = json.JSONEncoder(separators=(",", ":")).encode  # ASCII output: joins/encodes stay memcpy-fast
VARIANTS = 64  # distinct property payloads per metric (pre-encoded once, reused by many events)


def _order(r: Rng, i: int) -> dict:
    items = r.sample(PRODUCTS, r.int(1, 3))
    value = round(sum(p for _, p in items), 2)
    return {
        "$value": int(value) if value == int(value) else value,  # integer-valued numbers sometimes
        "OrderId": f"#{100000 + i}",
        "ItemNames": [n for n, _ in items],
        "Items": [{"ProductName": n, "ItemPrice": p, "Quantity": r.int(1, 3)} for n, p in items],
        "Discount Codes": [] if r.chance(0.7) else ["WELCOME10"],
        "Source": r.choice(["web", "pos", None]),
        "$extra": {"shipping": {"method": r.choice(["standard", "express"]), "cost": r.choice([0, 4.99])}},
    }


def _email(r: Rng, name: str) -> dict:
    props = {
        "Subject": r.choice(["Big news 🎉", "Your cart misses you", "Nouveautés de la semaine"]),
        "Campaign Name": r.choice(["Summer Sale", "Black Friday", "Welcome back"]),
        "$message": r.int(1, 500),  # replaced by messages.attribute (the draw keeps the other values as they were)
        "Email Domain": r.choice(["gmail.com", "example.com", "yahoo.co.jp"]),
        "machine_open": r.chance(0.2),
    }
    if name == "Clicked Email":
        props["URL"] = f"https://shop.example.com/c/{r.int(1, 40)}?utm_source=klaviyo"
    return props


def _product_view(r: Rng) -> dict:
    name, price = r.choice(PRODUCTS)
    pid = r.int(1000, 9999)
    return {
        "ProductName": name,
        "ProductID": pid if r.chance(0.5) else str(pid),  # conflicting types across events
        "Price": price,
        "Categories": r.sample(["Shoes", "Home", "Gifts", "Sale"], r.int(0, 2)),
        "URL": f"https://shop.example.com/products/{pid}",
    }


def properties(r: Rng, name: str, i: int, data: str = "standard") -> dict:
    if data == "realistic":
        return realistic.event_properties(r, name, i)
    if "Order" in name:
        return _order(r, i)
    if "Email" in name:
        return _email(r, name)
    if name in ("Viewed Product", "Added to Cart", "Started Checkout"):
        return _product_view(r)
    if "SMS" in name:
        return {"Message Body": "Flash sale ⚡ today only", "Carrier": r.choice(["T-Mobile", None])}
    if name in messages.FORM_METRICS:
        return {}  # messages.attribute names the form
    if name == "Active on Site":
        return {"page": f"https://shop.example.com/{r.choice(['', 'sale', 'about'])}", "$session_id": r.bits() % 10**9}
    props: dict = {"source": "sandbox"}
    if r.chance(0.5):
        props["score"] = r.int(1, 10)
    return props


def payload(ds, k: int, v: int) -> tuple:
    """(properties dict, its JSON) for metric k, variant v. Callers must not mutate the dict."""
    name = ds.small("metric", k)["attributes"]["name"]
    props = attributed(ds, name, ds.rng("event-props", k * VARIANTS + v), v)
    return props, _DUMPS(props)


def attributed(ds, name: str, r: Rng, v: int) -> dict:
    """An event's properties with the message or form it belongs to, for the Reporting API."""
    props = properties(r, name, v, ds.cfg.data)
    messages.attribute(ds, name, props, v % VARIANTS)  # $message / $attributed_message / form_id
    return props


def event(ds, i: int) -> dict:
    r = ds.rng("event", i)
    ts = ds.e_datetime(i)
    k = ds.metric_for(r)
    pid, mid = ds.profile_id(r.int(0, ds.n_profiles - 1)), ds.metric_id(k)
    props, props_json = ds.event_payload(k, r.int(0, VARIANTS - 1))
    return {
        "type": "event",
        "id": ds.event_ids.id(i),
        "_props_json": props_json,
        "attributes": {
            "timestamp": ts,
            "event_properties": props,
            "datetime": iso(ts),
            "uuid": uuid_from(r.bits64(), r.bits64()),
        },
        "relationships": {
            "profile": {"type": "profile", "id": pid},
            "metric": {"type": "metric", "id": mid},
            "attributions": None,
        },
        "_i": i,
        "_x": {"metric_id": mid, "profile_id": pid, "profile": 1, "metric": 1},
    }


_TEMPLATE = (
    '{"type":"event","id":"%(id)s","attributes":{"timestamp":%(ts)d,"event_properties":%(props)s,'
    '"datetime":"%(dt)s","uuid":"%(uuid)s"},"relationships":{'
    '"profile":{"data":{"type":"profile","id":"%(pid)s"},"links":{"self":"%(u)s/relationships/profile/","related":"%(u)s/profile/"}},'
    '"metric":{"data":{"type":"metric","id":"%(mid)s"},"links":{"self":"%(u)s/relationships/metric/","related":"%(u)s/metric/"}},'
    '"attributions":{"links":{"self":"%(u)s/relationships/attributions/","related":"%(u)s/attributions/"}}},'
    '"links":{"self":"%(u)s/"}}'
)


def event_json(rec: dict, base: str) -> str:
    """Same bytes as json-encoding the rendered resource, ~5x faster."""
    a, rel = rec["attributes"], rec["relationships"]
    return _TEMPLATE % {
        "id": rec["id"],
        "ts": a["timestamp"],
        "dt": a["datetime"],
        "props": rec.get("_props_json") or _DUMPS(a["event_properties"]),
        "uuid": a["uuid"],
        "pid": rel["profile"]["id"],
        "mid": rel["metric"]["id"],
        "u": f"{base}/api/events/{rec['id']}",
    }
