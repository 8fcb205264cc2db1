"""One OAuth app in two Klaviyo accounts, behind one token endpoint: tokens never cross accounts.

As an agency runs it: one client_id, one HOME and working folder, a tap and a target
per account, each authorised with ``klaviyo-oauth authorize`` and configured with its
own refresh token. The sandbox serves both accounts from one token endpoint and binds
every token to the account that issued it, so a pipeline presenting the other
account's token would read or write the other account (with two separate servers the
defect would hide: the wrong token is refused and the config's token tried next).
Everything goes through the installed CLIs, one after the other and interleaved.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import typing as t
from collections import Counter
from pathlib import Path

import pytest

from klaviyo_sandbox import Sandbox, SandboxConfig
from tests.oauth.conftest import browser_get

BIN = Path(sys.executable).parent
CLIENT_ID = "agency-app"
CLIENT_SECRET = "canary-agency-secret-XYZ"
STREAMS = ("lists", "events")


class Pipeline(t.NamedTuple):
    account: str
    tap: dict
    target: dict


def run(command: list[str], work: Path, *, stdin: str | None = None) -> subprocess.CompletedProcess:
    """A console script from this venv, with the shared HOME and working folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAP_KLAVIYO", "TARGET_KLAVIYO", "KLAVIYO_"))}
    env.update(HOME=str(work / "home"), XDG_CONFIG_HOME="", KLAVIYO_CLIENT_SECRET=CLIENT_SECRET)
    return subprocess.run(
        [str(BIN / command[0]), *command[1:]], input=stdin, capture_output=True, text=True,
        cwd=work / "work", env=env, timeout=180, check=False,
    )  # fmt: skip


def authorize(box: Sandbox, account: str, which: str, work: Path, *extra: str, expect: int = 0) -> tuple:
    """``klaviyo-oauth authorize --headless`` with the browser signed in to ``account``.

    Returns (refresh token, token file, everything it said); the first two are None when it failed.
    """
    env = {**os.environ, "HOME": str(work / "home"), "XDG_CONFIG_HOME": "", "KLAVIYO_CLIENT_SECRET": CLIENT_SECRET}
    process = subprocess.Popen(
        [str(BIN / "klaviyo-oauth"), "authorize", "--headless", "--for", which, "--print-refresh-token",
         "--client-id", CLIENT_ID, "--token-url", f"{box.base_url}/oauth/token",
         "--authorize-url", f"{box.base_url}/oauth/authorize", "--base-url", box.base_url, *extra],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=work / "work", env=env,
    )  # fmt: skip
    prompt = ""
    while "paste it here" not in prompt:
        line = process.stderr.readline()
        assert line, prompt
        prompt += line
    box.oauth.sign_in(account)  # the user is logged in to this account in the browser
    _, location = browser_get(re.search(r"^\s+(http\S+)$", prompt, re.MULTILINE).group(1))
    out, err = process.communicate(location + "\n", timeout=30)
    assert process.returncode == expect, out + err
    assert CLIENT_SECRET not in out + err
    if expect:
        return None, None, err
    refresh_token = re.search(r"^refresh_token: (\S+)$", out, re.MULTILINE).group(1)
    token_file = Path(re.search(r"Tokens stored in (\S+) \(owner-only", out).group(1))
    return refresh_token, token_file, out


def config_for(box: Sandbox, refresh_token: str, **extra: t.Any) -> dict:
    """No token_file: the default one, in the shared HOME, is what must keep accounts apart."""
    return {
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": refresh_token,
        "token_url": f"{box.base_url}/oauth/token", "base_url": box.base_url, "max_concurrency": 2, **extra,
    }  # fmt: skip


def write(work: Path, name: str, document: dict) -> str:
    path = work / "work" / name
    path.write_text(json.dumps(document))
    return str(path)


def rows(prefix: str, n: int = 5) -> str:
    schema = {"type": "SCHEMA", "stream": "people", "key_properties": ["email"],
              "schema": {"properties": {"email": {"type": "string"}}}}  # fmt: skip
    records = [{"type": "RECORD", "stream": "people", "record": {"email": f"{prefix}.{i}@agency.example"}}
               for i in range(n)]  # fmt: skip
    return "\n".join(json.dumps(m) for m in [schema, *records, {"type": "STATE", "value": {"done": prefix}}]) + "\n"


@pytest.fixture(scope="module")
def agency(tmp_path_factory):
    work = tmp_path_factory.mktemp("agency")
    (work / "home").mkdir()
    (work / "work").mkdir()
    config = SandboxConfig(
        seed=21,
        scale=0.01,
        rate_limit_scale=0.0,
        job_seconds=0.0,
        accounts=2,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )
    with Sandbox(config) as box:
        yield box, work


