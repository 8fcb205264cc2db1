"""The filter language parser and Klaviyo-like rejection of unsupported fields/operators."""

from __future__ import annotations

import pytest

from klaviyo_sandbox.endpoints import ENDPOINTS
from klaviyo_sandbox.filters import Dt, FilterError, parse, validate


def test_parse_values_and_escapes():
    conds = parse(
        "equals(name,'O\\'Reilly'),any(email,[\"a@x.com\", 'b@y.com']),"
        "greater-than(updated,2024-01-01T00:00:00Z),equals(archived,false),"
        "greater-or-equal(timestamp,1700000000),less-than(rating,4.5),has(profile)"
    )
    assert [c.op for c in conds] == ["equals", "any", "greater-than", "equals", "greater-or-equal", "less-than", "has"]
    assert conds[0].value == "O'Reilly"
    assert conds[1].value == ["a@x.com", "b@y.com"]
    assert isinstance(conds[2].value, Dt) and conds[2].value.ts == 1704067200
    assert conds[3].value is False and conds[4].value == 1700000000 and conds[5].value == 4.5
    assert not conds[6].has_value


def test_and_wrapper_and_unencoded_plus():
    conds = parse("and(equals(messages.channel,'sms'),greater-than(updated_at,2024-01-01T00:00:00 00:00))")
    assert len(conds) == 2 and conds[1].value.ts == 1704067200  # '+' decoded to ' ' by a sloppy client


@pytest.mark.parametrize(
    "text",
    [
        "",
        "equals(name)x",
        "equals(name,unquoted)",
        "nope(name,'x')",
        "equals(name,'x'",
        "or(equals(a,'x'),equals(b,'y'))",
    ],
)
def test_malformed_filters_raise(text):
    with pytest.raises(FilterError):
        parse(text)


@pytest.mark.parametrize(
    "op,text",
    [
        ("get_lists", "greater-or-equal(updated,2024-01-01T00:00:00Z)"),
        ("get_lists", "less-than(updated,2024-01-01T00:00:00Z)"),
        ("get_segments", "greater-or-equal(updated,2024-01-01T00:00:00Z)"),
        ("get_profiles", "greater-or-equal(updated,2024-01-01T00:00:00Z)"),
        ("get_profiles", "equals(updated,2024-01-01T00:00:00Z)"),
        ("get_reviews", "greater-than(created,2024-01-01T00:00:00Z)"),
        ("get_reviews", "greater-or-equal(updated,2024-01-01T00:00:00Z)"),
        ("get_campaigns", "equals(messages.channel,'fax')"),
        ("get_events", "equals(datetime,2024-01-01T00:00:00Z)"),
        ("get_events", "greater-than(datetime,'not a date')"),
        ("get_flows", "equals(archived,'yes')"),
        ("get_profiles_for_list", "greater-than(updated,2024-01-01T00:00:00Z)"),
    ],
)
def test_validation_rejects_like_klaviyo(op, text):
    ep = ENDPOINTS[op]
    with pytest.raises(FilterError):
        validate(parse(text), ep.filters, ep.rtype)


@pytest.mark.parametrize(
    "op,text",
    [
        ("get_lists", "greater-than(updated,2024-01-01T00:00:00Z)"),
        ("get_lists", "equals(name,'VIP')"),
        ("get_lists", "equals(name,['VIP'])"),
        ("get_lists", "any(name,['VIP','Newsletter'])"),
        ("get_profiles", "less-than(updated,2024-01-01T00:00:00+00:00)"),
        ("get_profiles", "any(email,['a@x.com'])"),
        ("get_reviews", "greater-or-equal(created,2024-01-01T00:00:00Z),less-or-equal(created,2025-01-01T00:00:00Z)"),
        ("get_flows", "less-or-equal(updated,2024-01-01T00:00:00Z)"),
        ("get_profiles_for_list", "greater-or-equal(joined_group_at,2024-01-01T00:00:00Z)"),
    ],
)
def test_validation_accepts_supported(op, text):
    ep = ENDPOINTS[op]
    assert validate(parse(text), ep.filters, ep.rtype)


@pytest.mark.parametrize(
    "path,flt",
    [
        ("/api/lists", "greater-or-equal(updated,2024-01-01T00:00:00Z)"),
        ("/api/segments", "less-than(updated,2024-01-01T00:00:00Z)"),
        ("/api/profiles", "greater-or-equal(updated,2024-01-01T00:00:00Z)"),
        ("/api/profiles", "equals(favourite_colour,'red')"),
        ("/api/events", "contains(datetime,'2024')"),
        ("/api/campaigns", "greater-than(updated_at,2024-01-01T00:00:00Z)"),  # no channel filter
    ],
)
def test_http_rejects_unsupported_filters(client, path, flt):
    resp = client.get(path, filter=flt)
    assert resp.status == 400, resp
    err = resp.json()["errors"][0]
    assert err["code"] == "invalid" and err["source"] == {"parameter": "filter"}
    assert {"id", "status", "code", "title", "detail"} <= set(err)


def test_campaigns_require_channel_filter(client):
    resp = client.get("/api/campaigns")
    assert resp.status == 400 and "channel" in resp.json()["errors"][0]["detail"]


def test_lookup_filters(client):
    lists = client.all("/api/lists")
    names = [x["attributes"]["name"] for x in lists]
    assert "Newsletter" in names and "newsletter" in names and names.count("Duplicate Name") == 2
    exact = client.get("/api/lists", filter='equals(name,"O\'Reilly\'s \\"quoted\\" list")').json()["data"]
    assert [x["attributes"]["name"] for x in exact] == ["O'Reilly's \"quoted\" list"]
    both = client.get("/api/lists", filter="any(name,['Duplicate Name','a,b (comma) list'])").json()["data"]
    assert sorted(x["attributes"]["name"] for x in both) == ["Duplicate Name", "Duplicate Name", "a,b (comma) list"]
    profiles = client.get("/api/profiles", **{"page[size]": "100"}).json()["data"]
    emails = [p["attributes"]["email"] for p in profiles if p["attributes"]["email"]][:3]
    quoted = ",".join(f"'{e}'" for e in emails)
    found = client.get("/api/profiles", filter=f"any(email,[{quoted}])").json()["data"]
    assert sorted(p["attributes"]["email"] for p in found) == sorted(emails)
    upper = client.get("/api/profiles", filter=f"equals(email,'{emails[0].upper()}')").json()["data"]
    assert [p["attributes"]["email"] for p in upper] == [emails[0]]


def test_time_filters_match_brute_force(client):
    events = client.all("/api/events", **{"page[size]": "1000"})
    lo, hi = "2026-01-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00"
    got = client.all(
        "/api/events", **{"page[size]": "37", "filter": f"greater-than(datetime,{lo}),less-or-equal(datetime,{hi})"}
    )
    want = [e["id"] for e in events if lo < e["attributes"]["datetime"] <= hi]
    assert [e["id"] for e in got] == want and want
    metric = events[0]["relationships"]["metric"]["data"]["id"]
    got = client.all("/api/events", **{"page[size]": "50", "filter": f"equals(metric_id,'{metric}')"})
    assert [e["id"] for e in got] == [e["id"] for e in events if e["relationships"]["metric"]["data"]["id"] == metric]
    reviews = client.all("/api/reviews", **{"page[size]": "100"})
    got = client.all("/api/reviews", filter=f"greater-or-equal(created,{lo})")
    assert [r["id"] for r in got] == [r["id"] for r in reviews if r["attributes"]["created"] >= lo]
