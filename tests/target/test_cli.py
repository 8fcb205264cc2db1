"""The installed console script, as a pipeline runs it: ``target-klaviyo --config c.json < f.singer``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from klaviyo_sandbox.config import DEFAULT_API_KEY
from tests.target.conftest import FIXTURES

EXECUTABLE = str(Path(sys.executable).parent / "target-klaviyo")  # the venv's console script: never skipped


def run_cli(tmp_path: Path, config: dict, fixture: str) -> subprocess.CompletedProcess:
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps({"api_key": DEFAULT_API_KEY, **config}))
    with (FIXTURES / fixture).open() as stdin:
        return subprocess.run(
            [EXECUTABLE, "--config", str(config_path)],
            stdin=stdin,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )


def test_the_console_script_adds_rows_from_stdin_and_prints_state(klaviyo, tmp_path):
    list_id = klaviyo.add_list("VIP")

    result = run_cli(tmp_path, {"list_id": list_id, "base_url": klaviyo.base_url}, "add_customers.singer")

    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"bookmarks": {"customers": {"replication_key_value": "2026-01-01"}}}
    ]
    assert klaviyo.member_emails(list_id) == {"ann@example.com", "o'brien@example.com"}


def test_a_missing_column_ends_the_process_with_one_line_and_no_traceback(klaviyo, tmp_path):
    list_id = klaviyo.add_list("VIP")

    result = run_cli(tmp_path, {"list_id": list_id, "base_url": klaviyo.base_url}, "missing_column.singer")

    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "Stream 'customers' has no `email` column (it has `Email`)" in errors[0]
    assert "Traceback" not in result.stderr
    assert not klaviyo.requests


def test_fail_on_rejects_ends_the_process_non_zero_naming_the_rejects_file(klaviyo, tmp_path):
    list_id = klaviyo.add_list("VIP")
    config = {"list_id": list_id, "base_url": klaviyo.base_url, "fail_on_rejects": True}

    result = run_cli(tmp_path, config, "invalid_rows.singer")

    assert result.returncode == 1
    assert f"see {tmp_path / 'klaviyo-rejects.jsonl'}" in result.stderr
    assert "Traceback" not in result.stderr
    assert len((tmp_path / "klaviyo-rejects.jsonl").read_text().splitlines()) == 7


def test_about_lists_every_target_setting_in_markdown():
    result = subprocess.run(
        [EXECUTABLE, "--about", "--format=markdown"], capture_output=True, text=True, timeout=60, check=True
    )

    for setting in (
        "list_id",
        "list_name",
        "create_list_if_missing",
        "operation",
        "wait_for_completion",
        "wait_timeout_seconds",
        "rejects_file",
        "fail_on_rejects",
        "api_key",
    ):
        assert f"| {setting} |" in result.stdout
