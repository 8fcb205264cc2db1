"""Import jobs run side by side, at most max_concurrency at once, and a STATE waits for all of them."""

from __future__ import annotations

import pytest

import target_klaviyo.jobs as jobs
from tests.target.conftest import job_seconds, klaviyo, run_target, singer_lines  # noqa: F401 - fixtures

EMAIL = {"email": {"type": "string"}}


POLL_SECONDS = 2.0  # what each poll's wait lets pass on Klaviyo's clock


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch, klaviyo):  # noqa: F811 - the fixture
    """The job waiter's sleeps take no time, while Klaviyo's clock moves on by POLL_SECONDS each."""
    monkeypatch.setattr(jobs, "sleep", lambda seconds: klaviyo.store.advance(POLL_SECONDS))


def job_timeline(account) -> list[tuple[str, str]]:
    """("submit", "") and ("poll", job id) in the order Klaviyo saw them."""
    events = []
    for request in account.requests:
        if request.method == "POST" and request.path == "/api/profile-bulk-import-jobs":
            events.append(("submit", ""))
        elif request.method == "GET" and request.path.startswith("/api/profile-bulk-import-jobs/"):
            events.append(("poll", request.path.rsplit("/", 1)[-1]))
    return events


@pytest.mark.parametrize("job_seconds", [5.0])  # a job is polled more than once
def test_jobs_run_side_by_side_up_to_max_concurrency_and_the_state_waits_for_all(klaviyo, run_target):  # noqa: F811
    list_id = klaviyo.add_list("VIP")
    rows = [{"email": f"p{i}@example.com"} for i in range(50_000)]

    run = run_target(
        {"list_id": list_id, "wait_for_completion": True, "max_concurrency": 3},
        singer_lines("people", rows, EMAIL, state={"people": "done"}),
    )

    assert run.exit_code == 0
    assert len(klaviyo.calls("POST", "/api/profile-bulk-import-jobs")) == 5  # 50,000 rows: five jobs
    assert len(klaviyo.member_emails(list_id)) == 50_000
    assert run.states == [{"people": "done"}]
    # several jobs were submitted before the first one was polled: they ran side by side ...
    timeline = job_timeline(klaviyo)
    first_poll = next(i for i, (kind, _) in enumerate(timeline) if kind == "poll")
    assert sum(kind == "submit" for kind, _ in timeline[:first_poll]) >= 2
    # ... but never more than three at once: each later job waits for one to finish
    # (a job is finished at its last poll: the one that saw it complete)
    last_poll = {job_id: i for i, (kind, job_id) in enumerate(timeline) if kind == "poll"}
    assert len(last_poll) == 5
    unfinished, most = 0, 0
    for i, (kind, job_id) in enumerate(timeline):
        if kind == "submit":
            unfinished += 1
            most = max(most, unfinished)
        elif last_poll[job_id] == i:
            unfinished -= 1
    assert most <= 3


def test_a_job_submission_that_fails_in_the_background_fails_the_run_before_its_state(klaviyo, run_target):  # noqa: F811
    list_id = klaviyo.add_list("VIP")
    klaviyo.script(
        "POST", "/api/profile-bulk-import-jobs", 400, body={"errors": [{"code": "invalid", "detail": "Bad."}]}
    )
    rows = [{"email": f"p{i}@example.com"} for i in range(25_000)]

    run = run_target({"list_id": list_id}, singer_lines("people", rows, EMAIL, state={"people": "done"}))

    assert run.exit_code == 1
    assert "POST /api/profile-bulk-import-jobs failed with 400" in run.log
    assert run.states == []
