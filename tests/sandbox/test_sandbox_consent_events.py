"""Consent, suppression and event bulk endpoints: request validation per the spec, limits, effects."""

from __future__ import annotations

import time

from klaviyo_sandbox import validate

from .spec import assert_valid

SUBSCRIBE = "/api/profile-subscription-bulk-create-jobs"
UNSUBSCRIBE = "/api/profile-subscription-bulk-delete-jobs"
SUPPRESS = "/api/profile-suppression-bulk-create-jobs"
UNSUPPRESS = "/api/profile-suppression-bulk-delete-jobs"
EVENTS = "/api/event-bulk-create-jobs"


def subscribe_body(profiles, historical=None, list_id=None):
    attributes = {"profiles": {"data": profiles}}
    if historical is not None:
        attributes["historical_import"] = historical
    data = {"type": "profile-subscription-bulk-create-job", "attributes": attributes}
    if list_id:
        data["relationships"] = {"list": {"data": {"type": "list", "id": list_id}}}
    return {"data": data}


def email_profile(email, consented_at=None):
    marketing = {"consent": "SUBSCRIBED", **({"consented_at": consented_at} if consented_at else {})}
    return {"type": "profile", "attributes": {"email": email, "subscriptions": {"email": {"marketing": marketing}}}}


def events_body(events):
    return {"data": {"type": "event-bulk-create-job", "attributes": {"events-bulk-create": {"data": events}}}}


def event(email, name="Placed Order", unique_id="u1", **attributes):
    return {
        "type": "event-bulk-create",
        "attributes": {
            "profile": {"data": {"type": "profile", "attributes": {"email": email}}},
            "events": {
                "data": [
                    {
                        "type": "event",
                        "attributes": {
                            "properties": {},
                            "metric": {"data": {"type": "metric", "attributes": {"name": name}}},
                            "unique_id": unique_id,
                            **attributes,
                        },
                    }
                ]
            },
        },
    }


def wait_applied(seconds=0.5):
    time.sleep(seconds)  # the fixture's jobs take 0.3 s


def test_the_validator_follows_the_spec_schema():
    assert validate.problem("bulk_subscribe_profiles", subscribe_body([email_profile("a@x.com")])) is None
    assert (
        validate.problem(
            "bulk_subscribe_profiles", {"data": {"type": "nope", "attributes": {"profiles": {"data": []}}}}
        )[0]
        == "/data/type"
    )
    bad = subscribe_body([{"type": "profile", "attributes": {"email": "a@x.com"}}])
    assert validate.problem("bulk_subscribe_profiles", bad) == (
        "/data/attributes/profiles/data/0/attributes/subscriptions",
        "'subscriptions' is a required field.",
    )
    bad = subscribe_body(
        [{**email_profile("a@x.com"), "attributes": {**email_profile("a@x.com")["attributes"], "first_name": "A"}}]
    )
    assert "first_name" in validate.problem("bulk_subscribe_profiles", bad)[0]
    bad = events_body([event("a@x.com", value="12")])
    assert validate.problem("bulk_create_events", bad)[1] == "Expected number, got str."


def test_subscribe_rules_from_the_spec(fresh):
    box, c = fresh
    assert c.post(SUBSCRIBE, subscribe_body([email_profile(f"p{i}@x.com") for i in range(1001)])).status == 400
    no_date = subscribe_body([email_profile("a@x.com")], historical=True)
    assert c.post(SUBSCRIBE, no_date).status == 400
    stray = subscribe_body([email_profile("a@x.com", "2024-01-01T00:00:00Z")])
    assert c.post(SUBSCRIBE, stray).status == 400
    future = subscribe_body([email_profile("a@x.com", "2999-01-01T00:00:00Z")], historical=True)
    assert c.post(SUBSCRIBE, future).status == 400
    assert c.post(SUBSCRIBE, subscribe_body([email_profile("a@x.com")], list_id="nope")).status == 404
    assert not box.store.consent, "a refused request applies nothing"

    ok = c.post(SUBSCRIBE, subscribe_body([email_profile("a@x.com", "2024-01-01T00:00:00Z")], historical=True))

    assert ok.status == 202 and ok.body == b""
    wait_applied()
    profile = box.store.find_profile("email", "a@x.com")
    assert box.store.consent[profile["id"]]["email_marketing"] == {
        "consent": "SUBSCRIBED",
        "timestamp": "2024-01-01T00:00:00Z",
    }
    shown = c.get("/api/profiles", filter="equals(email,'a@x.com')", **{"additional-fields[profile]": "subscriptions"})
    assert shown.json()["data"][0]["attributes"]["subscriptions"]["email"]["marketing"]["consent"] == "SUBSCRIBED"


