"""operation remove: membership removed by profile id, or by email looked up to an id."""

from __future__ import annotations

import json
import logging
import threading
import time
import typing as t
from concurrent.futures import ThreadPoolExecutor

from klaviyo_core.errors import KlaviyoAPIError
from target_klaviyo.membership import find_profile_ids, remove_from_list
from tests.target.conftest import FIXTURES, singer_lines

LIST_WRITE = "/api/lists/{}/relationships/profiles"


def by_id(klaviyo) -> tuple[str, dict[str, str], str]:
    """remove_by_id.singer with the ids Klaviyo gave ann, bob and cat (PANN, PBOB, PCAT in the file)."""
    list_id = klaviyo.add_list("VIP")
    ids = {f"P{name}": klaviyo.add_profile(f"{name.lower()}@example.com", list_id) for name in ("ANN", "BOB", "CAT")}
    text = (FIXTURES / "remove_by_id.singer").read_text()
    for placeholder, profile_id in ids.items():
        text = text.replace(f'"{placeholder}"', f'"{profile_id}"')
    return list_id, ids, text


def test_remove_by_profile_id_deletes_the_relationship_and_rejects_an_empty_id(klaviyo, run_target):
    list_id, ids, text = by_id(klaviyo)

    run = run_target({"list_id": list_id, "operation": "remove"}, text)

    assert run.exit_code == 0
    (delete,) = klaviyo.writes
    assert (delete.method, delete.path) == ("DELETE", LIST_WRITE.format(list_id))
    assert delete.body == {"data": [{"type": "profile", "id": ids["PANN"]}, {"type": "profile", "id": ids["PBOB"]}]}
    assert klaviyo.members(list_id) == {ids["PCAT"]}
    assert run.rejects() == [
        {"stream": "churned", "row": {"profile_id": "", "reason": "no id"}, "reason": "profile_id is empty or missing"}
    ]
    assert "3 rows received, 2 sent, 1 rejected (missing profile_id: 1)" in run.log
    assert run.states == [{"churned": 3}]


def test_remove_by_email_looks_ids_up_case_insensitively_and_rejects_unknown_emails(klaviyo, run_target):
    list_id = klaviyo.add_list("VIP")
    ann = klaviyo.add_profile("ann@example.com", list_id)
    obrien = klaviyo.add_profile("O'Brien@example.com", list_id)
    keep = klaviyo.add_profile("keep@example.com", list_id)

    run = run_target({"list_id": list_id, "operation": "remove"}, "remove_by_email.singer")

    assert run.exit_code == 0
    (lookup,) = klaviyo.calls("GET", "/api/profiles")
    assert lookup.query == {
        "filter": 'any(email,["Ann@Example.com","o\'brien@example.com","nobody@example.com"])',
        "fields[profile]": "email",
        "page[size]": "100",
    }
    (delete,) = klaviyo.writes
    assert {item["id"] for item in delete.body["data"]} == {ann, obrien}
    assert klaviyo.members(list_id) == {keep}
    assert run.rejects() == [
        {"stream": "churned", "row": {"email": "nobody@example.com"}, "reason": "no Klaviyo profile has this email"}
    ]
    assert "3 rows received, 2 sent, 1 rejected (no profile with this email: 1)" in run.log


def test_emails_are_looked_up_100_at_a_time_and_ids_removed_1000_at_a_time(klaviyo, run_target):
    list_id = klaviyo.add_list("VIP")
    for i in range(250):
        klaviyo.add_profile(f"e{i}@example.com", list_id)
    ids = [klaviyo.add_profile(f"i{i}@example.com", list_id) for i in range(2_100)]
    rows = [{"email": f"e{i}@example.com"} for i in range(250)] + [{"profile_id": pid} for pid in ids]
    properties = {"email": {"type": ["string", "null"]}, "profile_id": {"type": ["string", "null"]}}

    run = run_target({"list_id": list_id, "operation": "remove"}, singer_lines("gone", rows, properties))

    assert run.exit_code == 0
    lookups = klaviyo.calls("GET", "/api/profiles")
    # (sent concurrently: in any order)
    assert sorted(r.query["filter"].count("@") for r in lookups) == [50, 100, 100]
    deletes = klaviyo.calls("DELETE")
    assert sorted(len(r.body["data"]) for r in deletes) == [350, 1000, 1000]
    assert klaviyo.members(list_id) == set()


