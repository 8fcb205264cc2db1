"""operation add: profiles go to Klaviyo in bulk import jobs that attach the list."""

from __future__ import annotations

import json
import re
from urllib.parse import urlencode

import pytest

import klaviyo_sandbox.jobs as sandbox_jobs
import target_klaviyo.jobs as jobs
from tests.klaviyo import the_work
from tests.target.conftest import singer_lines

EMAIL_SCHEMA = {"email": {"type": "string"}}


def test_add_sends_one_import_job_with_attributes_properties_and_the_list_but_no_subscriptions(klaviyo, run_target):
    list_id = klaviyo.add_list("VIP")

    run = run_target({"list_id": list_id}, "add_customers.singer")

    assert run.exit_code == 0
    (job,) = klaviyo.calls("POST", "/api/profile-bulk-import-jobs")
    assert job.content_type == "application/vnd.api+json"
    assert job.body == {
        "data": {
            "type": "profile-bulk-import-job",
            "attributes": {
                "profiles": {
                    "data": [
                        {
                            "type": "profile",
                            "attributes": {
                                "email": "ann@example.com",
                                "phone_number": "+14155550123",
                                "external_id": "42",
                                "first_name": "Ann",
                                "last_name": "Lee",
                                "location": {"city": "Oakland", "country": "US", "zip": "94601"},
                                "properties": {
                                    "plan": "pro",
                                    "lifetime_value": 1234.5,
                                    "signed_up_at": "2024-02-03T04:05:06Z",
                                },
                            },
                        },
                        {
                            "type": "profile",
                            "attributes": {
                                "email": "o'brien@example.com",
                                "properties": {"plan": "free", "lifetime_value": 0},
                            },
                        },
                    ]
                }
            },
            "relationships": {"lists": {"data": [{"type": "list", "id": list_id}]}},
        }
    }
    assert "subscriptions" not in json.dumps(job.body)
    assert [r.path for r in klaviyo.writes] == ["/api/profile-bulk-import-jobs"]  # no consent jobs, no list writes
    assert klaviyo.member_emails(list_id) == {"ann@example.com", "o'brien@example.com"}
    assert run.states == [{"bookmarks": {"customers": {"replication_key_value": "2026-01-01"}}}]
    assert "Stream 'customers': 2 rows received, 2 sent, 0 rejected" in run.log
    assert not (run.workdir / "klaviyo-rejects.jsonl").exists()


def test_a_list_name_that_does_not_exist_is_created_then_looked_up_again(klaviyo, run_target):
    run = run_target({"list_name": "Weekly digest"}, "add_customers.singer")

    assert run.exit_code == 0
    (list_id,) = [i for i, name in klaviyo.created_lists().items() if name == "Weekly digest"]
    lookups = klaviyo.calls("GET", "/api/lists")
    # looked up, looked up again under the lock file (another run may just have created it), created,
    # and looked up once more (a run on another machine may have created one too)
    assert [r.query["filter"] for r in lookups] == ['equals(name,["Weekly digest"])'] * 3
    created = {"data": {"type": "list", "attributes": {"name": "Weekly digest"}}}
    assert klaviyo.calls("POST", "/api/lists")[0].body == created
    assert klaviyo.member_emails(list_id) == {"ann@example.com", "o'brien@example.com"}


def test_a_list_name_is_matched_exactly_across_pages(klaviyo, run_target):
    list_id = klaviyo.add_list("VIP")
    # Should Klaviyo's name filter be looser than the target's match (case, say), page one holds only
    # near misses and the list is on the next page (scripted: the sandbox's filter is exact).
    near_misses = [{"type": "list", "id": f"near{i}", "attributes": {"name": "vip"}} for i in range(10)]
    next_page = f"{klaviyo.base_url}/api/lists?" + urlencode({"filter": 'equals(name,["VIP"])', "fields[list]": "name"})
    klaviyo.script("GET", "/api/lists", 200, body={"data": near_misses, "links": {"self": "x", "next": next_page}})

    run = run_target({"list_name": "VIP"}, "add_customers.singer")

    assert run.exit_code == 0
    assert len(klaviyo.calls("GET", "/api/lists")) == 2  # followed links.next
    assert not klaviyo.calls("POST", "/api/lists")
    assert klaviyo.member_emails(list_id) == {"ann@example.com", "o'brien@example.com"}


def test_a_list_name_matching_several_lists_is_an_error_naming_their_ids(klaviyo, run_target):
    first, second = klaviyo.add_list("VIP"), klaviyo.add_list("VIP")

    run = run_target({"list_name": "VIP"}, "add_customers.singer")

    assert run.exit_code == 1
    assert f"2 Klaviyo lists are named 'VIP' (ids {first}, {second})" in run.log
    assert not klaviyo.writes
    assert run.states == []


