"""Bad input loses nothing: a stream that cannot work fails first, a bad row is reported."""

from __future__ import annotations

import json
import logging

import pytest

from target_klaviyo.privacy import private_logger
from tests.target.conftest import singer_lines


def test_a_stream_without_the_email_column_fails_before_any_request(klaviyo, run_target):
    list_id = klaviyo.add_list("VIP")

    run = run_target({"list_id": list_id}, "missing_column.singer")

    assert run.exit_code == 1
    assert (
        "Stream 'customers' has no `email` column (it has `Email`): operation add needs it "
        "(or `phone_number`, `external_id` or `profile_id`). Rename the column or map it with stream_maps."
    ) in run.log
    assert not klaviyo.requests
    assert run.states == []


def test_a_stream_map_can_supply_the_missing_column(klaviyo, run_target):
    list_id = klaviyo.add_list("VIP")
    config = {"list_id": list_id, "stream_maps": {"customers": {"email": "Email", "Email": None}}}

    run = run_target(config, "missing_column.singer")

    assert run.exit_code == 0
    assert klaviyo.member_emails(list_id) == {"ann@example.com"}


def test_invalid_rows_go_to_the_rejects_file_with_reasons_and_the_valid_rows_are_written(klaviyo, run_target):
    list_id = klaviyo.add_list("VIP")

    run = run_target({"list_id": list_id}, "invalid_rows.singer")

    assert run.exit_code == 0
    assert klaviyo.member_emails(list_id) == {"good@example.com"}
    sent = klaviyo.calls("POST", "/api/profile-bulk-import-jobs")[0].body["data"]["attributes"]["profiles"]["data"]
    assert sent[0]["attributes"]["phone_number"] == "+442079460958"
    rejects = run.rejects()
    assert [(r["row"].get("email"), r["reason"]) for r in rejects] == [
        ("not-an-email", "email is not an email address"),
        (None, "email is empty or missing"),
        (None, "email is empty or missing"),
        ("local@example.com", "phone_number is not E.164: + then country code and number, 7 to 15 digits"),
        ("letters@example.com", "phone_number is not E.164: + then country code and number, 7 to 15 digits"),
        ("typed@example.com", "does not match the stream's schema: 7 is not of type 'string', 'null'"),
        ("nan@example.com", "score is NaN or infinite, which JSON cannot carry"),
    ]
    assert {r["stream"] for r in rejects} == {"leads"}
    assert rejects[-1]["row"] == {"email": "nan@example.com", "score": "nan"}  # still valid JSON
    assert (
        "Stream 'leads': 8 rows received, 1 sent, 7 rejected (invalid email: 1, missing email: 2, "
        "phone_number not E.164: 2, schema mismatch: 1, value not JSON: 1)"
    ) in run.log
    assert run.states == [{"leads": "done"}]


def test_rejected_rows_fail_the_run_only_with_fail_on_rejects(klaviyo, run_target):
    list_id = klaviyo.add_list("VIP")

    lenient = run_target({"list_id": list_id}, "invalid_rows.singer")
    (lenient.workdir / "out").mkdir()
    strict = run_target(
        {"list_id": list_id, "fail_on_rejects": True, "rejects_file": "out/rejects.jsonl"}, "invalid_rows.singer"
    )

    assert lenient.exit_code == 0
    assert strict.exit_code == 1
    rejects_path = strict.workdir / "out" / "rejects.jsonl"
    assert f"7 rows were rejected and fail_on_rejects is on: see {rejects_path} for rows and reasons." in strict.log
    assert len(strict.rejects("out/rejects.jsonl")) == 7
    assert klaviyo.member_emails(list_id) == {"good@example.com"}  # the good row was still written
    assert strict.states == [{"leads": "done"}]


def test_emails_never_appear_in_the_log(klaviyo, run_target):
    list_id = klaviyo.add_list("VIP")
    klaviyo.add_profile("ann@example.com", list_id)

    logs = [
        run_target({"list_id": list_id}, "invalid_rows.singer").log,
        run_target({"list_id": list_id}, "add_customers.singer").log,
        run_target({"list_id": list_id, "operation": "remove"}, "remove_by_email.singer").log,
    ]

    for log in logs:
        assert "@example.com" not in log
        assert klaviyo.api_key not in log


