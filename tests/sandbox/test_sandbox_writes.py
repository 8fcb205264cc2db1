"""Writes: create list, add/remove members, bulk import jobs, touch."""

from __future__ import annotations

import json
import time

ADD = "/api/lists/{}/relationships/profiles"


def _profiles(c, n=5):
    return [p["id"] for p in c.get("/api/profiles", **{"page[size]": str(n)}).json()["data"]]


def _job_body(rows, list_id=None):
    data = {"type": "profile-bulk-import-job", "attributes": {"profiles": {"data": rows}}}
    if list_id:
        data["relationships"] = {"lists": {"data": [{"type": "list", "id": list_id}]}}
    return {"data": data}


def test_create_list_allows_duplicate_names(fresh):
    _box, c = fresh
    body = {"data": {"type": "list", "attributes": {"name": "Dupe 🚀", "opt_in_process": "single_opt_in"}}}
    a, b = c.post("/api/lists", body), c.post("/api/lists", body)
    assert a.status == b.status == 201
    assert a.json()["data"]["id"] != b.json()["data"]["id"]
    found = c.get("/api/lists", filter="equals(name,'Dupe 🚀')").json()["data"]
    assert len(found) == 2
    assert c.get(f"/api/lists/{a.json()['data']['id']}").json()["data"]["attributes"]["name"] == "Dupe 🚀"
    assert c.post("/api/lists", {"data": {"type": "list", "attributes": {}}}).status == 400
    assert c.post("/api/lists", {"data": {"type": "segment", "attributes": {"name": "x"}}}).status == 400


def test_add_and_remove_members_with_set_semantics(fresh):
    box, c = fresh
    lid = c.post("/api/lists", {"data": {"type": "list", "attributes": {"name": "Members"}}}).json()["data"]["id"]
    pids = _profiles(c)
    body = {"data": [{"type": "profile", "id": p} for p in pids]}
    resp = c.post(ADD.format(lid), body)
    assert resp.status == 204 and resp.body == b""
    first = c.all(f"/api/lists/{lid}/profiles", **{"fields[profile]": "joined_group_at"})
    assert sorted(r["id"] for r in first) == sorted(pids)
    assert c.post(ADD.format(lid), body).status == 204  # idempotent: same members, same join times
    again = c.all(f"/api/lists/{lid}/profiles", **{"fields[profile]": "joined_group_at"})
    assert again == first
    assert c.delete(ADD.format(lid), {"data": [{"type": "profile", "id": pids[0]}]}).status == 204
    assert c.delete(ADD.format(lid), {"data": [{"type": "profile", "id": pids[0]}]}).status == 204
    assert sorted(box.store.member_ids(lid)) == sorted(pids[1:])
    assert (
        c.get(f"/api/lists/{lid}", **{"additional-fields[list]": "profile_count"}).json()["data"]["attributes"][
            "profile_count"
        ]
        == len(pids) - 1
    )


def test_membership_changes_on_generated_list(fresh):
    box, c = fresh
    lid = c.get("/api/lists").json()["data"][0]["id"]
    members = box.store.member_ids(lid)
    victim = members[0]
    assert c.delete(ADD.format(lid), {"data": [{"type": "profile", "id": victim}]}).status == 204
    assert victim not in [r["id"] for r in c.all(f"/api/lists/{lid}/relationships/profiles")]
    assert c.post(ADD.format(lid), {"data": [{"type": "profile", "id": victim}]}).status == 204
    rows = c.all(f"/api/lists/{lid}/profiles", **{"fields[profile]": "joined_group_at"})
    assert rows[-1]["id"] == victim  # re-joined now: newest joined_group_at
    assert len(rows) == len(members)


def test_member_changes_validation(fresh):
    _box, c = fresh
    lid = c.get("/api/lists").json()["data"][0]["id"]
    unknown = c.post(ADD.format(lid), {"data": [{"type": "profile", "id": "01NOTAREALPROFILEID0000000"}]})
    assert unknown.status == 400 and unknown.json()["errors"][0]["source"] == {"pointer": "/data/0/id"}
    too_many = {"data": [{"type": "profile", "id": f"x{k}"} for k in range(1001)]}
    assert c.post(ADD.format(lid), too_many).status == 400
    assert c.post(ADD.format("NOPE12"), {"data": [{"type": "profile", "id": "x"}]}).status == 404


