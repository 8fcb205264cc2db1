"""Archived campaigns and flows are hidden unless asked for; late events; archiving."""

from __future__ import annotations

import pytest

CHANNELS = ("email", "sms", "mobile_push")


def _campaigns(c, channel: str, archived: str | None = None) -> list[dict]:
    flt = f"equals(messages.channel,'{channel}')" + (f",equals(archived,{archived})" if archived else "")
    return c.all("/api/campaigns", filter=flt)


def test_archived_campaigns_are_hidden_unless_the_filter_asks_for_them(client):
    for channel in CHANNELS:
        default, live, archived = (_campaigns(client, channel, a) for a in (None, "false", "true"))
        assert default and archived, channel  # every channel has both (generated on purpose)
        assert [x["id"] for x in default] == [x["id"] for x in live]
        assert not any(x["attributes"]["archived"] for x in default)
        assert all(x["attributes"]["archived"] for x in archived)
        assert not {x["id"] for x in default} & {x["id"] for x in archived}


def test_archived_flows_are_hidden_unless_the_filter_asks_for_them(client, sb):
    default = client.all("/api/flows")
    archived = client.all("/api/flows", filter="equals(archived,true)")
    assert default and archived
    assert not any(f["attributes"]["archived"] for f in default)
    assert all(f["attributes"]["archived"] for f in archived)
    assert len(default) + len(archived) == sb.store.ds.n_flows
    with_updated = client.all("/api/flows", filter="greater-than(updated,2000-01-01T00:00:00Z)")
    assert sorted(f["id"] for f in with_updated) == sorted(f["id"] for f in default)  # other filters still hide them


@pytest.mark.parametrize("flt", ["any(archived,[true])", "equals(archived,'true')", "has(archived)"])
def test_only_equals_with_a_boolean_is_allowed_on_archived(client, flt):
    response = client.get("/api/flows", filter=flt)
    assert response.status == 400 and response.json()["errors"][0]["source"]["parameter"] == "filter"


def test_archiving_moves_a_flow_to_the_archived_pass_with_a_new_updated(fresh):
    _, c = fresh
    live_before = {f["id"] for f in c.all("/api/flows")}
    out = c.post("/__sandbox/archive?stream=flows&n=1").json()
    (flow_id,) = out["archived"]
    assert flow_id in live_before
    assert flow_id not in {f["id"] for f in c.all("/api/flows")}
    (archived,) = [f for f in c.all("/api/flows", filter="equals(archived,true)") if f["id"] == flow_id]
    others = c.all("/api/flows") + c.all("/api/flows", filter="equals(archived,true)")
    assert archived["attributes"]["updated"] == max(f["attributes"]["updated"] for f in others)  # updated now
    assert c.post("/__sandbox/archive?stream=lists&n=1").status == 400


def test_a_late_event_is_written_now_and_dated_in_the_past(fresh):
    _, c = fresh
    out = c.post("/__sandbox/event?datetime=2026-07-01T10:00:00Z&n=2").json()
    assert len(out["events"]) == 2
    window = "greater-or-equal(datetime,2026-07-01T10:00:00Z),less-than(datetime,2026-07-01T10:00:01Z)"
    found = c.all("/api/events", filter=window)
    assert {e["id"] for e in found} >= set(out["events"])
    assert all(e["attributes"]["datetime"] == "2026-07-01T10:00:00+00:00" for e in found if e["id"] in out["events"])
    assert c.post("/__sandbox/event?datetime=yesterday").status == 400
