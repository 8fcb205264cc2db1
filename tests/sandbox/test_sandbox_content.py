"""The content endpoints (klaviyo_sandbox.gen_content) follow the spec and Klaviyo's rules."""

from __future__ import annotations

import pytest

from klaviyo_sandbox import Sandbox, SandboxConfig

from .client import Client
from .spec import assert_valid

# (path, params, more than one page at this scale)
CASES = [
    ("/api/campaigns", {"filter": "equals(messages.channel,'email')", "include": "campaign-messages,tags"}, False),
    ("/api/campaigns", {"filter": "equals(messages.channel,'sms')", "include": "campaign-messages"}, False),
    ("/api/campaigns", {"filter": "equals(messages.channel,'mobile_push')", "include": "campaign-messages"}, False),
    ("/api/flows", {"include": "flow-actions,tags", "page[size]": "2"}, True),
    ("/api/templates", {"additional-fields[template]": "definition"}, True),
    ("/api/tags", {"include": "tag-group", "page[size]": "4"}, True),
    ("/api/tag-groups", {"page[size]": "2"}, True),
    ("/api/catalog-items", {"include": "variants", "page[size]": "20"}, True),
    ("/api/catalog-variants", {"page[size]": "100"}, True),
    ("/api/catalog-categories", {"page[size]": "2"}, True),
    ("/api/coupons", {"page[size]": "2"}, True),
    ("/api/coupon-codes", {"filter": "equals(coupon.id,'VIP-20')", "include": "coupon", "page[size]": "100"}, True),
    ("/api/forms", {"page[size]": "2", "sort": "updated_at"}, True),
    ("/api/images", {"page[size]": "5", "sort": "-updated_at"}, True),
]


@pytest.mark.parametrize("path,params,paged", CASES, ids=[f"{p} {sorted(q)}" for p, q, _ in CASES])
def test_pages_match_the_spec(client, path, params, paged):
    first = client.get(path, **params)
    assert first.status == 200, first
    doc = first.json()
    assert_valid(doc, path)
    assert doc["data"]
    if "include" in params:
        assert doc["included"], "the included resources are served"
    if paged:
        second = client.get(doc["links"]["next"])
        assert second.status == 200, second
        assert_valid(second.json(), path)
        assert {r["id"] for r in doc["data"]}.isdisjoint(r["id"] for r in second.json()["data"])


def test_flow_messages_of_every_action_match_the_spec_and_unknown_actions_are_404(client):
    actions = client.get("/api/flows", include="flow-actions").json()["included"]
    found = 0
    for action in actions:
        resp = client.get(f"/api/flow-actions/{action['id']}/flow-messages", sort="updated")
        assert resp.status == 200, resp
        assert_valid(resp.json(), "/api/flow-actions/{id}/flow-messages")
        messages = resp.json()["data"]
        assert {m["id"] for m in messages} == {r["id"] for r in action["relationships"]["flow-messages"]["data"]}
        found += len(messages)
    assert found
    assert client.get("/api/flow-actions/nope/flow-messages").status == 404


def test_included_resources_are_the_ones_the_relationships_name(client):
    doc = client.get("/api/campaigns", filter="equals(messages.channel,'email')", include="campaign-messages").json()
    named = {ref["id"] for c in doc["data"] for ref in c["relationships"]["campaign-messages"]["data"]}
    assert {r["id"] for r in doc["included"]} == named
    for message in doc["included"]:
        assert message["attributes"]["definition"]["channel"] == "email"


@pytest.mark.parametrize(
    "path,params,detail",
    [
        ("/api/coupon-codes", {}, "coupon/coupons or a profile/profiles must be provided"),
        ("/api/coupon-codes", {"filter": "equals(status,'USED')"}, "coupon/coupons or a profile/profiles"),
        ("/api/catalog-items", {"filter": "greater-than(updated,2024-01-01T00:00:00Z)"}, "not a valid field"),
        ("/api/coupons", {"filter": "equals(external_id,'X')"}, "not a valid query parameter"),
        ("/api/templates", {"page[size]": "11"}, "between 1 and 10"),
        ("/api/tag-groups", {"page[size]": "26"}, "between 1 and 25"),
        ("/api/flows", {"include": "flow-messages"}, "not a valid include"),
        ("/api/images", {"sort": "created"}, "not a valid sort"),
    ],
)
def test_what_klaviyo_refuses_is_refused(client, path, params, detail):
    resp = client.get(path, **params)
    assert resp.status == 400, resp
    assert detail in resp.json()["errors"][0]["detail"]


def test_filters_select_like_klaviyo(client):
    codes = client.get("/api/coupon-codes", filter="equals(coupon.id,'WELCOME10')").json()["data"]
    assert codes == []  # the coupon without codes
    variants = client.get("/api/catalog-variants", filter="equals(item.id,'$custom:::$default:::SKU-1')").json()["data"]
    assert variants and {v["relationships"]["item"]["data"]["id"] for v in variants} == {"$custom:::$default:::SKU-1"}
    late = client.get("/api/templates", filter="greater-or-equal(updated,2025-01-01T00:00:00+00:00)", sort="updated")
    values = [t["attributes"]["updated"] for t in late.json()["data"]]
    assert values == sorted(values) and all(v >= "2025-01-01" for v in values)


def test_reviews_point_at_catalog_items_that_exist(client):
    items = {i["id"] for i in client.get("/api/catalog-items").json()["data"]}
    reviewed = {
        r["relationships"]["item"]["data"]["id"]
        for r in client.get("/api/reviews", **{"page[size]": "100"}).json()["data"]
        if r["relationships"]["item"].get("data")
    }
    assert reviewed and reviewed <= items


def test_flow_messages_allow_three_requests_a_second():
    with Sandbox(SandboxConfig(seed=1, scale=0.01, rate_window="sliding")) as box:
        c = Client(box.base_url, box.api_key)
        action = c.get("/api/flows", include="flow-actions").json()["included"][0]["id"]
        statuses = [c.get(f"/api/flow-actions/{action}/flow-messages").status for _ in range(4)]
        assert statuses == [200, 200, 200, 429]


def test_touch_moves_templates_forms_and_images_to_now(fresh):
    box, c = fresh
    before = {t["id"]: t["attributes"]["updated"] for t in c.get("/api/templates", sort="-updated").json()["data"]}
    touched = box.store.touch("images", 3)["touched"]
    assert len(touched) == 3
    now = c.get("/api/images", filter=f"equals(id,'{touched[0]}')").json()["data"][0]["attributes"]["updated_at"]
    assert now >= box.store.ds.iso(box.store.ds.now)
    latest = c.get("/api/images", sort="-updated_at", **{"page[size]": "3"}).json()["data"]
    assert {i["id"] for i in latest} == set(touched)
    assert {
        t["id"]: t["attributes"]["updated"] for t in c.get("/api/templates", sort="-updated").json()["data"]
    } == before