def presented(box: Sandbox) -> Counter:
    """API requests so far, by the account of the credential presented (served or refused)."""
    return Counter(e["account"] for store in box.accounts.values() for e in store.request_log if e["account"])


@pytest.mark.slow
def test_two_accounts_one_endpoint_never_cross(agency):
    box, work = agency
    account_a, account_b = list(box.accounts)
    figures: dict[str, t.Any] = {}

    # -- authorise: tap (read scopes), then target (write scopes), for A, then B -------------
    a_tap, a_tap_file, said = authorize(box, account_a, "tap", work)
    assert f"Authorised account {account_a}" in said
    a_tap_bytes = a_tap_file.read_bytes()
    a_target, a_target_file, _ = authorize(box, account_a, "target", work)
    b_tap, b_tap_file, said = authorize(box, account_b, "tap", work)
    assert f"Authorised account {account_b}" in said
    b_target, b_target_file, _ = authorize(box, account_b, "target", work)
    files = {a_tap_file, a_target_file, b_tap_file, b_target_file}
    assert len(files) == 4 and all(f.parent == work / "home" / ".config" / "klaviyo-singer" for f in files)
    assert a_tap_file.read_bytes() == a_tap_bytes  # later authorisations never touched it
    saved = json.loads(a_tap_bytes)
    assert saved["account_id"] == account_a and "lists:write" not in saved["scope"] and "events:read" in saved["scope"]
    assert json.loads(b_target_file.read_text())["account_id"] == account_b

    pipelines = {
        account_a: Pipeline(account_a, config_for(box, a_tap),
                            config_for(box, a_target, list_name="Agency list", wait_for_completion=True)),
        account_b: Pipeline(account_b, config_for(box, b_tap),
                            config_for(box, b_target, list_name="Agency list", wait_for_completion=True)),
    }  # fmt: skip
    catalog = discover(pipelines[account_a].tap, work)

    def tap(account: str) -> set[str]:
        done = run(["tap-klaviyo", "--config", write(work, f"tap-{account}.json", pipelines[account].tap),
                    "--catalog", catalog], work)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        assert CLIENT_SECRET not in done.stderr + done.stdout
        return {json.loads(line)["record"]["id"] for line in done.stdout.splitlines() if '"RECORD"' in line}

    def target(account: str) -> bool:
        config = write(work, f"target-{account}.json", pipelines[account].target)
        done = run(["target-klaviyo", "--config", config], work, stdin=rows(account))
        assert done.returncode == 0, done.stderr[-3000:]
        return True

    def own_ids(account: str) -> set[str]:
        return ids_of(box, account)

    def sequential(account: str, step: t.Callable[[str], t.Any]) -> t.Any:
        """One pipeline alone: every API request it makes must present its own account's token."""
        before = presented(box)
        result = step(account)
        delta = presented(box) - before
        other = account_b if account == account_a else account_a
        figures.setdefault("wrong_account_requests", 0)
        figures["wrong_account_requests"] += delta[other]
        figures.setdefault("own_account_requests", 0)
        figures["own_account_requests"] += delta[account]
        assert delta[other] == 0 and delta[account] > 0, (account, delta)
        return result

    # -- one after the other ------------------------------------------------------------------
    for account in (account_a, account_b):
        ids = sequential(account, tap)
        assert ids and ids <= own_ids(account) and not ids & own_ids(other_of(account, account_a, account_b))
        figures[f"records_read_{account}"] = len(ids)
    for account in (account_a, account_b):
        sequential(account, target)
    expire_access_tokens(box)  # the next runs refresh with the rotated tokens in their own files
    for account in (account_b, account_a):
        ids = sequential(account, tap)
        assert ids <= own_ids(account) and not ids & own_ids(other_of(account, account_a, account_b))
        assert any(box.accounts[account].new_lists.get(i) for i in ids)  # the list its own target made

    # -- interleaved: all four at once, after the access tokens expired: each refreshes its own ----
    expire_access_tokens(box)
    results: dict[str, t.Any] = {}
    threads = [
        threading.Thread(target=lambda a=account, s=step: results.__setitem__(f"{s.__name__}-{a}", s(a)))
        for account in (account_a, account_b) for step in (tap, target)
    ]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert len(results) == 4, results.keys()  # every pipeline finished (a failed thread leaves no result)
    for account in (account_a, account_b):
        ids = results[f"tap-{account}"]
        assert ids and ids <= own_ids(account)
        assert not ids & own_ids(other_of(account, account_a, account_b))

    # -- what each account holds: its own list and profiles, none of the other's ---------------
    for account in (account_a, account_b):
        store, other = box.accounts[account], other_of(account, account_a, account_b)
        (list_id,) = [i for i, rec in store.new_lists.items() if rec["attributes"]["name"] == "Agency list"]
        mine = [store.find_profile("email", f"{account}.{i}@agency.example") for i in range(5)]
        assert all(p is not None and store.is_member(list_id, p["id"]) for p in mine)
        assert store.find_profile("email", f"{other}.0@agency.example") is None
        figures[f"members_written_{account}"] = store.member_count(list_id)
    for token_file, account in ((a_tap_file, account_a), (a_target_file, account_a),
                                (b_tap_file, account_b), (b_target_file, account_b)):  # fmt: skip
        assert json.loads(token_file.read_text())["account_id"] == account
    assert json.loads(a_tap_file.read_text())["scope"] == saved["scope"]  # the tap kept its read scopes
    print(f"\ntwo-account figures: {json.dumps(figures)}")  # the figures the report quotes
    assert figures["wrong_account_requests"] == 0


