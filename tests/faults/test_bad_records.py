"""Bad records into the target: each is rejected with its reason, the valid rows are all written.

One input mixes valid rows with every kind of bad one (missing column, wrong types, invalid
emails and phone numbers, profiles over Klaviyo's 100 KB, NaN, bytes that are not UTF-8,
lines cut short or garbled, a RECORD without its record). It goes through the installed
``target-klaviyo`` on stdin as raw bytes, into the sandbox. Problems of a whole stream (no
email column, a RECORD before its SCHEMA, a SCHEMA that is not valid) stop the run in one
line before any STATE, and the fixed rerun writes everything.

Non-UTF-8 input: the target reads stdin as UTF-8 with surrogate escapes (whatever the
locale), so a bad byte costs its row only; the row is rejected, never sent with
replacement characters, and the rejects file shows the byte as ``\\xe9``.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.faults.harness import FIGURES, run_target, sandbox

PROPERTIES = {
    "email": {"type": ["string", "null"]},
    "phone_number": {"type": ["string", "null"]},
    "first_name": {"type": ["string", "null"]},
    "location": {},
    "notes": {},
    "case": {"type": "string"},
}
SCHEMA = {
    "type": "SCHEMA",
    "stream": "leads",
    "schema": {"type": "object", "properties": PROPERTIES},
    "key_properties": [],
}

# case -> (record, a fragment of the reason it must be rejected with)
BAD_ROWS: dict[str, tuple[dict, str]] = {
    "email column absent": ({"first_name": "No Email"}, "email is empty or missing"),
    "email null": ({"email": None}, "email is empty or missing"),
    "email empty": ({"email": ""}, "email is empty or missing"),
    "email whitespace": ({"email": "   "}, "email is empty or missing"),
    "email a number": ({"email": 12345}, "email must be text, not int"),
    "email an object": ({"email": {"address": "a@example.com"}}, "email must be text, not dict"),
    "email no at": ({"email": "ann.example.com"}, "email is not an email address"),
    "email no domain dot": ({"email": "ann@example"}, "email is not an email address"),
    "email two ats": ({"email": "ann@@example.com"}, "email is not an email address"),
    "email inner space": ({"email": "ann smith@example.com"}, "email is not an email address"),
    "email trailing dot": ({"email": "ann@example.com."}, "email is not an email address"),
    "email too long": ({"email": "a" * 250 + "@example.com"}, "email is not an email address"),
    "phone local": ({"phone_number": "555-1234"}, "phone_number is not E.164"),
    "phone leading zero": ({"phone_number": "+0 20 7946 0958"}, "phone_number is not E.164"),
    "phone too long": ({"phone_number": "+1234567890123456"}, "phone_number is not E.164"),
    "phone letters": ({"phone_number": "+1 415 CALL NOW"}, "phone_number is not E.164"),
    "phone tel uri": ({"phone_number": "tel:+14155550101"}, "phone_number is not E.164"),
    "first_name an object": ({"first_name": {"given": "Ann"}}, "first_name must be text"),
    "first_name a number against the schema": ({"first_name": 7}, "does not match the stream's schema"),
    "location a string": ({"location": "Boston"}, "location must be an object"),
    "location unknown field": ({"location": {"planet": "Mars"}}, "location.planet is not a Klaviyo location field"),
    "location city a list": ({"location": {"city": ["Boston"]}}, "location.city must be text"),
    "notes over 100 KB": ({"notes": "n" * 101_000}, "Klaviyo accepts at most 100 KB per profile"),
    "notes over 100 KB in emoji": ({"notes": "🚀" * 9_000}, "Klaviyo accepts at most 100 KB per profile"),
}
# Valid rows that look odd: they must be written as they are.
ODD_BUT_VALID = {
    "phone with punctuation": {"phone_number": "+1 (415) 555-0101"},
    "notes just under 100 KB": {"notes": "m" * 99_000},
    "unicode name": {"first_name": "Zoë 李 Ахмед 🚀 👩‍👩‍👧"},
    "location numbers": {"location": {"city": "Zürich", "latitude": 47.37, "longitude": "8.54"}},
    "extra columns become properties": {"notes": {"nested": [1, None, {"deep": "ok"}]}},
}
VALID_ROWS = 30


def _line(value: dict) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def build_input() -> tuple[bytes, set[str], dict[str, str]]:
    """(raw input, emails that must be written, case -> reason fragment for rows to reject)."""
    lines = [_line(SCHEMA)]
    wanted: set[str] = set()
    rejected: dict[str, str] = {}
    index = 0

    def record(case: str, row: dict) -> None:
        lines.append(_line({"type": "RECORD", "stream": "leads", "record": {**row, "case": case}}))

    for i in range(VALID_ROWS):
        email = f"valid.{i}@example.com"
        wanted.add(email)
        record(f"valid {i}", {"email": email, "first_name": f"Valid {i}"})
    for case, (row, reason) in BAD_ROWS.items():
        index += 1
        record(case, row if case == "email column absent" else {"email": f"bad.{index}@example.com", **row})
        rejected[case] = reason
    for case, row in ODD_BUT_VALID.items():
        index += 1
        email = f"odd.{index}@example.com"
        wanted.add(email)
        record(case, {"email": email, **row})
    # Raw lines no JSON encoder would write.
    raw: list[tuple[str, bytes, str]] = [
        (
            "latin-1 byte in a value",
            b'{"type":"RECORD","stream":"leads","record":{"email":"jose@example.com",'
            b'"first_name":"Jos\xe9","case":"latin-1 byte in a value"}}',
            "not valid UTF-8",
        ),
        (
            "latin-1 byte in a column name",
            b'{"type":"RECORD","stream":"leads","record":{"email":"pre@example.com",'
            b'"pr\xe9nom":"Ann","case":"latin-1 byte in a column name"}}',
            "not valid UTF-8",
        ),
        (
            "lone surrogate escape",
            b'{"type":"RECORD","stream":"leads","record":{"email":"half@example.com",'
            b'"first_name":"half \\ud83d emoji","case":"lone surrogate escape"}}',
            "not valid UTF-8",
        ),
        (
            "NaN",
            b'{"type":"RECORD","stream":"leads","record":{"email":"nan@example.com","notes":NaN,"case":"NaN"}}',
            "NaN or infinite",
        ),
        (
            "line cut short",
            b'{"type":"RECORD","stream":"leads","record":{"email":"cut@example.com","case":"line cut',
            "is not valid JSON",
        ),
        ("garbage line", b"\x00\x01 garbage line {{{", "is not valid JSON"),
        ("no record key", b'{"type":"RECORD","stream":"leads","case":"no record key"}', "missing required record"),
    ]
    for position, (case, line, reason) in enumerate(raw):
        lines.insert(5 + 4 * position, line)  # scattered between the valid rows
        rejected[case] = reason
    lines.insert(12, b"")  # a blank line is skipped, not an error
    lines.append(_line({"type": "STATE", "value": {"leads": "done"}}))
    return b"\n".join(lines) + b"\n", wanted, rejected


@pytest.fixture(scope="module")
def outcome(faults_workdir):
    data, wanted, rejected = build_input()
    with sandbox(51, job_seconds=0.2) as box:
        config = {"api_key": box.api_key, "base_url": box.base_url, "list_name": "Bad records", "request_timeout": 5}
        run = run_target(config, faults_workdir / "bad-records", data)
        time.sleep(0.4)
        store = box.store
        (list_id,) = [lid for lid, rec in store.new_lists.items() if rec["attributes"]["name"] == "Bad records"]
        members = {
            store.get_profile(pid)["attributes"]["email"]: store.get_profile(pid) for pid in store.member_ids(list_id)
        }
    rejects_file = faults_workdir / "bad-records" / "klaviyo-rejects.jsonl"
    rejects = [json.loads(line) for line in rejects_file.read_text(encoding="utf-8").splitlines()]
    FIGURES.add("bad_records_tried", len(rejected) + len(ODD_BUT_VALID))
    FIGURES.lost(len(wanted - set(members)))
    return run, wanted, rejected, members, rejects


def _case_of(reject: dict) -> str:
    row = reject["row"]
    if isinstance(row, dict):
        return row.get("case", "")
    found = re.search(r'"case":"([^"]+)', row)
    if found:
        return found.group(1)
    return "garbage line" if "garbage" in row else ("line cut" if "cut@example.com" in row else "")


def test_the_run_succeeds_and_writes_every_valid_row(outcome):
    run, wanted, _, members, _ = outcome
    assert run.code == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert set(members) == wanted
    assert [json.loads(line) for line in run.stdout.splitlines()] == [{"leads": "done"}]


def test_every_bad_row_is_rejected_with_its_reason(outcome):
    _, _, rejected, _, rejects = outcome
    by_case = {}
    for reject in rejects:
        case = _case_of(reject)
        by_case["line cut short" if case == "line cut" else case] = reject["reason"]
    assert set(by_case) == set(rejected)
    for case, fragment in rejected.items():
        assert fragment in by_case[case], (case, by_case[case])


def test_the_summary_accounts_for_every_row(outcome):
    run, wanted, rejected, _, _ = outcome
    counts = {
        m[0]: tuple(map(int, m[1:]))
        for m in re.findall(r"Stream '([^']+)': (\d+) rows received, (\d+) sent, (\d+) rejected", run.stderr)
    }
    received = sum(c[0] for c in counts.values())
    sent = sum(c[1] for c in counts.values())
    rejected_n = sum(c[2] for c in counts.values())
    assert (sent, rejected_n) == (len(wanted), len(rejected))
    assert received == sent + rejected_n


def test_odd_but_valid_values_arrive_intact(outcome):
    _, _, _, members, _ = outcome
    by_case = {p["attributes"]["properties"]["case"]: p["attributes"] for p in members.values()}
    assert by_case["unicode name"]["first_name"] == "Zoë 李 Ахмед 🚀 👩‍👩‍👧"
    assert by_case["phone with punctuation"]["phone_number"] == "+14155550101"
    assert by_case["notes just under 100 KB"]["properties"]["notes"] == "m" * 99_000
    assert by_case["location numbers"]["location"]["city"] == "Zürich"
    assert by_case["extra columns become properties"]["properties"]["notes"] == {"nested": [1, None, {"deep": "ok"}]}


def test_undecodable_bytes_are_shown_readably_in_the_rejects_file(outcome, faults_workdir):
    raw = (faults_workdir / "bad-records" / "klaviyo-rejects.jsonl").read_bytes()
    raw.decode("utf-8")  # the file itself is valid UTF-8
    _, _, _, _, rejects = outcome
    latin = next(r for r in rejects if _case_of(r) == "latin-1 byte in a value")
    assert latin["row"]["first_name"] == "Jos\\xe9"
    column = next(r for r in rejects if _case_of(r) == "latin-1 byte in a column name")
    assert "pr\\xe9nom" in column["row"] and "pr\\xe9nom" in column["reason"]


def test_emails_of_bad_rows_stay_out_of_the_log(outcome):
    run, *_ = outcome
    assert "@example.com" not in run.stderr


def test_a_stream_that_cannot_work_stops_the_run_before_any_state_and_a_fixed_rerun_loses_nothing(faults_workdir):
    good = [
        {"type": "RECORD", "stream": "leads", "record": {"email": f"first.{i}@example.com", "case": "x"}}
        for i in range(5)
    ]
    broken_schema = {
        "type": "SCHEMA",
        "stream": "orders",
        "key_properties": [],
        "schema": {"properties": {"Email": {"type": "string"}}},
    }
    lines = [
        SCHEMA,
        *good,
        {"type": "STATE", "value": {"leads": 1}},
        broken_schema,
        {"type": "RECORD", "stream": "orders", "record": {"Email": "x@example.com"}},
    ]
    with sandbox(52, job_seconds=0.0) as box:
        config = {"api_key": box.api_key, "base_url": box.base_url, "list_name": "Two streams"}
        first = run_target(config, faults_workdir / "missing-column", b"\n".join(map(_line, lines)) + b"\n")
        fixed = {**config, "stream_maps": {"orders": {"email": "Email", "Email": "__NULL__"}}}
        second = run_target(fixed, faults_workdir / "missing-column-fixed", b"\n".join(map(_line, lines)) + b"\n")
        time.sleep(0.2)
        (list_id,) = [lid for lid, rec in box.store.new_lists.items() if rec["attributes"]["name"] == "Two streams"]
        members = {box.store.get_profile(pid)["attributes"]["email"] for pid in box.store.member_ids(list_id)}

    FIGURES.add("bad_records_tried")
    assert first.code == 1
    assert [line.split("|")[-1].strip() for line in first.error_lines] == [
        "Stream 'orders' has no `email` column (it has `Email`): operation add needs it "
        "(or `phone_number`, `external_id` or `profile_id`). Rename the column or map it with stream_maps."
    ]
    assert first.stdout == ""  # no STATE: nothing claims the first stream's rows were written
    assert second.code == 0, second.stderr[-2000:]
    assert members == {f"first.{i}@example.com" for i in range(5)} | {"x@example.com"}


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (
            {"type": "RECORD", "stream": "orders", "record": {"email": "x@example.com"}},
            "a RECORD of stream 'orders' came before the stream's SCHEMA message. Fix the order of the tap's output",
        ),
        (
            {"type": "SCHEMA", "stream": "orders", "schema": {"type": "object"}, "key_properties": []},
            "a SCHEMA message the target cannot use (Line is missing required properties key(s)",
        ),
    ],
    ids=["record before schema", "schema without properties"],
)
def test_a_broken_stream_stops_the_run_in_one_line_before_any_state(faults_workdir, broken, message):
    good = [
        {"type": "RECORD", "stream": "leads", "record": {"email": f"early.{i}@example.com", "case": "x"}}
        for i in range(3)
    ]
    lines = [SCHEMA, *good, {"type": "STATE", "value": {"leads": 1}}, broken]
    with sandbox(53, job_seconds=0.0) as box:
        config = {"api_key": box.api_key, "base_url": box.base_url, "list_name": "Broken stream"}
        run = run_target(config, faults_workdir / f"broken-{broken['type']}", b"\n".join(map(_line, lines)) + b"\n")
    FIGURES.add("bad_records_tried")
    assert run.code == 1
    assert "Traceback" not in run.stderr
    (error,) = run.error_lines
    assert f"Input line {len(lines)}: {message}" in error
    assert run.stdout == ""