def test_a_missing_list_name_is_an_error_when_creating_is_turned_off(klaviyo, run_target):
    run = run_target({"list_name": "Weekly digest", "create_list_if_missing": False}, "add_customers.singer")

    assert run.exit_code == 1
    assert "no Klaviyo list is named 'Weekly digest' and create_list_if_missing is off" in run.log
    assert not klaviyo.writes


def test_an_unknown_list_id_is_an_error_naming_the_setting(klaviyo, run_target):
    run = run_target({"list_id": "NOPE"}, "add_customers.singer")

    assert run.exit_code == 1
    assert "Setting list_id: Klaviyo has no list with id 'NOPE' (404)" in run.log
    assert not klaviyo.writes


def test_a_lost_create_answer_is_not_retried_blindly_when_the_list_exists(klaviyo, run_target, monkeypatch):
    monkeypatch.setattr("target_klaviyo.lists.time.sleep", lambda seconds: None)

    def create_then_lose_the_answer(request) -> bool:  # Klaviyo creates the list but the answer never arrives
        klaviyo.add_list(request.body["data"]["attributes"]["name"])
        return True

    klaviyo.script("POST", "/api/lists", 503, when=lambda r: the_work(r) and create_then_lose_the_answer(r))

    run = run_target({"list_name": "Weekly digest"}, "add_customers.singer")

    assert run.exit_code == 0
    assert len(klaviyo.calls("POST", "/api/lists")) == 1
    assert list(klaviyo.created_lists().values()) == ["Weekly digest"]
    assert klaviyo.member_emails(next(iter(klaviyo.created_lists()))) == {"ann@example.com", "o'brien@example.com"}


def test_rows_over_10000_are_split_into_jobs_of_at_most_10000_profiles(klaviyo, run_target):
    list_id = klaviyo.add_list("VIP")
    rows = [{"email": f"p{i}@example.com"} for i in range(10_001)]

    run = run_target({"list_id": list_id}, singer_lines("people", rows, EMAIL_SCHEMA))

    assert run.exit_code == 0
    posted = klaviyo.calls("POST", "/api/profile-bulk-import-jobs")
    sizes = [len(r.body["data"]["attributes"]["profiles"]["data"]) for r in posted]
    assert sizes == [10_000, 1]
    assert len(klaviyo.member_emails(list_id)) == 10_001


def test_jobs_are_split_before_their_encoded_payload_exceeds_5_mb(klaviyo, run_target):
    list_id = klaviyo.add_list("VIP")
    rows = [{"email": f"p{i}@example.com", "notes": "x" * 90_000} for i in range(60)]
    properties = {"email": {"type": "string"}, "notes": {"type": "string"}}

    run = run_target({"list_id": list_id}, singer_lines("people", rows, properties))

    assert run.exit_code == 0
    posted = klaviyo.calls("POST", "/api/profile-bulk-import-jobs")
    counts = [len(r.body["data"]["attributes"]["profiles"]["data"]) for r in posted]
    assert len(posted) == 2 and sum(counts) == 60
    assert all(r.raw_size <= jobs.MAX_JOB_BYTES for r in posted)
    assert posted[0].raw_size + 90_050 > jobs.MAX_JOB_BYTES  # the first job was filled as far as it could be
    assert len(klaviyo.member_emails(list_id)) == 60


def test_a_profile_over_100_kb_is_rejected_and_the_others_are_sent(klaviyo, run_target):
    list_id = klaviyo.add_list("VIP")
    rows = [{"email": "big@example.com", "notes": "x" * 150_000}, {"email": "small@example.com", "notes": "ok"}]
    properties = {"email": {"type": "string"}, "notes": {"type": "string"}}

    run = run_target({"list_id": list_id}, singer_lines("people", rows, properties))

    assert run.exit_code == 0
    assert klaviyo.member_emails(list_id) == {"small@example.com"}
    (reject,) = run.rejects()
    assert reject["row"]["email"] == "big@example.com"
    assert "Klaviyo accepts at most 100 KB per profile" in reject["reason"]


def test_a_429_is_retried_after_the_wait_klaviyo_asks_for(klaviyo, run_target):
    list_id = klaviyo.add_list("VIP")
    klaviyo.script(
        "POST",
        "/api/profile-bulk-import-jobs",
        429,
        {"Retry-After": "1"},
        {"errors": [{"id": "1", "code": "throttled", "title": "Throttled", "detail": "Request was throttled."}]},
    )

    run = run_target({"list_id": list_id}, "add_customers.singer")

    assert run.exit_code == 0
    first, second = klaviyo.calls("POST", "/api/profile-bulk-import-jobs")
    assert second.at - first.at >= 0.95
    assert re.search(r"Retrying POST /api/profile-bulk-import-jobs in 1\.\d s", run.log)  # 1 s plus jitter
    assert klaviyo.member_emails(list_id) == {"ann@example.com", "o'brien@example.com"}


