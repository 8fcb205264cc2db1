"""Cursor pagination: links carry every parameter, bounds on page[size], sorting, prev links."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest


def test_next_link_carries_all_parameters(client, sb):
    params = {
        "filter": "greater-than(updated,2025-01-01T00:00:00Z)",
        "sort": "-updated",
        "page[size]": "3",
        "fields[profile]": "email,updated,subscriptions",
        "additional-fields[profile]": "subscriptions",
    }
    doc = client.get("/api/profiles", **params).json()
    nxt = doc["links"]["next"]
    assert nxt.startswith(sb.base_url + "/api/profiles?")
    q = {k: v[0] for k, v in parse_qs(urlsplit(nxt).query).items()}
    assert q.pop("page[cursor]")
    assert q == params
    page2 = client.get(nxt).json()
    assert all(p["attributes"]["updated"] > "2025-01-01T00:00:00+00:00" for p in page2["data"])
    assert set(page2["data"][0]["attributes"]) == {"email", "updated", "subscriptions"}
    assert page2["links"]["prev"]


def test_walk_equals_unpaged_result(client):
    flt = "greater-than(updated,2025-03-01T00:00:00Z)"
    full = client.get("/api/profiles", filter=flt, sort="updated", **{"page[size]": "100"}).json()
    assert "next" not in full["links"]
    paged = client.all("/api/profiles", filter=flt, sort="updated", **{"page[size]": "7"})
    assert [p["id"] for p in paged] == [p["id"] for p in full["data"]]
    updated = [p["attributes"]["updated"] for p in paged]
    assert updated == sorted(updated)
    desc = client.all("/api/profiles", filter=flt, sort="-updated", **{"page[size]": "7"})
    assert [p["id"] for p in desc] == [p["id"] for p in paged][::-1]


def test_prev_link_returns_previous_page(client):
    p1 = client.get("/api/events", **{"page[size]": "5"}).json()
    assert "prev" not in p1["links"]
    p2 = client.get(p1["links"]["next"]).json()
    back = client.get(p2["links"]["prev"]).json()
    assert [e["id"] for e in back["data"]] == [e["id"] for e in p1["data"]]


@pytest.mark.parametrize(
    "path,size",
    [
        ("/api/profiles", "0"),
        ("/api/profiles", "101"),
        ("/api/lists", "11"),
        ("/api/segments", "11"),
        ("/api/events", "1001"),
        ("/api/flows", "51"),
        ("/api/reviews", "abc"),
        ("/api/metrics", "10"),
    ],
)
def test_page_size_bounds(client, path, size):
    resp = client.get(path, **{"page[size]": size})
    assert resp.status == 400, resp
    assert resp.json()["errors"][0]["source"] == {"parameter": "page[size]"}


def test_page_size_maximums_accepted(client):
    assert len(client.get("/api/events", **{"page[size]": "1000"}).json()["data"]) == 1000
    assert len(client.get("/api/lists", **{"page[size]": "10"}).json()["data"]) == 10
    assert client.get("/api/profiles", **{"page[size]": "1"}).status == 200


def test_default_page_sizes(client):
    assert len(client.get("/api/events").json()["data"]) == 200
    assert len(client.get("/api/profiles").json()["data"]) == 20
    assert len(client.get("/api/lists").json()["data"]) == 10


def test_cursor_is_bound_to_query(client):
    doc = client.get("/api/events", **{"page[size]": "2"}).json()
    cursor = parse_qs(urlsplit(doc["links"]["next"]).query)["page[cursor]"][0]
    other = client.get("/api/events", sort="-datetime", **{"page[cursor]": cursor})
    assert other.status == 400 and other.json()["errors"][0]["source"] == {"parameter": "page[cursor]"}
    assert client.get("/api/events", **{"page[cursor]": "garbage!!"}).status == 400


def test_invalid_sort_and_unknown_parameters(client):
    assert client.get("/api/profiles", sort="first_name").status == 400
    assert client.get("/api/profiles", foo="bar").status == 400
    assert client.get("/api/profiles", **{"additional-fields[profile]": "everything"}).status == 400
    assert client.get("/api/events", include="campaign").status == 400


def test_campaigns_ignore_sort_with_stable_shuffle(client):
    flt = "equals(messages.channel,'email')"
    plain = [c["id"] for c in client.all("/api/campaigns", filter=flt, **{"page[size]": "1"})]
    by_name = client.all("/api/campaigns", filter=flt, sort="name")
    assert [c["id"] for c in by_name] == plain
    assert client.get("/api/campaigns", filter=flt, sort="bogus").status == 400
    all_ids = [
        c["id"]
        for ch in ("email", "sms", "mobile_push")
        for c in client.all("/api/campaigns", filter=f"equals(messages.channel,'{ch}')")
    ]
    assert len(all_ids) == len(set(all_ids))


def test_members_pagination_and_sparse_fields(client, sb):
    lid = client.get("/api/lists").json()["data"][0]["id"]
    ids = [r["id"] for r in client.all(f"/api/lists/{lid}/relationships/profiles", **{"page[size]": "9"})]
    assert ids == sb.store.member_ids(lid) and len(ids) > 20
    rows = client.all(f"/api/lists/{lid}/profiles", **{"page[size]": "100", "fields[profile]": "joined_group_at"})
    assert [r["id"] for r in rows] == ids
    assert all(set(r["attributes"]) == {"joined_group_at"} for r in rows)
    joined = [r["attributes"]["joined_group_at"] for r in rows]
    assert joined == sorted(joined)
    cut = joined[len(joined) // 2]
    later = client.all(
        f"/api/lists/{lid}/relationships/profiles",
        filter=f"greater-or-equal(joined_group_at,{cut})",
        sort="-joined_group_at",
    )
    assert [r["id"] for r in later] == [r["id"] for r, j in zip(rows, joined) if j >= cut][::-1]


def test_unknown_ids_are_404(client):
    assert client.get("/api/lists/NOPE12").status == 404
    assert client.get("/api/lists/NOPE12/profiles").status == 404
    assert client.get("/api/segments/NOPE12/relationships/profiles").status == 404
    assert client.get("/api/nothing-here").status == 404
