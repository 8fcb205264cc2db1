"""A file of people -> a Klaviyo list through Meltano: the warehouse-to-klaviyo job (tap-jsonl target-klaviyo)."""

from __future__ import annotations

import json
import typing as t
from pathlib import Path

import pytest

from tests.e2e.helpers import LIST_NAME, ROOT, TIMINGS, MeltanoProject, pipeline_report, sandbox_env

PEOPLE_FILE = ROOT / "scripts" / "demo_data" / "new_customers.jsonl"
PEOPLE = [json.loads(line) for line in PEOPLE_FILE.read_text().splitlines()]
EMAILS = sorted(person["email"].lower() for person in PEOPLE)


def members(box: t.Any) -> tuple[list[str], list[str]]:
    """(ids of the lists named LIST_NAME, emails of their members) from the sandbox's store."""
    found = pipeline_report.list_members(box.base_url, box.api_key, LIST_NAME)  # the API, as the demo reads it
    emails = sorted(
        box.store.get_profile(pid)["attributes"]["email"] for lid in found["lists"] for pid in box.store.member_ids(lid)
    )
    assert emails == found["emails"], "the API and the store agree"
    return found["lists"], emails


@pytest.fixture(scope="module")
def first_run(project: MeltanoProject, klaviyo: t.Any) -> tuple[list[str], list[str]]:
    before = members(klaviyo)
    run = project.run("--environment=sandbox", "run", "warehouse-to-klaviyo", **sandbox_env(klaviyo)).check()
    TIMINGS["reverse pipeline"] = run.seconds
    assert run.records("tap-jsonl") == {"people": len(PEOPLE)}
    return before, members(klaviyo)


def test_people_in_the_file_join_the_list(first_run: tuple, klaviyo: t.Any) -> None:
    (lists_before, members_before), (lists, emails) = first_run

    assert (lists_before, members_before) == ([], [])
    assert len(lists) == 1, "the list was created once, by name"
    assert emails == EMAILS
    grace = klaviyo.store.find_profile("email", "grace.hopper@example.com")
    assert grace["attributes"]["first_name"] == "Grace"
    assert grace["attributes"]["properties"]["plan"] == "team"


def test_meltano_stores_the_file_state(first_run: tuple, project: MeltanoProject) -> None:
    state = project.state("sandbox:tap-jsonl-to-target-klaviyo")

    assert "people" in state["singer_state"]["bookmarks"]


def test_the_daily_schedule_reruns_it_without_changing_anything(
    first_run: tuple, project: MeltanoProject, klaviyo: t.Any
) -> None:
    run = project.run("--environment=sandbox", "schedule", "run", "warehouse-to-klaviyo-daily", **sandbox_env(klaviyo))

    run.check()
    assert members(klaviyo) == first_run[1]


def test_operation_remove_takes_people_off_the_list(
    first_run: tuple, project: MeltanoProject, klaviyo: t.Any, tmp_path: Path
) -> None:
    leaving = tmp_path / "unsubscribed.jsonl"
    leaving.write_text("".join(json.dumps({"email": email}) + "\n" for email in EMAILS[:2]))

    project.run(
        "--environment=sandbox",
        "run",
        "warehouse-to-klaviyo",
        **sandbox_env(klaviyo),
        TAP_JSONL_PATH=str(leaving),
        TARGET_KLAVIYO_OPERATION="remove",
    ).check()

    assert members(klaviyo) == (first_run[1][0], EMAILS[2:])
    assert klaviyo.store.find_profile("email", EMAILS[0]) is not None, "membership only: the profile stays"
