"""Consent and events from files through Meltano: the warehouse-consent-to-klaviyo (subscribe) and
warehouse-events-to-klaviyo (track) jobs of meltano.yml, on the sandbox."""

from __future__ import annotations

import json
import time
import typing as t

from tests.e2e.helpers import ROOT, MeltanoProject, sandbox_env

CONSENT = [json.loads(line) for line in (ROOT / "scripts" / "demo_data" / "consent.jsonl").read_text().splitlines()]
ORDERS = [json.loads(line) for line in (ROOT / "scripts" / "demo_data" / "orders.jsonl").read_text().splitlines()]


def applied(box: t.Any, check: t.Callable[[], bool], seconds: float = 10) -> bool:
    """Klaviyo applies these asynchronously (the sandbox after its job_seconds)."""
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        time.sleep(0.1)
    return check()


def test_consent_and_events_jobs_write_once_and_reruns_change_nothing(project: MeltanoProject, klaviyo: t.Any) -> None:
    store = klaviyo.store
    project.run("--environment=sandbox", "run", "warehouse-consent-to-klaviyo", **sandbox_env(klaviyo)).check()
    project.run("--environment=sandbox", "run", "warehouse-events-to-klaviyo", **sandbox_env(klaviyo)).check()

    assert applied(klaviyo, lambda: len(store.consent) == len(CONSENT) and len(store.tracked_events) == len(ORDERS))
    ada = store.find_profile("email", "ada.lovelace@example.com")
    phone_only = store.find_profile("phone_number", "+442079460958")
    assert store.consent[ada["id"]]["email_marketing"] == {"consent": "SUBSCRIBED", "timestamp": "2024-05-01T09:00:00Z"}
    assert store.consent[phone_only["id"]]["sms_marketing"]["consent"] == "SUBSCRIBED"
    (newsletter,) = [
        lid for lid, rec in store.new_lists.items() if rec["attributes"]["name"] == "Meltano demo: newsletter"
    ]
    assert len(store.member_ids(newsletter)) == len(CONSENT)
    assert sorted(e["unique_id"] for e in store.tracked_events) == sorted(o["unique_id"] for o in ORDERS)
    assert {e["metric"] for e in store.tracked_events} == {"Placed Order"}

    project.run(
        "--environment=sandbox", "run", "warehouse-events-to-klaviyo", "--full-refresh", **sandbox_env(klaviyo)
    ).check()

    time.sleep(1)  # the sandbox's jobs take 0.5 s: a duplicate would have landed by now
    assert len(store.tracked_events) == len(ORDERS), "unique_id: a rerun creates no event twice"


def test_outside_the_sandbox_the_examples_never_read_the_people_file_or_its_list(project: MeltanoProject) -> None:
    """dev: tap-jsonl's TAP_JSONL_PATH (people) and target-klaviyo's list must not leak into the events job."""
    env = {
        "TAP_JSONL_PATH": "people.jsonl",
        "TARGET_KLAVIYO_LIST_NAME": "VIP",
        "TAP_JSONL__ORDERS_PATH": "orders.jsonl",
    }

    orders = json.loads(project.run("config", "print", "tap-jsonl--orders", "--format=json", **env).check().stdout)
    consent = json.loads(project.run("config", "print", "tap-jsonl--consent", "--format=json", **env).check().stdout)
    track = json.loads(project.run("config", "print", "target-klaviyo--track", "--format=json", **env).check().stdout)
    subscribe = json.loads(
        project.run("config", "print", "target-klaviyo--subscribe", "--format=json", **env).check().stdout
    )

    assert orders["path"] == "orders.jsonl"
    assert not consent.get("path")
    assert not track.get("list_name") and track["operation"] == "track"
    assert not subscribe.get("list_name") and subscribe["operation"] == "subscribe"
