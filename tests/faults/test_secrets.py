"""Canary secrets never leave the config and the token file.

The tap and the target run with canary values for every secret (private key, OAuth client
secret, refresh and access tokens) through success, the error paths of the other fault
tests (a revoked key or grant, Klaviyo faults and retries, bad records, an unknown list,
a kill, broken files, bad settings), ``--about``, ``--discover`` and ``--test``, with DEBUG
logging. A canary, a distinctive piece of one, or the base64 HTTP Basic form of the client
secret must not appear in stdout, stderr, the state, or any file the plugins wrote. The
token files are the designated secret store: they are excluded by exact path, and must be
owner-only (0600). Tokens the sandbox rotates in are canaries too. (The full bad-config
matrix in test_bad_config.py runs on canaries as well, and checks the same.)
"""

from __future__ import annotations

import json
import stat
import typing as t
from pathlib import Path

import pytest

from klaviyo_sandbox.oauth import DEFAULT_SCOPE
from tests.faults.harness import (
    CANARY_CLIENT_ID as CLIENT_ID,
    CANARY_CLIENT_SECRET as CLIENT_SECRET,
    CANARY_KEY as API_KEY,
    CANARY_WRONG_KEY as WRONG_KEY,
    FIGURES,
    TAP,
    TARGET,
    KillableRun,
    Run,
    canaries,
    canary_access_token as access_token,
    canary_refresh_token as refresh_token,
    in_parallel,
    leaks_in,
    plugin_env,
    run_plugin,
    sandbox,
    write_json,
)

pytestmark = pytest.mark.slow  # a module fixture runs for seconds (pyproject: markers)

INPUT = (
    "\n".join(
        json.dumps(m)
        for m in [
            {
                "type": "SCHEMA",
                "stream": "people",
                "key_properties": [],
                "schema": {
                    "properties": {"email": {"type": ["string", "null"]}, "phone_number": {"type": ["string", "null"]}}
                },
            },
            *(
                {"type": "RECORD", "stream": "people", "record": {"email": f"canary.{i}@example.com"}}
                for i in range(30)
            ),
            {"type": "RECORD", "stream": "people", "record": {"email": "bad", "phone_number": "12"}},
            {"type": "STATE", "value": {"people": "done"}},
        ]
    )
    + "\n"
)


class Scenario(t.NamedTuple):
    name: str
    executable: str
    args: tuple
    config: dict
    stdin: str | None = None
    kill_after_requests: int | None = None
    raw_config: bytes | None = None  # a broken config file, written as is
    expect: int = 1  # exit code: 0 success, 1 a one-line error (killed runs are not checked)


def _oauth(box, n: int, workdir: Path, *, seed_refresh: bool = True, seed_access: bool = True) -> dict:
    if seed_refresh:
        box.oauth.refresh[refresh_token(n)] = {"client_id": CLIENT_ID, "scope": DEFAULT_SCOPE, "active": True}
    if seed_access:
        box.oauth.access[access_token(n)] = {
            "client_id": CLIENT_ID,
            "scope": DEFAULT_SCOPE,
            "expires": box.oauth.clock() + 3600,
        }
    return {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": refresh_token(n),
        "access_token": access_token(n),
        "token_url": f"{box.base_url}/oauth/token",
        "base_url": box.base_url,
        "token_file": str(workdir / f"oauth{n}" / "tokens.json"),
        "request_timeout": 5,
    }