def ids_of(box: Sandbox, account: str) -> set[str]:
    """Every list and event id of one account (the streams the tests read)."""
    store = box.accounts[account]
    ds = store.ds
    return ({ds.list_ids.id(j) for j in range(ds.n_lists)} | set(store.new_lists)
            | {ds.event_ids.id(i) for i in range(ds.n_events)} | {e["id"] for e in store.new_events})  # fmt: skip


def other_of(account: str, first: str, second: str) -> str:
    return second if account == first else first


def expire_access_tokens(box: Sandbox) -> None:
    with box.oauth.lock:
        for info in box.oauth.access.values():
            info["expires"] = 0


def discover(config: dict, work: Path) -> str:
    done = run(["tap-klaviyo", "--config", write(work, "discover.json", config), "--discover"], work)
    assert done.returncode == 0, done.stderr[-3000:]
    catalog = json.loads(done.stdout)
    for entry in catalog["streams"]:
        for metadata in entry["metadata"]:
            if metadata["breadcrumb"] == []:
                metadata["metadata"]["selected"] = entry["tap_stream_id"] in STREAMS
    return write(work, "catalog.json", catalog)


# -- the ways tokens could still cross, each refused in one line naming token_file ---------------


@pytest.fixture
def home(tmp_path) -> Path:
    """A fresh HOME and working folder for one test."""
    (tmp_path / "home").mkdir()
    (tmp_path / "work").mkdir()
    return tmp_path


def tap_lists(box: Sandbox, config: dict, work: Path) -> subprocess.CompletedProcess:
    """A sync of the lists and events streams (the catalog is discovered once, with the sandbox's key)."""
    path = write(work, "tap.json", config)
    catalog = work / "work" / "catalog.json"
    if not _CATALOG:
        _CATALOG.append(Path(discover({"api_key": box.api_key, "base_url": box.base_url}, work)).read_text())
    catalog.write_text(_CATALOG[0])
    return run(["tap-klaviyo", "--config", path, "--catalog", str(catalog)], work)


_CATALOG: list[str] = []


def error_line(done: subprocess.CompletedProcess) -> str:
    """The one line the failure is reported with (the SDK's "while syncing" note aside)."""
    errors = [
        line
        for line in done.stderr.splitlines()
        if ("ERROR" in line and "An unhandled error occurred" not in line) or line.startswith("klaviyo-oauth:")
    ]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert CLIENT_SECRET not in done.stderr + done.stdout
    return errors[0]


def test_authorize_for_another_account_never_replaces_the_first_ones_tokens(agency, home):
    box, _ = agency
    account_a, account_b = list(box.accounts)
    token_file = home / "shared.json"
    authorize(box, account_a, "tap", home, "--token-file", str(token_file))
    before = token_file.read_bytes()
    issued_before = set(box.oauth.refresh)

    _, _, said = authorize(box, account_b, "tap", home, "--token-file", str(token_file), expect=1)

    assert f"holds the tokens of account {account_a}, and the browser approved account {account_b}" in said
    assert said.count("\n") == 1 and token_file.read_bytes() == before
    refused = [box.oauth.refresh[t] for t in set(box.oauth.refresh) - issued_before]
    assert refused and not any(info["active"] for info in refused)  # the unused grant was revoked


def test_authorizing_the_target_never_leaves_the_tap_with_write_scopes(agency, home):
    box, _ = agency
    account_a = next(iter(box.accounts))
    token_file = home / "tap.json"
    authorize(box, account_a, "tap", home, "--token-file", str(token_file))
    before = token_file.read_bytes()

    _, _, said = authorize(box, account_a, "target", home, "--token-file", str(token_file), expect=1)

    assert "holds tokens with scopes these lack (campaigns:read events:read" in said
    assert token_file.read_bytes() == before
    authorize(box, account_a, "both", home, "--token-file", str(token_file))  # a superset may replace them
    assert "events:read" in json.loads(token_file.read_text())["scope"]


