"""Every bad setting, through both CLIs: one ERROR line naming the setting and the fix, exit 1.

No traceback, nothing on stdout (a pipeline must not read half a run), and nothing sent
before the config was checked. Cases that need Klaviyo's answer (a revoked key, a list
that does not exist) run against the sandbox. The secrets in these configs are canaries:
no error message may echo them (see also test_secrets.py). The tap gets every case; the
target, whose connection checks are the same code, the cases the issue lists plus its own.
"""

from __future__ import annotations

import pytest

from tests.faults.harness import (
    CANARY_CLIENT_ID,
    CANARY_CLIENT_SECRET,
    CANARY_KEY,
    CANARY_WRONG_KEY,
    FIGURES,
    TAP,
    TARGET,
    canaries,
    canary_access_token,
    canary_refresh_token,
    in_parallel,
    leaks_in,
    run_plugin,
    sandbox,
    write_json,
)

KEY = CANARY_KEY
OAUTH = {
    "client_id": CANARY_CLIENT_ID,
    "client_secret": CANARY_CLIENT_SECRET,
    "refresh_token": canary_refresh_token(1),
    "access_token": canary_access_token(1),
}
INPUT = (
    '{"type":"SCHEMA","stream":"people","schema":{"properties":{"email":{"type":"string"}}},"key_properties":[]}\n'
    '{"type":"RECORD","stream":"people","record":{"email":"ann@example.com"}}\n'
)

pytestmark = pytest.mark.slow  # a module fixture runs for seconds (pyproject: markers)

