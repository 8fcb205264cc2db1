"""Kill the target in the middle of its work, rerun it on the same input: the list ends right.

Each scenario feeds ``target-klaviyo`` the same Singer input (valid rows, invalid rows,
STATE messages), SIGKILLs it at a point of its work seen from the sandbox (the first
request, the list just created, the n-th import job submitted, polling a job, a removal
sent) and runs it again on the same input, as a scheduler's retry does. After the run
that completes:

* the list's membership is exactly what the input asks for (no row missing, no extra),
* there is one list with the configured name (a create cut short is not repeated blindly),
* every input row is accounted for: sent, or in the rejects file with a reason.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.faults.harness import FIGURES, TARGET, KillableRun, in_parallel, sandbox

pytestmark = pytest.mark.slow  # a module fixture runs for seconds (pyproject: markers)

SEED = 33
ROWS = 240
BIG = "x" * 120_000  # over Klaviyo's 100 KB per profile

#: name -> (operation, kill points in order, wait_for_completion)
SCENARIOS = {
    "first-request": ("add", [("op", "any", 1)], False),
    "list-created": ("add", [("op", "create_list", 1)], False),
    "first-job": ("add", [("op", "bulk_import_profiles", 1)], False),
    "third-job-then-second-again": (
        "add",
        [("op", "bulk_import_profiles", 3), ("op", "bulk_import_profiles", 2)],
        False,
    ),
    "polling-a-job": ("add", [("op", "get_bulk_import_profiles_job", 1)], True),
    "fourth-poll": ("add", [("op", "get_bulk_import_profiles_job", 4)], True),
    "removal-sent": ("remove", [("op", "remove_profiles_from_list", 1)], False),
    "email-lookup": ("remove", [("op", "get_profiles", 1)], False),
}


def add_input() -> tuple[bytes, set[str], list[dict]]:
    """(Singer input, emails that must end up in the list, the rows that must be rejected)."""
    properties = {
        "email": {"type": ["string", "null"]},
        "phone_number": {"type": ["string", "null"]},
        "first_name": {"type": ["string", "null"]},
        "notes": {"type": ["string", "null"]},
    }
    lines: list[dict] = [
        {
            "type": "SCHEMA",
            "stream": "crm",
            "key_properties": ["email"],
            "schema": {"type": "object", "properties": properties},
        }
    ]
    valid, invalid = set(), []
    for i in range(ROWS):
        row = {"email": f"night.{i}@example.com", "phone_number": None, "first_name": f"Row {i} ✓", "notes": None}
        if i % 24 == 5:
            row = {"email": f"bad-email-{i}", "phone_number": None, "first_name": None, "notes": None}
        elif i % 24 == 11:
            row["phone_number"] = "0044 20 7946"  # no country code
        elif i % 24 == 17:
            row["notes"] = BIG
        elif i % 24 == 23:
            row["email"] = None
        if row["email"] and "@" in row["email"] and not row["phone_number"] and row["notes"] is None:
            valid.add(row["email"])
        else:
            invalid.append(row)
        lines.append({"type": "RECORD", "stream": "crm", "record": row})
        if i % 60 == 59:
            lines.append({"type": "STATE", "value": {"crm": i}})
    lines.append({"type": "STATE", "value": {"crm": "done"}})
    return "\n".join(json.dumps(line) for line in lines).encode() + b"\n", valid, invalid


def remove_input(box, list_id: str) -> tuple[bytes, set[str], list[dict]]:
    """Put 60 profiles in the list; the input removes 40 (by email or id) plus 4 rows that cannot be."""
    store = box.store
    members = [store.ds.profile_id(i) for i in range(60)]
    store.add_members(list_id, members)
    properties = {"email": {"type": ["string", "null"]}, "profile_id": {"type": ["string", "null"]}}
    lines: list[dict] = [
        {
            "type": "SCHEMA",
            "stream": "churned",
            "key_properties": [],
            "schema": {"type": "object", "properties": properties},
        }
    ]
    removed, invalid = set(), []
    for n, pid in enumerate(members[:40]):
        email = store.get_profile(pid)["attributes"]["email"]
        row = {"email": email, "profile_id": None} if email and n % 2 else {"email": None, "profile_id": pid}
        removed.add(pid)
        lines.append({"type": "RECORD", "stream": "churned", "record": row})
        if n % 15 == 14:
            lines.append({"type": "STATE", "value": {"churned": n}})
    for row in (
        {"email": "nobody.here@example.com", "profile_id": None},
        {"email": None, "profile_id": "01NOTAPROFILE"},
        {"email": "broken", "profile_id": None},
        {"email": None, "profile_id": None},
    ):
        invalid.append(row)
        lines.append({"type": "RECORD", "stream": "churned", "record": row})
    lines.append({"type": "STATE", "value": {"churned": "done"}})
    remaining = {store.get_profile(pid)["attributes"]["email"] or pid for pid in members if pid not in removed}
    return "\n".join(json.dumps(line) for line in lines).encode() + b"\n", remaining, invalid


def _member_keys(store, list_id: str) -> set[str]:
    return {store.get_profile(pid)["attributes"]["email"] or pid for pid in store.member_ids(list_id)}


def _watch(box, point: tuple):
    counters = box.store.counters
    if point[0] != "op":
        return None
    _, op, n = point
    start = sum(v for k, v in counters.items() if k.startswith("op:")) if op == "any" else counters.get(f"op:{op}", 0)

    def seen() -> bool:
        if op == "any":
            return sum(v for k, v in list(counters.items()) if k.startswith("op:")) - start >= n
        return counters.get(f"op:{op}", 0) - start >= n

    return seen


def run_scenario(name: str, workdir) -> dict:
    operation, points, wait = SCENARIOS[name]
    with sandbox(SEED, job_seconds=0.3) as box:
        list_name = f"Nightly {name}"
        if operation == "add":
            data, wanted, invalid = add_input()
            list_id = None
        else:
            list_id = box.store.create_list(list_name, None)["id"]
            data, wanted, invalid = remove_input(box, list_id)
        config = {
            "api_key": box.api_key,
            "base_url": box.base_url,
            "list_name": list_name,
            "operation": operation,
            "batch_size_rows": 40,
            "wait_for_completion": wait,
            "request_timeout": 5,
        }
        runs = []
        for index, point in enumerate([*points, None]):
            run = KillableRun(
                config,
                workdir / name / f"run{index}",
                None,
                None,
                _watch(box, point) if point else None,
                executable=TARGET,
                stdin=data,
            ).run(timeout=120)
            runs.append((point, run))
        time.sleep(0.6)  # import jobs the killed runs submitted finish too (as they would in Klaviyo)
        lists = [lid for lid, rec in {**box.store.new_lists}.items() if rec["attributes"]["name"] == list_name]
        members = _member_keys(box.store, list_id or (lists[0] if lists else ""))
        return {
            "runs": runs,
            "lists": lists,
            "members": members,
            "wanted": wanted,
            "invalid": invalid,
            "rows": data.count(b'"type": "RECORD"'),
            "operation": operation,
        }


@pytest.fixture(scope="module")
def scenarios(faults_workdir):
    results = in_parallel(
        {name: (lambda name=name: run_scenario(name, faults_workdir / "target-kill")) for name in SCENARIOS}
    )
    FIGURES.add("target_kill_points_tried", sum(r.killed for s in results.values() for _, r in s["runs"]))
    return results


def test_every_planned_kill_happened(scenarios):
    for name, scenario in scenarios.items():
        *killed, final = scenario["runs"]
        assert all(run.killed for _, run in killed), (name, [(p, r.code) for p, r in killed])
        assert not final[1].killed


@pytest.mark.parametrize("name", SCENARIOS)
def test_after_a_kill_and_a_rerun_the_list_is_exactly_what_the_input_asks_for(scenarios, name):
    scenario = scenarios[name]
    final = scenario["runs"][-1][1]
    stderr = final.stderr

    assert final.code == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    if scenario["operation"] == "add":
        assert len(scenario["lists"]) == 1, scenario["lists"]
    lost = scenario["wanted"] - scenario["members"]
    FIGURES.lost(len(lost))
    assert scenario["members"] == scenario["wanted"], (
        f"missing {sorted(lost)[:5]}, extra {sorted(scenario['members'] - scenario['wanted'])[:5]}"
    )
    assert final.messages[-1] in ({"crm": "done"}, {"churned": "done"})


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_input_row_is_written_or_rejected_with_a_reason(scenarios, name):
    scenario = scenarios[name]
    final = scenario["runs"][-1][1]
    summary = re.search(r"Stream '(\w+)': (\d+) rows received, (\d+) sent, (\d+) rejected", final.stderr)
    assert summary, final.stderr[-2000:]
    received, sent, rejected = map(int, summary.groups()[1:])
    assert received == scenario["rows"] == sent + rejected
    assert rejected == len(scenario["invalid"])
    rejects_file = final.workdir / "klaviyo-rejects.jsonl"
    rejects = [json.loads(line) for line in rejects_file.read_text().splitlines()]
    assert sorted(json.dumps(r["row"]) for r in rejects) == sorted(json.dumps(row) for row in scenario["invalid"])
    assert all(r["reason"] for r in rejects)
    FIGURES.add("target_rows_checked", received)
