"""Generated data: deterministic, lazy (flat memory across scales), varied on purpose."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from klaviyo_sandbox import Sandbox, SandboxConfig
from klaviyo_sandbox.query import Query
from klaviyo_sandbox.store import Store

from .client import Client

PATHS = [
    "/api/profiles?page%5Bsize%5D=50",
    "/api/events?page%5Bsize%5D=300&include=metric",
    "/api/campaigns?filter=equals(messages.channel,'sms')",
    "/api/lists",
    "/api/segments",
    "/api/metrics",
    "/api/reviews?sort=-updated",
    "/api/flows",
    "/api/accounts",
]


def _snapshot(seed):
    with Sandbox(SandboxConfig(seed=seed, scale=0.05, rate_limit_scale=0.0)) as box:
        c = Client(box.base_url, box.api_key)
        return [c.get(p).body.replace(box.base_url.encode(), b"BASE") for p in PATHS]


def test_same_seed_same_bytes():
    a, b, c = _snapshot(11), _snapshot(11), _snapshot(12)
    assert a == b
    assert all(x != y for x, y in zip(a[:-1], c[:-1]))


def _pages(store: Store):
    """Exercise deep pages of the big collections in-process (no HTTP)."""
    ds = store.ds
    ev, pr = store.source("events"), store.source("profiles")
    for cursor in [None, ("n", ((1, ds.e_datetime(ds.n_events // 2)), 0, ds.n_events // 2))]:
        Query(ev, [], None).page(1000, cursor)
    Query(pr, [], "-updated").page(100, None)
    Query(store.source("list-members", ds.list_ids.id(0)), [], None).page(100, None)


def _traced(scale):
    gc.collect()
    tracemalloc.start()
    store = Store(SandboxConfig(seed=1, scale=scale))
    _pages(store)
    store.ds.clear_caches()  # bounded LRUs are not per-record state
    gc.collect()
    used = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return used, store.ds.n_events


@pytest.mark.slow
def test_memory_does_not_grow_with_scale():
    small, n_small = _traced(1)
    big, n_big = _traced(10)
    assert n_big == 10 * n_small == 200_000
    assert big < small * 1.5 + 512 * 1024, (small, big)


def test_property_variety(client):
    profiles = client.all("/api/profiles", **{"page[size]": "100"})
    props = [p["attributes"]["properties"] for p in profiles]

    def types(key):
        return {type(p[key]).__name__ for p in props if key in p}

    assert types("plan") == {"str"} and types("vip") == {"bool"} and types("lifetime_orders") == {"int"}
    assert types("ltv") == {"int", "float"} and types("postal_code") == {"int", "str"}
    assert types("prefs") == {"dict"}
    assert 0 < sum("referral_code" in p for p in props) < len(props) * 0.2
    assert sum(p["loyalty_tier"] is None for p in props) > len(props) * 0.7
    names = "".join(f"{p['attributes']['first_name']}{p['attributes']['last_name']}" for p in profiles)
    assert any(ord(ch) > 0xFFFF for ch in names)  # emoji present
    assert any(p["attributes"]["email"] is None and p["attributes"]["phone_number"] for p in profiles)


def test_future_dated_event_and_recently_updated_old_reviews(client, sb):
    last = client.get("/api/events", sort="-datetime", **{"page[size]": "1"}).json()["data"][0]
    assert last["attributes"]["datetime"] > sb.config.now.replace("2026", "2027", 1)[:4]
    reviews = client.all("/api/reviews", **{"page[size]": "100"})
    assert any(
        r["attributes"]["updated"][:7] >= "2026-06" and r["attributes"]["created"][:4] <= "2025" for r in reviews
    )
    ev = client.get("/api/events", **{"page[size]": "1"}).json()["data"][0]
    assert set(ev["relationships"]) == {"profile", "metric", "attributions"}
    assert ev["relationships"]["profile"]["data"]["type"] == "profile"


def test_event_fast_renderer_matches_generic(sb):
    from klaviyo_sandbox.gen_events import event_json
    from klaviyo_sandbox.render import dumps, resource

    for i in (0, 7, sb.store.ds.n_events - 1):
        rec = sb.store.ds.event(i)
        assert event_json(rec, "http://h:1") == dumps(resource(rec, "http://h:1"))