def scenarios(good, faulty, workdir: Path) -> list[Scenario]:
    key = {"api_key": API_KEY, "base_url": good.base_url, "request_timeout": 5}
    key_faulty = {**key, "base_url": faulty.base_url, "request_timeout": 2.5}
    target = {"list_name": "Canary list"}
    out = [
        Scenario("tap about", TAP, ("--about", "--format=json"), key, expect=0),
        Scenario("tap about markdown", TAP, ("--about", "--format=markdown"), key, expect=0),
        Scenario("target about", TARGET, ("--about", "--format=json"), {**key, **target}, expect=0),
        Scenario("tap discover", TAP, ("--discover",), key, expect=0),
        Scenario("tap test", TAP, ("--test",), key, expect=0),
        Scenario("tap sync", TAP, (), key, expect=0),
        Scenario("tap sync through faults", TAP, (), key_faulty, expect=0),
        Scenario("tap killed mid-sync", TAP, (), key, kill_after_requests=12),
        Scenario("tap revoked key", TAP, ("--test",), {**key, "api_key": WRONG_KEY}),
        Scenario("tap revoked key sync", TAP, (), {**key, "api_key": WRONG_KEY}),
        Scenario(
            "target add with bad rows", TARGET, (), {**key, **target, "wait_for_completion": True}, INPUT, expect=0
        ),
        Scenario("target through faults", TARGET, (), {**key_faulty, **target}, INPUT, expect=0),
        Scenario("target remove", TARGET, (), {**key, **target, "operation": "remove"}, INPUT, expect=0),
        Scenario("target unknown list", TARGET, (), {**key, "list_id": "NoSuchList"}, INPUT),
        Scenario("target revoked key", TARGET, (), {**key, **target, "api_key": WRONG_KEY}, INPUT),
        Scenario("broken config file", TAP, (), {}, raw_config=f'{{"api_key": "{API_KEY}" "x"}}'.encode()),
        Scenario(
            "broken config file target",
            TARGET,
            (),
            {},
            INPUT,
            raw_config=f'{{"client_secret": "{CLIENT_SECRET}",'.encode(),
        ),
    ]
    bad_configs = {  # the whole matrix runs on canaries in test_bad_config.py; these are the riskiest
        "key with a newline inside": {"api_key": API_KEY[:12] + "\n" + API_KEY[12:]},
        "key with the header prefix": {"api_key": f"Klaviyo-API-Key {API_KEY}"},
        "key and OAuth": {
            "api_key": API_KEY,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "refresh_token": refresh_token(0),
            "access_token": access_token(0),
        },
        "OAuth over plain http": {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "refresh_token": refresh_token(0),
            "token_url": "http://klaviyo.example/t",
        },
    }
    for name, config in bad_configs.items():
        config = {"base_url": good.base_url, "request_timeout": 5, **config}
        out.append(Scenario(f"tap bad config: {name}", TAP, (), config))
        out.append(Scenario(f"target bad config: {name}", TARGET, (), {**config, **target}, INPUT))
    padded = {**key, "api_key": f"  {API_KEY}\n"}  # trimmed, then valid
    out.append(Scenario("tap bad date, padded key", TAP, (), {**padded, "end_date": "soon"}))
    out.append(Scenario("target padded key", TARGET, (), {**padded, **target}, INPUT, expect=0))
    n = 0

    def oauth(name, executable, args, *, box=good, stdin=None, expect=0, **kw):
        nonlocal n
        n += 1
        out.append(Scenario(name, executable, args, _oauth(box, n, workdir, **kw), stdin, expect=expect))

    oauth("tap OAuth test", TAP, ("--test",))
    oauth("tap OAuth sync, expired access token", TAP, (), seed_access=False)
    oauth("tap OAuth discover", TAP, ("--discover",))
    oauth("tap OAuth through faults", TAP, (), box=faulty, seed_access=False)
    oauth("tap OAuth revoked grant", TAP, ("--test",), seed_refresh=False, seed_access=False, expect=1)
    oauth("target OAuth add", TARGET, (), stdin=INPUT, seed_access=False)
    oauth("target OAuth revoked grant", TARGET, (), stdin=INPUT, seed_refresh=False, seed_access=False, expect=1)
    for scenario in out[-7:]:
        if scenario.executable == TARGET:
            scenario.config.update(target)
    return out