def test_bulk_import_lifecycle_with_errors(fresh):
    box, c = fresh
    lid = c.post("/api/lists", {"data": {"type": "list", "attributes": {"name": "Imported"}}}).json()["data"]["id"]
    existing = c.get("/api/profiles", **{"page[size]": "1"}).json()["data"][0]
    rows = [
        {
            "type": "profile",
            "attributes": {"email": f"new{k}@example.com", "first_name": "Zoë", "properties": {"plan": "pro", "k": k}},
        }
        for k in range(4)
    ]
    rows.append(
        {
            "type": "profile",
            "attributes": {
                "email": existing["attributes"]["email"] or "x@example.com",
                "phone_number": existing["attributes"]["phone_number"],
                "properties": {"imported": True},
            },
        }
    )
    rows.append({"type": "profile", "attributes": {"email": "broken@"}})
    rows.append({"type": "profile", "attributes": {"phone_number": "+1 (555) 010-0000"}})
    rows.append({"type": "profile", "attributes": {"first_name": "No identifiers"}})
    resp = c.post("/api/profile-bulk-import-jobs", _job_body(rows, lid))
    assert resp.status == 202, resp
    job = resp.json()["data"]
    assert job["attributes"]["status"] == "queued" and job["attributes"]["total_count"] == 8
    assert job["relationships"]["lists"]["data"] == [{"type": "list", "id": lid}]
    seen = {job["attributes"]["status"]}
    deadline = time.time() + 5
    while time.time() < deadline:
        attrs = c.get(f"/api/profile-bulk-import-jobs/{job['id']}").json()["data"]["attributes"]
        seen.add(attrs["status"])
        if attrs["status"] == "complete":
            break
        time.sleep(0.05)
    assert seen == {"queued", "processing", "complete"}
    assert attrs["completed_count"] == 5 and attrs["failed_count"] == 3 and attrs["completed_at"]
    errors = c.all(f"/api/profile-bulk-import-jobs/{job['id']}/import-errors", **{"page[size]": "2"})
    pointers = [e["attributes"]["source"]["pointer"] for e in errors]
    assert pointers == [
        "/data/attributes/profiles/data/5/attributes/email",
        "/data/attributes/profiles/data/6/attributes/phone_number",
        "/data/attributes/profiles/data/7/attributes",
    ]
    assert errors[0]["attributes"]["original_payload"] == {"email": "broken@"}
    found = c.get("/api/profiles", filter="equals(email,'new2@example.com')").json()["data"]
    assert found and found[0]["attributes"]["properties"] == {"plan": "pro", "k": 2}
    updated = box.store.get_profile(existing["id"])["attributes"]
    assert updated["properties"]["imported"] is True and updated["properties"]["plan"]  # merged, not replaced
    assert updated["updated"] > existing["attributes"]["updated"]
    members = box.store.member_ids(lid)
    assert len(members) == 5 and existing["id"] in members


def test_bulk_import_limits(fresh):
    _box, c = fresh
    rows = [{"type": "profile", "attributes": {"email": f"p{k}@example.com"}} for k in range(10_001)]
    resp = c.post("/api/profile-bulk-import-jobs", _job_body(rows))
    assert resp.status == 400 and "10000" in resp.json()["errors"][0]["detail"]
    blob = {"type": "profile", "attributes": {"email": "big@example.com", "properties": {"x": "y" * 600_000}}}
    big = json.dumps(_job_body([blob] * 9)).encode()
    assert len(big) > 5 * 1024 * 1024
    assert (
        c.post("/api/profile-bulk-import-jobs", big, headers={"Content-Type": "application/vnd.api+json"}).status == 413
    )
    assert c.post("/api/profile-bulk-import-jobs", _job_body([])).status == 400
    bad_list = _job_body([{"type": "profile", "attributes": {"email": "a@b.co"}}], "NOPE12")
    assert c.post("/api/profile-bulk-import-jobs", bad_list).status == 400
    assert c.get("/api/profile-bulk-import-jobs/unknown").status == 404


def test_touch_feeds_incremental_syncs(fresh):
    box, c = fresh
    profiles = c.all("/api/profiles", **{"page[size]": "100"})
    bookmark = max(p["attributes"]["updated"] for p in profiles)
    events_before = c.all("/api/events", **{"page[size]": "1000"})
    last_real = max(e["attributes"]["datetime"] for e in events_before[:-1])  # skip the future-dated one
    time.sleep(1.05)  # timestamps have 1 s resolution, like Klaviyo's
    out = c.post("/__sandbox/touch?stream=profiles&n=4").json()
    assert len(out["touched"]) == 4 and len(out["events"]) == 4
    changed = c.all("/api/profiles", filter=f"greater-than(updated,{bookmark})", sort="updated")
    assert sorted(p["id"] for p in changed) == sorted(out["touched"])
    new_events = c.all(
        "/api/events", filter=f"greater-than(datetime,{last_real}),less-than(datetime,2027-01-01T00:00:00Z)"
    )
    assert [e["id"] for e in new_events] == out["events"]
    assert {e["relationships"]["profile"]["data"]["id"] for e in new_events} == set(out["touched"])
    lists = box.store.touch("lists", 2)
    fresh_lists = c.all("/api/lists", filter=f"greater-than(updated,{bookmark})")
    assert sorted(x["id"] for x in fresh_lists) == sorted(lists["touched"])
    assert c.post("/__sandbox/touch?stream=nope&n=1").status == 400