# (config, the setting the message names, how the message says to fix it). Shared by tap and target.
CONNECTION = {
    "api_key missing": ({}, "api_key", "set it to a Klaviyo private API key"),
    "api_key empty": ({"api_key": ""}, "api_key", "set it to a Klaviyo private API key"),
    "api_key only whitespace": ({"api_key": " \t "}, "api_key", "set it to a Klaviyo private API key"),
    "api_key only a newline": ({"api_key": "\n"}, "api_key", "set it to a Klaviyo private API key"),
    "api_key with a space inside": ({"api_key": KEY[:12] + " " + KEY[12:]}, "api_key", "paste the key again"),
    "api_key with a newline inside": ({"api_key": KEY[:12] + "\n" + KEY[12:]}, "api_key", "paste the key again"),
    "api_key with a tab inside": ({"api_key": KEY[:12] + "\t" + KEY[12:]}, "api_key", "paste the key again"),
    "api_key wrong prefix": ({"api_key": "sk_" + KEY[3:]}, "api_key", "starts with pk_"),
    "api_key a public site key": ({"api_key": "AbC123"}, "api_key", "starts with pk_"),
    "api_key with the header prefix": ({"api_key": f"Klaviyo-API-Key {KEY}"}, "api_key", "starts with pk_"),
    "api_key and OAuth both set": ({"api_key": KEY, **OAUTH}, "api_key", "use one way to authenticate"),
    "api_key and a refresh_token": (
        {"api_key": KEY, "refresh_token": canary_refresh_token(2)},
        "refresh_token",
        "remove api_key",
    ),
    "OAuth without client_secret": ({**OAUTH, "client_secret": ""}, "client_secret", "klaviyo-oauth authorize"),
    "OAuth without refresh_token": ({**OAUTH, "refresh_token": None}, "refresh_token", "klaviyo-oauth authorize"),
    "OAuth secret with whitespace": (
        {**OAUTH, "client_secret": CANARY_CLIENT_SECRET + " x"},
        "client_secret",
        "paste the value again",
    ),
    "token_url over plain http": (
        {**OAUTH, "token_url": "http://klaviyo.example/oauth/token"},
        "token_url",
        "must use https",
    ),
    "base_url not a URL": ({"api_key": KEY, "base_url": "a.klaviyo.com"}, "base_url", "http(s) URL such as"),
    "revision not a date": ({"api_key": KEY, "revision": "latest"}, "revision", "YYYY-MM-DD"),
    "rate_limit_share zero": ({"api_key": KEY, "rate_limit_share": 0}, "rate_limit_share", "above 0 and at most 1"),
    "rate_limit_share above 1": (
        {"api_key": KEY, "rate_limit_share": 1.5},
        "rate_limit_share",
        "above 0 and at most 1",
    ),
    "rate_limit_share text": ({"api_key": KEY, "rate_limit_share": "half"}, "rate_limit_share", "not of type 'number'"),
    "request_timeout zero": ({"api_key": KEY, "request_timeout": 0}, "request_timeout", "number of seconds above 0"),
    "request_timeout text": ({"api_key": KEY, "request_timeout": "2 min"}, "request_timeout", "not of type 'number'"),
    # Unknown settings are errors (klaviyo_core/setting_names.py), with the closest known setting.
    "setting misspelled": (
        {"api_key": KEY, "rate_limit_shar": 0.5},
        "rate_limit_shar (did you mean rate_limit_share?)",
        "fix or remove it",
    ),
    "api_key misspelled": ({"api_ky": KEY}, "api_ky (did you mean api_key?)", "fix or remove it"),
    "two unknown settings": (
        {"api_key": KEY, "Base_URL": "x", "colour": 1},
        "Base_URL (did you mean base_url?), colour",
        "fix or remove them",
    ),
}
TARGET_CONNECTION = (
    "api_key missing",
    "api_key empty",
    "api_key only whitespace",
    "api_key with a space inside",
    "api_key with a newline inside",
    "api_key wrong prefix",
    "api_key a public site key",
    "api_key and OAuth both set",
    "OAuth without refresh_token",
    "base_url not a URL",
    "request_timeout zero",
    "setting misspelled",
    "api_key misspelled",
    "two unknown settings",
)
TAP_ONLY = {
    "start_date not a date": ({"api_key": KEY, "start_date": "last tuesday"}, "start_date", "use ISO 8601"),
    "start_date a number": ({"api_key": KEY, "start_date": 20240101}, "start_date", "not of type 'string'"),
    "end_date impossible": ({"api_key": KEY, "end_date": "2024-13-45"}, "end_date", "use ISO 8601"),
    "end_date before start_date": (
        {"api_key": KEY, "start_date": "2024-02-01", "end_date": "2024-01-01"},
        "end_date",
        "move it later",
    ),
    "end_date equal to start_date": (
        {"api_key": KEY, "start_date": "2024-02-01", "end_date": "2024-02-01T00:00:00Z"},
        "end_date",
        "move it later",
    ),
    "row_scan_depth negative": ({"api_key": KEY, "row_scan_depth": -1}, "row_scan_depth", "0 or more"),
    "report budget over Klaviyo's daily limit": (
        {"api_key": KEY, "report_daily_request_budget": 500},
        "report_daily_request_budget",
        "from 1 to 225",
    ),
    "report_interval unknown": ({"api_key": KEY, "report_interval": "yearly"}, "report_interval", "(not 'yearly')"),
    "metric_aggregates_by unknown dimension": (
        {"api_key": KEY, "metric_aggregates_by": ["Campaign Name", "Nope"]},
        "metric_aggregates_by",
        "(not 'Nope')",
    ),
    "include_predictive_analytics text": (
        {"api_key": KEY, "include_predictive_analytics": "yes"},
        "include_predictive_analytics",
        "not of type 'boolean'",
    ),
    "start_date misspelled": (
        {"api_key": KEY, "start_dat": "2024-01-01"},
        "start_dat (did you mean start_date?)",
        "fix or remove it",
    ),
    "a target setting": ({"api_key": KEY, "list_name": "VIP"}, "Unknown setting list_name", "tap-klaviyo --about"),
    "batch_config (not offered)": (
        {"api_key": KEY, "batch_config": {}},
        "Unknown setting batch_config",
        "fix or remove it",
    ),
}
TARGET_ONLY = {
    "no list": ({"api_key": KEY}, "list_id and list_name", "Set exactly one"),
    "list_id and list_name both": (
        {"api_key": KEY, "list_id": "X", "list_name": "Y"},
        "list_id and list_name",
        "Set exactly one",
    ),
    "operation unknown": (
        {"api_key": KEY, "list_id": "X", "operation": "delete"},
        "operation",
        "one of add, remove, upsert, subscribe, unsubscribe, suppress, unsuppress, track (exactly, lower case) "
        "(not 'delete')",
    ),
    "operation wrong case": (
        {"api_key": KEY, "list_id": "X", "operation": "Add"},
        "operation",
        "(exactly, lower case) (not 'Add')",
    ),
    "wait_timeout_seconds too low": (
        {"api_key": KEY, "list_id": "X", "wait_timeout_seconds": 10},
        "wait_timeout_seconds",
        "minimum of 300",
    ),
    "rejects_file in a missing folder": (
        {"api_key": KEY, "list_id": "X", "rejects_file": "no/such/dir/r.jsonl"},
        "rejects_file",
        "create it or choose another path",
    ),
    "list_name misspelled": (
        {"api_key": KEY, "list_nme": "VIP"},
        "list_nme (did you mean list_name?)",
        "fix or remove it",
    ),
    "load_method (means nothing here)": (
        {"api_key": KEY, "list_id": "X", "load_method": "upsert"},
        "Unknown setting load_method",
        "target-klaviyo --about",
    ),
}
# Need the sandbox: Klaviyo's own answer is what is wrong. {base}/{key} are filled in.
LIVE_TAP = {
    "api_key revoked (401)": ({"api_key": CANARY_WRONG_KEY}, "api_key", "not revoked"),
}
LIVE_TARGET = {
    "api_key revoked (401)": ({"api_key": CANARY_WRONG_KEY, "list_id": "X"}, "api_key", "not revoked"),
    "list_id unknown (404)": ({"list_id": "NoSuchList"}, "list_id", "Copy the id from the list's URL"),
    "list_name unknown, create off": (
        {"list_name": "No such list", "create_list_if_missing": False},
        "list_name",
        "turn create_list_if_missing on",
    ),
}
# Broken files: (file content or None for "no such file", option, what the message names, fix)
FILES = {
    "config not JSON": (f'{{"api_key": "{KEY}",'.encode(), "--config", "Config file", "is not valid JSON"),
    "config missing": (None, "--config", "Config file", "check the --config path"),
    "config a list": ("[]", "--config", "Config file", "must hold a JSON object"),
    "config not UTF-8": (
        b'{"api_key": "pk_\xe9", "client_secret": "' + CANARY_CLIENT_SECRET.encode() + b'"}',
        "--config",
        "Config file",
        "save it as UTF-8",
    ),
    "state not JSON": ('{"bookmarks": {', "--state", "State file", "leave out --state"),
    "catalog not JSON": ("{", "--catalog", "Catalog file", "run --discover"),
}
TAP_STATES = {
    "state bookmarks a list": ({"bookmarks": []}, "bookmarks", "leave out --state"),
    "state bookmark not a date": (
        {"bookmarks": {"events": {"replication_key": "datetime", "replication_key_value": "yesterday"}}},
        "replication_key_value of stream 'events'",
        "delete that stream's bookmark",
    ),
    "state bookmark a number": (
        {"bookmarks": {"profiles": {"replication_key_value": 12}}},
        "replication_key_value of stream 'profiles'",
        "delete that stream's bookmark",
    ),
}


