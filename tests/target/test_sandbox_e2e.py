"""End to end against the project's Klaviyo sandbox: add, rerun, then remove, through the CLI."""

from __future__ import annotations

import pytest

import klaviyo_sandbox as sandbox
import target_klaviyo.jobs as jobs
from tests.target.conftest import singer_lines

PROPERTIES = {
    "email": {"type": "string"},
    "first_name": {"type": ["string", "null"]},
    "phone_number": {"type": ["string", "null"]},
    "plan": {"type": ["string", "null"]},
}
ROWS = [
    {"email": "Warehouse.One@example.com", "first_name": "One", "phone_number": "+1 (415) 555-0101", "plan": "pro"},
    {"email": "o'two@example.com", "first_name": "Two", "phone_number": None, "plan": "free"},
    {"email": "broken-address", "first_name": "Bad", "phone_number": None, "plan": "free"},
]


@pytest.fixture
def klaviyo_sandbox():
    config = sandbox.SandboxConfig(seed=7, scale=0.01, rate_limit_scale=0.0, job_seconds=0.0)
    with sandbox.Sandbox(config) as running:
        yield running


def test_add_rerun_and_remove_round_trip_through_the_sandbox(klaviyo_sandbox, run_target, monkeypatch):
    monkeypatch.setattr(jobs, "sleep", lambda seconds: None)  # sandbox jobs finish at once
    config = {
        "api_key": klaviyo_sandbox.api_key,
        "base_url": klaviyo_sandbox.base_url,
        "list_name": "Warehouse sync e2e",
        "wait_for_completion": True,
    }
    text = singer_lines("people", ROWS, PROPERTIES, state={"people": "v1"})

    first = run_target(config, text)
    second = run_target(config, text)

    store = klaviyo_sandbox.store
    (list_id,) = [lid for lid, rec in store.new_lists.items() if rec["attributes"]["name"] == "Warehouse sync e2e"]
    one = store.find_profile("email", "warehouse.one@example.com")
    two = store.find_profile("email", "o'two@example.com")
    assert first.exit_code == second.exit_code == 0
    assert first.states == second.states == [{"people": "v1"}]
    assert one["attributes"]["phone_number"] == "+14155550101"
    assert one["attributes"]["properties"]["plan"] == "pro"
    assert store.is_member(list_id, one["id"]) and store.is_member(list_id, two["id"])
    assert store.member_count(list_id) == 2  # the rerun changed nothing
    assert [r["reason"] for r in second.rejects()] == ["email is not an email address"]

    removed = run_target({**config, "operation": "remove"}, text)

    assert removed.exit_code == 0
    assert store.member_count(list_id) == 0
    assert store.find_profile("email", "o'two@example.com") is not None  # membership only: the profile stays


def test_remove_from_a_list_name_that_does_not_exist_fails_in_one_line_and_creates_nothing(klaviyo_sandbox, tmp_path):
    from tests.conftest import run_cli

    config = {
        "api_key": klaviyo_sandbox.api_key,
        "base_url": klaviyo_sandbox.base_url,
        "list_name": "No such list 42",
        "operation": "remove",
        "rejects_file": str(tmp_path / "rejects.jsonl"),
    }
    text = singer_lines("people", ROWS[:2], PROPERTIES, state={"people": "v1"})
    lists_before = len(klaviyo_sandbox.store.new_lists)

    result = run_cli("target-klaviyo", config=config, tmp_path=tmp_path, stdin=text)

    assert result.code != 0
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "no Klaviyo list is named 'No such list 42'" in errors[0]
    assert "Traceback" not in result.stderr
    assert len(klaviyo_sandbox.store.new_lists) == lists_before  # no list was created
    assert result.stdout == ""  # no state: nothing was done