def test_unsubscribe_takes_at_most_100(fresh):
    _box, c = fresh
    profiles = [
        {
            "type": "profile",
            "attributes": {
                "email": f"p{i}@x.com",
                "subscriptions": {"email": {"marketing": {"consent": "UNSUBSCRIBED"}}},
            },
        }
        for i in range(101)
    ]
    body = {"data": {"type": "profile-subscription-bulk-delete-job", "attributes": {"profiles": {"data": profiles}}}}
    assert c.post(UNSUBSCRIBE, body).status == 400
    body["data"]["attributes"]["profiles"]["data"] = profiles[:100]
    assert c.post(UNSUBSCRIBE, body).status == 202


def test_suppression_jobs_follow_the_spec_and_unsuppress_lifts_user_suppressed_only(fresh):
    box, c = fresh
    body = {
        "data": {
            "type": "profile-suppression-bulk-create-job",
            "attributes": {"profiles": {"data": [{"type": "profile", "attributes": {"email": "s@x.com"}}]}},
        }
    }
    created = c.post(SUPPRESS, body)
    assert created.status == 202
    assert_valid(created.json(), SUPPRESS, "post", "202")
    job = created.json()["data"]
    wait_applied()
    read = c.get(f"{SUPPRESS}/{job['id']}")
    assert_valid(read.json(), SUPPRESS + "/{job_id}")
    assert read.json()["data"]["attributes"]["status"] == "complete"
    profile = box.store.find_profile("email", "s@x.com")
    assert [s["reason"] for s in box.store.consent[profile["id"]]["suppression"]] == ["USER_SUPPRESSED"]

    body["data"]["type"] = "profile-suppression-bulk-delete-job"
    body["data"]["attributes"]["profiles"]["data"].append({"type": "profile", "attributes": {"email": "nobody@x.com"}})
    lifted = c.post(UNSUPPRESS, body).json()["data"]
    wait_applied()
    done = c.get(f"{UNSUPPRESS}/{lifted['id']}").json()["data"]["attributes"]
    assert done["skipped_count"] == 1
    assert box.store.consent[profile["id"]]["suppression"] == []
    too_many = [{"type": "profile", "attributes": {"email": f"e{i}@x.com"}} for i in range(101)]
    body["data"]["attributes"]["profiles"]["data"] = too_many
    assert c.post(UNSUPPRESS, body).status == 400


def test_events_are_recorded_once_per_unique_id_and_limits_apply(fresh):
    box, c = fresh
    assert c.post(EVENTS, events_body([event("a@x.com"), event("a@x.com")])).status == 400  # repeated in a request
    assert c.post(EVENTS, events_body([event("a@x.com", time="1989-12-31T00:00:00+00:00")])).status == 400
    assert c.post(EVENTS, events_body([event("a@x.com", name="x" * 128)])).status == 400
    assert c.post(EVENTS, events_body([event(f"p{i}@x.com") for i in range(1001)])).status == 400
    assert c.post(EVENTS, events_body([event("a@x.com", value=9.5)])).status == 202
    assert c.post(EVENTS, events_body([event("a@x.com", value=9.5), event("a@x.com", unique_id="u2")])).status == 202
    wait_applied()
    assert [(e["unique_id"], e["value"]) for e in box.store.tracked_events] == [("u1", 9.5), ("u2", None)]