def test_an_id_klaviyo_does_not_know_is_rejected_and_the_other_ids_are_removed(klaviyo, run_target):
    list_id = klaviyo.add_list("VIP")
    ids = [klaviyo.add_profile(f"p{i}@example.com", list_id) for i in range(7)]
    rows = [{"profile_id": pid} for pid in [*ids[:3], "PGONE", *ids[3:]]]
    text = singer_lines("gone", rows, {"profile_id": {"type": "string"}})

    run = run_target({"list_id": list_id, "operation": "remove"}, text)

    assert run.exit_code == 0
    assert klaviyo.members(list_id) == set()
    (reject,) = run.rejects()
    assert reject["row"] == {"profile_id": "PGONE"}
    assert "failed with 400" in reject["reason"] and "Profile 'PGONE' does not exist" in reject["reason"]
    assert "8 rows received, 7 sent, 1 rejected (profile_id refused by Klaviyo: 1)" in run.log
    assert len(klaviyo.calls("DELETE")) <= 1 + 2 * 3  # halving, not one call per id


def test_removing_never_touches_consent(klaviyo, run_target):
    list_id = klaviyo.add_list("VIP")
    klaviyo.add_profile("ann@example.com", list_id)

    run_target({"list_id": list_id, "operation": "remove"}, "remove_by_email.singer")

    assert {(r.method, r.path) for r in klaviyo.writes} == {("DELETE", LIST_WRITE.format(list_id))}
    assert not [r for r in klaviyo.requests if "subscription" in r.path]


def test_running_the_same_removal_twice_leaves_the_same_membership(klaviyo, run_target):
    list_id, ids, text = by_id(klaviyo)

    first = run_target({"list_id": list_id, "operation": "remove"}, text)
    second = run_target({"list_id": list_id, "operation": "remove"}, text)

    assert first.exit_code == second.exit_code == 0
    assert klaviyo.members(list_id) == {ids["PCAT"]}


def test_a_remove_stream_needs_a_profile_id_or_an_email_column(klaviyo, run_target):
    list_id = klaviyo.add_list("VIP")
    text = singer_lines("gone", [{"customer": "ann"}], {"customer": {"type": "string"}})

    run = run_target({"list_id": list_id, "operation": "remove"}, text)

    assert run.exit_code == 1
    assert "Stream 'gone' has no `profile_id` column: operation remove needs it (or an `email` column)" in run.log
    assert not klaviyo.requests


def test_remove_never_creates_a_missing_list_even_with_create_list_if_missing_on(klaviyo, run_target):
    run = run_target(
        {"list_name": "Churned", "operation": "remove", "create_list_if_missing": True}, "remove_by_email.singer"
    )

    assert run.exit_code == 1
    assert "no Klaviyo list is named 'Churned'" in run.log and "never creates a list" in run.log
    assert not klaviyo.writes
    assert run.states == []


class SlowKlaviyo:
    """A connection whose answers take a while, counting how many requests are in flight at once."""

    def __init__(self, refuse: set[str] = frozenset()) -> None:
        self.lock = threading.Lock()
        self.in_flight = self.most_in_flight = 0
        self.refuse = refuse
        self.removed: list[str] = []

    def _busy(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(0.02)
        with self.lock:
            self.in_flight -= 1

    def paginate(self, path: str, params: dict) -> list[dict]:
        self._busy()
        emails = json.loads(params["filter"].split(",", 1)[1][:-1])  # any(email,[...])
        return [{"id": f"P-{email}", "attributes": {"email": email.upper()}} for email in emails if "none" not in email]

    def request(self, method: str, path: str, *, json: dict) -> None:
        self._busy()
        ids = [item["id"] for item in json["data"]]
        if self.refuse & set(ids):
            raise KlaviyoAPIError("a profile does not exist", status=400)
        with self.lock:
            self.removed += ids


def test_look_ups_and_removals_run_concurrently_and_give_what_the_sequential_path_gives():
    emails = [f"p{i}@example.com" for i in range(1_000)] + ["none@example.com"]
    with ThreadPoolExecutor(max_workers=4) as executor:
        klaviyo = SlowKlaviyo()
        found = find_profile_ids(t.cast(t.Any, klaviyo), emails, executor)
        assert klaviyo.most_in_flight > 1
        assert list(found) == [e for e in emails if "none" not in e]  # in the input's order
        assert found["p7@example.com"] == ["P-p7@example.com"]

        ids = [f"P{i}" for i in range(5_500)]
        klaviyo = SlowKlaviyo(refuse={"P4321"})
        refused = remove_from_list(t.cast(t.Any, klaviyo), "L1", ids, logging.getLogger("test"), executor)
        assert klaviyo.most_in_flight > 1
        assert list(refused) == ["P4321"] and sorted(klaviyo.removed) == sorted(set(ids) - {"P4321"})
