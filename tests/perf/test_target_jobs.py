"""Import jobs run side by side, at most max_concurrency at once, and a STATE waits for all of them."""

from __future__ import annotations

import pytest

import target_klaviyo.jobs as jobs
from tests.target.conftest import fake, run_target, singer_lines  # noqa: F401 - fixtures

EMAIL = {"email": {"type": "string"}}


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setattr(jobs, "sleep", lambda seconds: None)


def job_timeline(klaviyo) -> list[tuple[str, str]]:
    """("submit", job n) and ("done", job id) in the order Klaviyo saw them."""
    events = []
    for request in klaviyo.requests:
        if request.method == "POST" and request.path == "/api/profile-bulk-import-jobs":
            events.append(("submit", ""))
        elif request.method == "GET" and request.path.startswith("/api/profile-bulk-import-jobs/"):
            events.append(("poll", request.path.rsplit("/", 1)[-1]))
    return events


def test_jobs_run_side_by_side_up_to_max_concurrency_and_the_state_waits_for_all(fake, run_target):  # noqa: F811
    list_id = fake.add_list("VIP")
    fake.job_polls_to_complete = 2
    rows = [{"email": f"p{i}@example.com"} for i in range(50_000)]

    run = run_target(
        {"list_id": list_id, "wait_for_completion": True, "max_concurrency": 3},
        singer_lines("people", rows, EMAIL, state={"people": "done"}),
    )

    assert run.exit_code == 0
    assert len(fake.calls("POST", "/api/profile-bulk-import-jobs")) == 5  # 50,000 rows: five jobs
    assert len(fake.member_emails(list_id)) == 50_000
    assert run.states == [{"people": "done"}]
    # several jobs were submitted before the first one was polled: they ran side by side ...
    timeline = job_timeline(fake)
    first_poll = next(i for i, (kind, _) in enumerate(timeline) if kind == "poll")
    assert sum(kind == "submit" for kind, _ in timeline[:first_poll]) >= 2
    # ... but never more than three at once: each later job waits for one to finish
    unfinished, most = 0, 0
    finished: set[str] = set()
    polls: dict[str, int] = {}
    for kind, job_id in timeline:
        if kind == "submit":
            unfinished += 1
            most = max(most, unfinished)
        else:
            polls[job_id] = polls.get(job_id, 0) + 1
            if polls[job_id] == fake.job_polls_to_complete and job_id not in finished:
                finished.add(job_id)
                unfinished -= 1
    assert most <= 3


def test_a_job_submission_that_fails_in_the_background_fails_the_run_before_its_state(fake, run_target):  # noqa: F811
    list_id = fake.add_list("VIP")
    fake.script("POST", "/api/profile-bulk-import-jobs", 400, body={"errors": [{"code": "invalid", "detail": "Bad."}]})
    rows = [{"email": f"p{i}@example.com"} for i in range(25_000)]

    run = run_target({"list_id": list_id}, singer_lines("people", rows, EMAIL, state={"people": "done"}))

    assert run.exit_code == 1
    assert "POST /api/profile-bulk-import-jobs failed with 400" in run.log
    assert run.states == []