def _case_jobs(workdir, box) -> dict:
    jobs = {}

    def config_job(executable: str, name: str, config: dict, extra: tuple = ()):
        folder = workdir / f"{executable.rsplit('/', 1)[-1]}-{name.replace(' ', '_')}"

        def job():
            folder.mkdir(parents=True, exist_ok=True)
            path = write_json(folder / "config.json", config)
            return run_plugin(
                executable,
                ["--config", str(path), *extra],
                folder,
                stdin=INPUT if executable == TARGET else None,
                timeout=120,
            )

        return job

    for name, (config, *_) in {**CONNECTION, **TAP_ONLY}.items():
        jobs[("tap", name)] = config_job(TAP, name, config)
    for name, (config, *_) in {**{k: CONNECTION[k] for k in TARGET_CONNECTION}, **TARGET_ONLY}.items():
        target_config = config if name in TARGET_ONLY else {"list_id": "X", **config}
        jobs[("target", name)] = config_job(TARGET, name, target_config)
    live = {"base_url": box.base_url, "request_timeout": 5}
    for name, (config, *_) in LIVE_TAP.items():
        jobs[("tap", name)] = config_job(TAP, name, {**live, **config})
        jobs[("tap --test", name)] = config_job(TAP, f"test-{name}", {**live, **config}, ("--test",))
    for name, (config, *_) in LIVE_TARGET.items():
        jobs[("target", name)] = config_job(TARGET, name, {"api_key": box.api_key, **live, **config})
    for name, (state, *_) in TAP_STATES.items():
        folder = workdir / f"tap-{name.replace(' ', '_')}"

        def state_job(folder=folder, state=state):
            folder.mkdir(parents=True, exist_ok=True)
            config = write_json(folder / "config.json", {"api_key": box.api_key, **live})
            return run_plugin(
                TAP, ["--config", str(config), "--state", str(write_json(folder / "s.json", state))], folder
            )

        jobs[("tap", name)] = state_job
    for name, (content, option, *_) in FILES.items():
        for executable in (TAP, TARGET):
            if option != "--config" and executable == TARGET:
                continue
            folder = workdir / f"{executable.rsplit('/', 1)[-1]}-{name.replace(' ', '_')}"

            def file_job(folder=folder, content=content, option=option, executable=executable):
                folder.mkdir(parents=True, exist_ok=True)
                args = ["--config", str(write_json(folder / "good.json", {"api_key": box.api_key, **live}))]
                broken = folder / "broken.json"
                if content is not None:
                    broken.write_bytes(content if isinstance(content, bytes) else content.encode())
                args = [option, str(broken)] if option == "--config" else [*args, option, str(broken)]
                return run_plugin(executable, args, folder, stdin=INPUT if executable == TARGET else None)

            jobs[(executable.rsplit("/", 1)[-1].split("-")[0], name)] = file_job
    return jobs


