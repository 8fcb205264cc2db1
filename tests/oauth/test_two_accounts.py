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


def authorize(box: Sandbox, account: str, which: str, work: Path) -> tuple[str, Path, str]:
    """``klaviyo-oauth authorize --headless`` with the browser signed in to ``account``."""
    env = {**os.environ, "HOME": str(work / "home"), "XDG_CONFIG_HOME": "", "KLAVIYO_CLIENT_SECRET": CLIENT_SECRET}
    process = subprocess.Popen(
        [str(BIN / "klaviyo-oauth"), "authorize", "--headless", "--for", which, "--print-refresh-token",
         "--client-id", CLIENT_ID, "--token-url", f"{box.base_url}/oauth/token",
         "--authorize-url", f"{box.base_url}/oauth/authorize", "--base-url", box.base_url],
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
    assert process.returncode == 0, err
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
    config = SandboxConfig(seed=21, scale=0.01, rate_limit_scale=0.0, job_seconds=0.0, accounts=2,
                           client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    with Sandbox(config) as box:
        yield box, work


def presented(box: Sandbox) -> Counter:
    """API requests so far, by the account of the credential presented (served or refused)."""
    return Counter(e["account"] for store in box.accounts.values() for e in store.request_log if e["account"])


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

    def target(account: str) -> None:
        config = write(work, f"target-{account}.json", pipelines[account].target)
        done = run(["target-klaviyo", "--config", config], work, stdin=rows(account))
        assert done.returncode == 0, done.stderr[-3000:]

    def own_ids(account: str) -> set[str]:
        store = box.accounts[account]
        ds = store.ds
        return ({ds.list_ids.id(j) for j in range(ds.n_lists)} | set(store.new_lists)
                | {ds.event_ids.id(i) for i in range(ds.n_events)} | {e["id"] for e in store.new_events})  # fmt: skip

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
    print(f"\ntwo-account figures: {json.dumps(figures)}")  # noqa: T201 - the figures the report quotes
    assert figures["wrong_account_requests"] == 0


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
