"""The tap as users run it: the installed executable, its flags, its exit codes."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import run_cli

BAD_CONFIGS = [
    ({}, "api_key"),
    ({"api_key": ""}, "api_key"),
    ({"api_key": "   "}, "api_key"),
    ({"api_key": "AbC123"}, "public (site) key"),
    ({"api_key": "sk_0123456789"}, "starts with pk_"),
    ({"api_key": "pk_abc def"}, "whitespace inside the key"),
    ({"api_key": "pk_abc", "start_date": "last tuesday"}, "start_date"),
    ({"api_key": "pk_abc", "end_date": "2024-13-45"}, "end_date"),
    ({"api_key": "pk_abc", "start_date": "2024-02-01", "end_date": "2024-01-01"}, "end_date must be after start_date"),
    ({"api_key": "pk_abc", "revision": "latest"}, "revision"),
    ({"api_key": "pk_abc", "base_url": "a.klaviyo.com"}, "base_url"),
    ({"api_key": "pk_abc", "rate_limit_share": 1.5}, "rate_limit_share"),
]


@pytest.mark.parametrize(("config", "named"), BAD_CONFIGS)
def test_bad_config_is_one_line_naming_the_setting_with_exit_1(tmp_path, config, named):
    result = run_cli("tap-klaviyo", config=config, tmp_path=tmp_path)
    assert result.code == 1
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert errors and named in errors[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_about_lists_every_setting_as_markdown(tmp_path):
    result = run_cli("tap-klaviyo", "--about", "--format=markdown", tmp_path=tmp_path)
    assert result.code == 0
    for setting in ("api_key", "start_date", "end_date", "base_url", "revision", "include_predictive_analytics"):
        assert f"| {setting} |" in result.stdout


def test_about_json_marks_the_key_secret(tmp_path):
    about = json.loads(run_cli("tap-klaviyo", "--about", "--format=json", tmp_path=tmp_path).stdout)
    assert about["settings"]["properties"]["api_key"]["secret"] is True


def test_discover_emits_every_stream_with_keys_and_replication(tmp_path, sandbox):
    config = {"api_key": sandbox.api_key, "base_url": sandbox.base_url}
    result = run_cli("tap-klaviyo", "--discover", config=config, tmp_path=tmp_path)
    assert result.code == 0, result.stderr
    streams = {s["tap_stream_id"]: s for s in json.loads(result.stdout)["streams"]}
    expected = {
        "campaigns": (["id"], "updated_at"),
        "events": (["id"], "datetime"),
        "flows": (["id"], "updated"),
        "lists": (["id"], "updated"),
        "metrics": (["id"], None),
        "profiles": (["id"], "updated"),
        "reviews": (["id"], "updated"),
        "segments": (["id"], "updated"),
        "list_members": (["list_id", "profile_id"], None),
        "segment_members": (["segment_id", "profile_id"], None),
    }
    for name, (keys, replication_key) in expected.items():
        assert streams[name]["key_properties"] == keys
        assert streams[name].get("replication_key") == replication_key


def test_connection_test_calls_accounts_and_succeeds(tmp_path, sandbox):
    config = {"api_key": sandbox.api_key, "base_url": sandbox.base_url}
    result = run_cli("tap-klaviyo", "--test", config=config, tmp_path=tmp_path)
    assert result.code == 0, result.stderr
    assert "Connected to Klaviyo account" in result.stderr


def test_a_wrong_key_fails_the_connection_test_in_one_line_without_leaking_it(tmp_path, sandbox):
    key = "pk_wrong_canary_0123456789"
    result = run_cli(
        "tap-klaviyo", "--test", config={"api_key": f"  {key}\n", "base_url": sandbox.base_url}, tmp_path=tmp_path
    )
    assert result.code == 1
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "GET /api/accounts failed with 401" in errors[0] and "api_key" in errors[0]
    assert "Traceback" not in result.stderr
    assert key not in result.stderr + result.stdout


@pytest.mark.slow
def test_a_full_sync_through_the_cli_emits_records_and_final_state(tmp_path, sandbox):
    config = {"api_key": sandbox.api_key, "base_url": sandbox.base_url}
    result = run_cli("tap-klaviyo", config=config, tmp_path=tmp_path)
    assert result.code == 0, result.stderr[-2000:]
    messages = result.messages()
    streams = {m["stream"] for m in messages if m["type"] == "RECORD"}
    assert {
        "campaigns",
        "events",
        "flows",
        "lists",
        "metrics",
        "profiles",
        "reviews",
        "segments",
        "list_members",
        "segment_members",
    } <= streams
    final = [m for m in messages if m["type"] == "STATE"][-1]["value"]["bookmarks"]
    assert final["events"]["replication_key_value"] and final["profiles"]["replication_key_value"]


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b'{"streams": []}', None),
        (b'{"name": "\\ud83d"}', None),  # a lone surrogate escape: JSON allows it, msgspec does not
        (b'{"streams": [\n  {"a": 1},,\n]}', "is not valid JSON (Expecting value at line 2 column 12)"),
        (b"[1]", "must hold a JSON object, not a list"),
        (b'{"name": "caf\xe9"}', "is not UTF-8 text"),
    ],
)
def test_an_input_file_is_checked_without_building_it_and_refused_as_before(tmp_path, content, error):
    """``check_input_file`` validates with msgspec (a 9.4 MB catalog is ~100 MB as Python objects);
    anything msgspec refuses goes through ``json`` as before, whose messages say where."""
    from klaviyo_core.cli import check_input_file
    from klaviyo_core.errors import KlaviyoError

    path = tmp_path / "catalog.json"
    path.write_bytes(content)
    if error is None:
        check_input_file("--catalog", str(path))
    else:
        with pytest.raises(KlaviyoError, match=re.escape(error)):
            check_input_file("--catalog", str(path))