@pytest.fixture(scope="module")
def outcomes(faults_workdir):
    with sandbox(41) as box:
        results = in_parallel(_case_jobs(faults_workdir / "bad-config", box), workers=4)
        requests_seen = dict(box.store.counters)
    FIGURES.add("bad_configs_tried", len(results))
    return results, requests_seen


def _expectation(plugin: str, name: str) -> tuple[str, str]:
    tables = [CONNECTION, TAP_ONLY, LIVE_TAP] if plugin.startswith("tap") else [CONNECTION, TARGET_ONLY, LIVE_TARGET]
    for table in [*tables, TAP_STATES]:
        if name in table:
            return table[name][1], table[name][2]
    return FILES[name][2], FILES[name][3]


def test_the_matrix_covers_both_plugins(outcomes):
    results, _ = outcomes
    assert len([k for k in results if k[0].startswith("tap")]) >= 40
    assert len([k for k in results if k[0] == "target"]) >= 20


def test_each_bad_config_is_one_error_line_naming_the_setting_and_the_fix(outcomes):
    results, _ = outcomes
    problems = []
    for (plugin, name), run in sorted(results.items()):
        named, fix = _expectation(plugin, name)
        errors = run.error_lines
        if run.code != 1:
            problems.append(f"{plugin} / {name}: exit {run.code}")
        elif "Traceback" in run.stderr:
            problems.append(f"{plugin} / {name}: traceback\n{run.stderr[-1500:]}")
        elif len(errors) != 1:
            problems.append(f"{plugin} / {name}: {len(errors)} ERROR lines: {errors}")
        elif named not in errors[0] or fix not in errors[0]:
            problems.append(f"{plugin} / {name}: {errors[0]!r} does not name {named!r} and {fix!r}")
        elif plugin.startswith("tap") and run.stdout:
            problems.append(f"{plugin} / {name}: wrote to stdout: {run.stdout[:200]}")
        elif plugin == "target" and run.stdout:
            problems.append(f"{plugin} / {name}: emitted state {run.stdout[:200]}")
    assert not problems, "\n".join(problems)


def test_no_config_error_reaches_klaviyo_before_it_is_reported(outcomes):
    """Only the live cases (a revoked key, an unknown list) and the bad states talk to Klaviyo."""
    _, counters = outcomes
    ops = {k.removeprefix("op:") for k in counters if k.startswith("op:")}
    # and the target's write-scope probes: incomplete bodies Klaviyo refuses (klaviyo_core.scopes)
    probes = {"create_list", "bulk_import_profiles"}
    assert ops <= {"get_accounts", "get_lists", "get_list", "get_events", "get_profiles", *probes}, ops
    assert not counters.get("status:201") and not counters.get("status:202"), counters  # nothing was made


def test_no_error_message_echoes_a_secret(outcomes, faults_workdir):
    results, _ = outcomes
    secrets = canaries()
    leaks = [
        f"{plugin} / {name}: {label}"
        for (plugin, name), run in results.items()
        for label in leaks_in(run.stdout + run.stderr, secrets)
    ]
    assert not leaks, "\n".join(leaks)
    written = [
        path
        for path in (faults_workdir / "bad-config").rglob("*")
        if path.is_file() and path.name not in ("config.json", "good.json", "broken.json")
    ]
    assert not [str(path) for path in written if leaks_in(path.read_bytes(), secrets)]


def test_decimal_settings_from_a_config_file_are_accepted(faults_workdir):
    """The SDK reads a file's decimals as Decimal; 0.5 and 2.5 must not be refused as "not a number"."""
    folder = faults_workdir / "bad-config" / "decimals"
    with sandbox(41) as box:
        config = {"api_key": box.api_key, "base_url": box.base_url, "rate_limit_share": 0.5, "request_timeout": 2.5}
        path = write_json(folder / "config.json", config)
        run = run_plugin(TAP, ["--config", str(path), "--test"], folder)
    assert run.code == 0, run.stderr[-2000:]
    assert "Connected to Klaviyo account" in run.stderr
