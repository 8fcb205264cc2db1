"""Every GET endpoint's first and next page validate against the official spec's schemas."""

from __future__ import annotations

import time

import pytest

from klaviyo_sandbox import Sandbox, SandboxConfig

from .client import Client
from .spec import assert_valid

PROFILE_EXTRAS = {"additional-fields[profile]": "subscriptions,predictive_analytics"}
CASES = [
    ("/api/campaigns", {"filter": "equals(messages.channel,'email')", "page[size]": "1"}),
    ("/api/campaigns", {"filter": "equals(messages.channel,'sms')", "page[size]": "1"}),
    ("/api/campaigns", {"filter": "equals(messages.channel,'mobile_push')", "page[size]": "1"}),
    ("/api/events", {"page[size]": "3"}),
    ("/api/events", {"page[size]": "2", "include": "metric,profile"}),
    ("/api/flows", {"page[size]": "2"}),
    ("/api/lists", {"page[size]": "3"}),
    ("/api/profiles", {"page[size]": "2", **PROFILE_EXTRAS}),
    ("/api/profiles", {"page[size]": "2"}),
    ("/api/reviews", {"page[size]": "5"}),
    ("/api/segments", {"page[size]": "2"}),
    ("/api/lists/{list}/profiles", {"page[size]": "2", **PROFILE_EXTRAS}),
    ("/api/lists/{list}/profiles", {"page[size]": "2", "fields[profile]": "joined_group_at"}),
    ("/api/lists/{list}/relationships/profiles", {"page[size]": "2"}),
    ("/api/segments/{segment}/profiles", {"page[size]": "2"}),
    ("/api/segments/{segment}/relationships/profiles", {"page[size]": "2"}),
]
SPEC_PATHS = {"{list}": "{id}", "{segment}": "{id}"}


def spec_path(path: str) -> str:
    for k, v in SPEC_PATHS.items():
        path = path.replace(k, v)
    return path


@pytest.fixture(scope="module")
def ids(client):
    lists = client.get("/api/lists").json()["data"]
    segments = client.get("/api/segments").json()["data"]
    return {"{list}": lists[0]["id"], "{segment}": segments[0]["id"]}


@pytest.mark.parametrize("path,params", CASES, ids=[f"{p} {sorted(q)}" for p, q in CASES])
def test_first_and_next_page_match_spec(client, ids, path, params):
    url = path
    for k, v in ids.items():
        url = url.replace(k, v)
    first = client.get(url, **params)
    assert first.status == 200, first
    assert first.headers["content-type"] == "application/vnd.api+json"
    doc = first.json()
    assert_valid(doc, spec_path(path))
    assert doc["data"], "expected a non-empty first page"
    nxt = doc["links"].get("next")
    assert nxt, "expected a second page"
    second = client.get(nxt)
    assert second.status == 200, second
    assert_valid(second.json(), spec_path(path))
    assert {r["id"] for r in doc["data"]}.isdisjoint(r["id"] for r in second.json()["data"])


def test_accounts_and_single_list_match_spec(client, ids):
    assert_valid(client.get("/api/accounts").json(), "/api/accounts")
    doc = client.get(f"/api/lists/{ids['{list}']}", **{"additional-fields[list]": "profile_count"}).json()
    assert_valid(doc, "/api/lists/{id}")
    assert isinstance(doc["data"]["attributes"]["profile_count"], int)


def test_metrics_pages_match_spec():
    # get_metrics has a fixed page size of 200: scale 6 gives 240 metrics, i.e. two pages.
    with Sandbox(SandboxConfig(seed=3, scale=6, rate_limit_scale=0.0)) as box:
        c = Client(box.base_url, box.api_key)
        first = c.get("/api/metrics").json()
        assert len(first["data"]) == 200
        assert_valid(first, "/api/metrics")
        second = c.get(first["links"]["next"]).json()
        assert len(second["data"]) == 40 and "next" not in second["links"]
        assert_valid(second, "/api/metrics")


def test_write_responses_and_job_reads_match_spec(fresh):
    _box, c = fresh
    created = c.post("/api/lists", {"data": {"type": "list", "attributes": {"name": "Spec check"}}})
    assert created.status == 201, created
    assert_valid(created.json(), "/api/lists", "post", "201")
    rows = [{"type": "profile", "attributes": {"email": f"spec{k}@example.com"}} for k in range(3)]
    rows.append({"type": "profile", "attributes": {"email": "not-an-email"}})
    rows.append({"type": "profile", "attributes": {"phone_number": "555-0100"}})
    body = {
        "data": {
            "type": "profile-bulk-import-job",
            "attributes": {"profiles": {"data": rows}},
            "relationships": {"lists": {"data": [{"type": "list", "id": created.json()["data"]["id"]}]}},
        }
    }
    job = c.post("/api/profile-bulk-import-jobs", body)
    assert job.status == 202, job
    assert_valid(job.json(), "/api/profile-bulk-import-jobs", "post", "202")
    jid = job.json()["data"]["id"]
    time.sleep(0.4)
    got = c.get(f"/api/profile-bulk-import-jobs/{jid}", include="lists")
    assert_valid(got.json(), "/api/profile-bulk-import-jobs/{job_id}")
    errors = c.get(f"/api/profile-bulk-import-jobs/{jid}/import-errors", **{"page[size]": "1"}).json()
    assert_valid(errors, "/api/profile-bulk-import-jobs/{id}/import-errors")
    second = c.get(errors["links"]["next"]).json()
    assert_valid(second, "/api/profile-bulk-import-jobs/{id}/import-errors")
    listing = c.get("/api/profile-bulk-import-jobs").json()
    assert_valid(listing, "/api/profile-bulk-import-jobs")


def test_validator_rejects_bad_documents(client):
    """Guard against a vacuous validator (e.g. every schema converted to `{}`)."""
    doc = client.get("/api/events", **{"page[size]": "1"}).json()
    doc["data"][0]["attributes"]["datetime"] = "yesterday"
    with pytest.raises(AssertionError, match="datetime"):
        assert_valid(doc, "/api/events")
    doc = client.get("/api/reviews", **{"page[size]": "1"}).json()
    del doc["data"][0]["attributes"]["verified"]
    with pytest.raises(AssertionError, match="verified"):
        assert_valid(doc, "/api/reviews")
