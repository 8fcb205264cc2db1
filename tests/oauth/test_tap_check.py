"""`tap-klaviyo --test` authenticates with OAuth: a bearer token from the loopback server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from klaviyo_core.scopes import scopes_of
from tap_klaviyo.tap import STREAM_TYPES
from tests.oauth.conftest import assert_clean

_SCRIPT = Path(sys.executable).with_name("tap-klaviyo")
TAP = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-c", "from tap_klaviyo.tap import cli; cli()"]


def run_tap(config: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    (tmp_path / "c.json").write_text(json.dumps(config))
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "LOGLEVEL": "DEBUG"}
    return subprocess.run(
        [*TAP, "--config", str(tmp_path / "c.json"), "--test"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


def test_connection_check_succeeds_with_a_bearer_token(klaviyo, tmp_path):
    done = run_tap(klaviyo.config(tmp_path), tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"Connected to Klaviyo account {klaviyo.account_id}" in done.stderr
    # the token file is bound to its account once (GET /api/accounts), then the check itself (the account,
    # then one scope probe per stream scope): all with the one refreshed token
    assert klaviyo.refresh_calls == 1 and set(klaviyo.bearer_tokens_seen) == {klaviyo.access_token(1)}
    stream_scopes = scopes_of(stream_type.operation_id for stream_type in STREAM_TYPES)
    assert len(klaviyo.bearer_tokens_seen) == 2 + len(stream_scopes) == 17
    assert json.loads((tmp_path / "tokens.json").read_text())["account_id"] == klaviyo.account_id
    assert json.loads((tmp_path / "tokens.json").read_text())["refresh_token"] == klaviyo.refresh_token(1)
    assert_clean(done.stdout, done.stderr)


def test_connection_check_with_a_revoked_grant_fails_in_one_line(klaviyo, tmp_path):
    klaviyo.refuse_refresh_with = "invalid_grant"
    done = run_tap(klaviyo.config(tmp_path), tmp_path)
    assert done.returncode == 1
    assert "Re-authorise with: klaviyo-oauth authorize --client-id" in done.stderr
    assert "Traceback" not in done.stderr
    assert_clean(done.stdout, done.stderr)