def test_a_token_file_shared_by_two_accounts_is_refused(agency, home):
    box, _ = agency
    account_a, account_b = list(box.accounts)
    a_refresh, _, _ = authorize(box, account_a, "tap", home)
    b_refresh, _, _ = authorize(box, account_b, "tap", home)
    shared = str(home / "shared.json")
    assert tap_lists(box, config_for(box, a_refresh, token_file=shared), home).returncode == 0
    before, served = Path(shared).read_bytes(), presented(box)

    done = tap_lists(box, config_for(box, b_refresh, token_file=shared), home)

    assert done.returncode == 1
    assert f"Setting token_file {shared} holds the OAuth tokens of another refresh token (account {account_a})" in (
        error_line(done)
    )
    assert Path(shared).read_bytes() == before and presented(box) == served  # not one request was made


def test_a_config_for_another_host_never_gets_these_tokens(agency, home):
    box, _ = agency
    account_a = next(iter(box.accounts))
    refresh_token, token_file, _ = authorize(box, account_a, "tap", home)
    config = config_for(box, refresh_token, token_file=str(token_file))
    assert tap_lists(box, config, home).returncode == 0
    with Sandbox(SandboxConfig(seed=21, scale=0.01, rate_limit_scale=0.0, client_id=CLIENT_ID,
                               client_secret=CLIENT_SECRET)) as other:  # fmt: skip
        done = tap_lists(other, {**config, "base_url": other.base_url}, home)
        assert done.returncode == 1
        assert f"holds OAuth tokens for another API host ({box.base_url}) (account {account_a})" in error_line(done)
        moved = {**config, "base_url": other.base_url, "token_url": f"{other.base_url}/oauth/token"}
        done = tap_lists(other, moved, home)
        assert done.returncode == 1
        assert f"holds OAuth tokens from another token endpoint ({box.base_url}/oauth/token)" in error_line(done)
        # without token_file, the same refresh token at another host has a file of its own
        done = tap_lists(other, {**moved, "token_file": ""}, home)
        assert done.returncode == 1 and "invalid_grant" in error_line(done)  # the other host never issued it
        assert other.oauth.access == {}  # and it never saw one of the first host's tokens
        assert all(e["account"] is None for e in other.store.request_log)


def test_revoke_ends_the_grant_at_klaviyo_and_removes_the_local_tokens(agency, home):
    box, _ = agency
    account_a = next(iter(box.accounts))
    refresh_token, token_file, _ = authorize(box, account_a, "tap", home)
    config = config_for(box, refresh_token)
    assert tap_lists(box, config, home).returncode == 0  # rotates the refresh token into the file
    current = json.loads(token_file.read_text())

    done = run(["klaviyo-oauth", "revoke", "--config", write(home, "c.json", config)], home)

    assert done.returncode == 0, done.stderr
    assert f"Revoked the OAuth grant of account {account_a} at Klaviyo; removed {token_file}" in done.stdout
    assert not token_file.exists() and not Path(f"{token_file}.lock").exists()
    assert not box.oauth.refresh[current["refresh_token"]]["active"]
    assert current["access_token"] not in box.oauth.access
    again = tap_lists(box, config, home)
    assert again.returncode == 1 and "invalid_grant" in error_line(again)


def test_an_access_token_alone_runs_a_sync_and_its_expiry_is_one_line(agency, home):
    box, _ = agency
    account_b = list(box.accounts)[1]
    token = "canary-orchestrated-access-XYZ"
    with box.oauth.lock:
        box.oauth.access[token] = {"client_id": CLIENT_ID, "scope": "lists:read", "account": account_b,
                                   "grant": None, "expires": box.oauth.clock() + 3600}  # fmt: skip
    config = {"access_token": token, "base_url": box.base_url}

    done = tap_lists(box, config, home)

    assert done.returncode == 0, done.stderr[-3000:]
    ids = {json.loads(line)["record"]["id"] for line in done.stdout.splitlines() if '"RECORD"' in line}
    assert ids and ids <= ids_of(box, account_b) and not ids & ids_of(box, next(iter(box.accounts)))
    assert not (home / "home" / ".config").exists()  # nothing to keep: no token file
    box.oauth.access[token]["expires"] = 0
    expired = tap_lists(box, config, home)
    assert expired.returncode == 1
    assert "Klaviyo rejected the access_token (access tokens expire after about an hour" in error_line(expired)
    assert token not in expired.stderr


@pytest.mark.parametrize("executable", ["tap-klaviyo", "target-klaviyo"])
@pytest.mark.parametrize("setting", ["client_secret", "access_token"])
def test_a_config_error_never_echoes_a_secret_value(home, executable, setting):
    config = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": "canary-r-XYZ",
              "list_name": "x", setting: 987654321}  # fmt: skip
    done = run([executable, "--config", write(home, "c.json", config)], home, stdin="")
    assert done.returncode == 1
    line = error_line(done)
    assert f"Setting {setting} must be text" in line and "987654321" not in done.stderr + done.stdout