def test_running_the_same_input_twice_leaves_the_same_membership(klaviyo, run_target):
    list_id = klaviyo.add_list("VIP")

    first = run_target({"list_id": list_id}, "add_customers.singer")
    members_after_first = klaviyo.members(list_id)
    second = run_target({"list_id": list_id}, "add_customers.singer")

    assert first.exit_code == second.exit_code == 0
    assert klaviyo.members(list_id) == members_after_first
    assert len(klaviyo.store.new_profiles) == 2  # the second run updated the same two profiles


def test_a_failed_write_fails_the_run_before_any_state_is_emitted(klaviyo, run_target):
    list_id = klaviyo.add_list("VIP")
    klaviyo.script(
        "POST", "/api/profile-bulk-import-jobs", 400, body={"errors": [{"code": "invalid", "detail": "Bad."}]}
    )

    run = run_target({"list_id": list_id}, "add_customers.singer")

    assert run.exit_code == 1
    assert "POST /api/profile-bulk-import-jobs failed with 400" in run.log
    assert run.states == []


class FakeClock:
    """Stands in for the job waiter's clock and sleep, so waiting minutes takes no time: Klaviyo's
    clock moves on with it, as it would while the target really waited."""

    def __init__(self, klaviyo) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.klaviyo = klaviyo

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.klaviyo.store.advance(seconds)


@pytest.fixture
def clock(monkeypatch, klaviyo) -> FakeClock:
    fake_clock = FakeClock(klaviyo)
    monkeypatch.setattr(jobs, "monotonic", fake_clock.monotonic)
    monkeypatch.setattr(jobs, "sleep", fake_clock.sleep)
    return fake_clock


@pytest.mark.parametrize("job_seconds", [5.0])  # queued for 1 s, processing until 5 s
def test_waiting_reports_progress_and_puts_klaviyo_import_errors_in_the_rejects_file(
    klaviyo, run_target, clock, monkeypatch
):
    list_id = klaviyo.add_list("VIP")
    refused = {"o'brien@example.com"}  # Klaviyo refuses a row for a reason of its own
    klaviyo_checks = sandbox_jobs.row_problem

    def row_problem(item: dict):
        if item["attributes"].get("email") in refused:
            return None, "The profile could not be imported."
        return klaviyo_checks(item)

    monkeypatch.setattr(sandbox_jobs, "row_problem", row_problem)

    run = run_target({"list_id": list_id, "wait_for_completion": True}, "add_customers.singer")

    assert run.exit_code == 0
    (job_id,) = klaviyo.jobs
    assert f"Klaviyo import job {job_id}: processing, 0 completed, 0 failed of 2" in run.log
    assert f"Klaviyo import job {job_id}: complete, 1 completed, 1 failed of 2" in run.log
    (reject,) = run.rejects()
    assert reject["stream"] == "customers"
    assert reject["row"]["email"] == "o'brien@example.com" and reject["row"]["plan"] == "free"
    assert reject["reason"] == "Klaviyo import error: The profile could not be imported."
    assert "2 rows received, 1 sent, 1 rejected (Klaviyo import error: 1)" in run.log
    assert klaviyo.calls("GET", f"/api/profile-bulk-import-jobs/{job_id}/import-errors")
    assert run.states  # the write is done, the rejected row is accounted for
    assert all(2.0 <= s <= jobs.MAX_POLL_SECONDS for s in clock.sleeps)


@pytest.mark.parametrize("job_seconds", [1000.0])  # processing from 200 s on: not done within the wait
def test_a_job_that_never_finishes_fails_the_run_with_its_id_when_the_wait_times_out(klaviyo, run_target, clock):
    list_id = klaviyo.add_list("VIP")

    config = {"list_id": list_id, "wait_for_completion": True, "wait_timeout_seconds": 300}

    run = run_target(config, "add_customers.singer")

    assert run.exit_code == 1
    (job_id,) = klaviyo.jobs
    assert f"Klaviyo import job {job_id} did not finish within 300 s (processing" in run.log
    assert run.states == []  # no STATE for rows Klaviyo has not confirmed
    polls = klaviyo.calls("GET", f"/api/profile-bulk-import-jobs/{job_id}")
    assert 10 <= len(polls) <= 40  # paced polling, not a spin
    assert sum(clock.sleeps) == pytest.approx(300, abs=1)


@pytest.mark.parametrize("job_seconds", [3600.0])
def test_without_waiting_the_run_ends_right_after_submitting(klaviyo, run_target, clock):
    list_id = klaviyo.add_list("VIP")

    run = run_target({"list_id": list_id}, "add_customers.singer")

    assert run.exit_code == 0
    assert not klaviyo.calls("GET", "/api/profile-bulk-import-jobs")
    assert clock.sleeps == []