def _run(scenario: Scenario, box, workdir: Path) -> Run | KillableRun:
    workdir.mkdir(parents=True, exist_ok=True)
    env = plugin_env(workdir, LOGLEVEL="DEBUG")
    if scenario.kill_after_requests is not None:
        before = len(box.store.request_log)
        run = KillableRun(
            scenario.config,
            workdir,
            None,
            None,
            lambda: len(box.store.request_log) - before >= scenario.kill_after_requests,
        ).run()
        return Run(run.code or 0, "\n".join(json.dumps(m) for m in run.messages), run.stderr, 0.0, run.killed)
    config_path = workdir / "config.json"
    if scenario.raw_config is not None:
        config_path.write_bytes(scenario.raw_config)
    else:
        write_json(config_path, scenario.config)
    return run_plugin(
        scenario.executable,
        ["--config", str(config_path), *scenario.args],
        workdir,
        stdin=scenario.stdin,
        env=env,
        timeout=180,
    )


@pytest.fixture(scope="module")
def leak_check(faults_workdir):
    root = faults_workdir / "secrets"
    with (
        sandbox(71, api_key=API_KEY, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as good,
        sandbox(
            71,
            api_key=API_KEY,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            fault_rate=0.12,
            faults="500,503,reset,html,429",
        ) as faulty,
    ):
        plan = scenarios(good, faulty, root)
        jobs = {}
        for index, scenario in enumerate(plan):
            box = faulty if "fault" in scenario.name else good
            jobs[scenario.name] = lambda s=scenario, b=box, i=index: _run(s, b, root / f"s{i:02d}")
        results = in_parallel(jobs, workers=6)
        issued = {*good.oauth.access, *good.oauth.refresh, *faulty.oauth.access, *faulty.oauth.refresh}
        FIGURES.add_faults({k: v for k, v in faulty.store.counters.items() if k.startswith("fault:")})
    FIGURES.add("secret_scenarios", len(plan))
    return plan, results, issued, root


def test_the_scenarios_ran_their_course(leak_check):
    plan, results, issued, _ = leak_check
    for scenario in plan:
        run = results[scenario.name]
        if scenario.kill_after_requests is None:
            assert run.code == scenario.expect, (scenario.name, run.code, run.stderr[-2000:])
            assert "Traceback" not in run.stderr, scenario.name
        if scenario.expect == 1 and scenario.kill_after_requests is None:
            assert len(run.error_lines) == 1, (scenario.name, run.error_lines)
    assert len(issued) > 10  # OAuth refreshes happened: their tokens are canaries too
    assert any("Refreshed the OAuth access token" in results[s.name].stderr for s in plan)
    assert "Re-authorise with: klaviyo-oauth authorize" in results["tap OAuth revoked grant"].stderr


def test_no_canary_in_stdout_stderr_or_state(leak_check):
    plan, results, issued, _ = leak_check
    secrets = canaries(issued)
    leaks = []
    for scenario in plan:
        run = results[scenario.name]
        for stream_name, text in (("stdout", run.stdout), ("stderr", run.stderr)):
            leaks += [f"{scenario.name} {stream_name}: {label}" for label in leaks_in(text, secrets)]
    assert not leaks, "\n".join(leaks)


def test_no_canary_in_any_file_the_plugins_wrote_and_token_files_are_owner_only(leak_check):
    plan, _, issued, root = leak_check
    secrets = canaries(issued)
    token_files = {Path(s.config["token_file"]) for s in plan if s.config.get("token_file")}
    inputs = {"config.json", "tap-klaviyo-config.json", "target-klaviyo-config.json"}
    leaks, scanned, stored, inputs_with_secrets = [], 0, 0, 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path in token_files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
            assert b"refresh_token" in path.read_bytes()
            stored += 1
            continue
        if path.name in inputs and path.parent.parent == root:
            inputs_with_secrets += API_KEY.encode() in path.read_bytes()  # the scan would see them
            continue  # what the test gave the plugin
        scanned += 1
        leaks += [f"{path.relative_to(root)}: {label}" for label in leaks_in(path.read_bytes(), secrets)]
    assert not leaks, "\n".join(leaks)
    assert stored >= 3 and scanned >= 10 and inputs_with_secrets >= 10
    FIGURES.add("secret_files_scanned", scanned)