def test_a_date_the_sdk_cannot_parse_is_passed_through_as_text(klaviyo, run_target):
    list_id = klaviyo.add_list("VIP")
    properties = {"email": {"type": "string"}, "renewal": {"type": ["string", "null"], "format": "date-time"}}
    text = singer_lines("people", [{"email": "ann@example.com", "renewal": "sometime in May"}], properties)

    run = run_target({"list_id": list_id}, text)

    assert run.exit_code == 0
    sent = klaviyo.calls("POST", "/api/profile-bulk-import-jobs")[0].body["data"]["attributes"]["profiles"]["data"]
    assert sent[0]["attributes"]["properties"] == {"renewal": "sometime in May"}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "Set exactly one of list_id and list_name (neither is set)."),
        ({"list_id": "X", "list_name": "Y"}, "Set exactly one of list_id and list_name (both are set)."),
        (
            {"list_id": "X", "operation": "delete"},
            "Setting operation must be one of add, remove, upsert, subscribe, unsubscribe, suppress, "
            "unsuppress, track (exactly, lower case) (not 'delete').",
        ),
        ({"list_id": "X", "wait_timeout_seconds": 299}, "299 is less than the minimum of 300"),
        ({"list_id": "X", "wait_timeout_seconds": 90_000}, "90000 is greater than the maximum of 86400"),
        ({"list_id": "X", "rejects_file": "no/such/dir/r.jsonl"}, "Setting rejects_file: folder"),
    ],
)
def test_bad_settings_are_one_clear_line_before_anything_is_sent(klaviyo, run_target, config, message):
    run = run_target(config, "add_customers.singer")

    assert run.exit_code == 1
    assert message in run.log
    assert not klaviyo.requests


def test_records_are_written_as_json_even_when_the_row_has_decimals(klaviyo, run_target):
    list_id = klaviyo.add_list("VIP")
    schema = '{"properties":{"email":{"type":"string"},"spend":{"type":"number"}}}'
    text = '{"type":"SCHEMA","stream":"s","schema":' + schema + ',"key_properties":[]}\n'
    text += '{"type":"RECORD","stream":"s","record":{"email":"ann@example.com","spend":12.50}}\n'
    text += '{"type":"RECORD","stream":"s","record":{"email":"bob@example.com","spend":3}}\n'

    run = run_target({"list_id": list_id}, text)

    assert run.exit_code == 0
    sent = klaviyo.calls("POST", "/api/profile-bulk-import-jobs")[0].body["data"]["attributes"]["profiles"]["data"]
    assert [p["attributes"]["properties"]["spend"] for p in sent] == [12.5, 3]
    assert json.dumps(sent)  # plain JSON all the way


def test_a_failed_email_lookup_does_not_put_the_emails_in_the_error(klaviyo, run_target):
    list_id = klaviyo.add_list("VIP")
    detail = 'Invalid filter any(email,["Ann@Example.com"])'
    klaviyo.script("GET", "/api/profiles", 400, body={"errors": [{"code": "invalid", "detail": detail}]})

    run = run_target({"list_id": list_id, "operation": "remove"}, "remove_by_email.singer")

    assert run.exit_code == 1
    assert "GET /api/profiles failed with 400" in run.log
    assert 'Invalid filter any(email,["<email>"])' in run.log
    assert "Ann@Example.com" not in run.log


def test_network_error_text_quoting_the_url_is_redacted_in_logs(caplog):
    logger = private_logger(logging.getLogger("target-klaviyo-test"))
    url = "/api/profiles?filter=any%28email%2C%5B%22ann%40example.com%22%5D%29&page%5Bsize%5D=100"

    with caplog.at_level(logging.WARNING):
        logger.warning("Retrying GET /api/profiles in %.1f s: %s", 2.0, f"Max retries exceeded with url: {url}")

    assert caplog.messages == [
        "Retrying GET /api/profiles in 2.0 s: Max retries exceeded with url: /api/profiles?<query>"
    ]
