"""meltano.yml as the README documents it: custom plugins only, jobs and cron schedules for both
directions, and a real account configured from environment variables alone (the dev environment)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import typing as t
from pathlib import Path

import pytest
import yaml

from tests.e2e.helpers import ROOT, MeltanoProject, pipeline_report

MELTANO_YML = yaml.safe_load((ROOT / "meltano.yml").read_text())
#: Settings every SDK plugin has; meltano.yml may leave them out (Meltano passes them as custom config).
SDK_SETTINGS = {
    "stream_maps",
    "stream_map_config",
    "faker_config",
    "flattening_enabled",
    "flattening_max_depth",
    "flattening_max_key_length",
    "flattening_separator",
    "batch_config",
    "add_record_metadata",
    "load_method",
    "batch_size_rows",
    "validate_records",
}
#: The kind Meltano needs to turn an environment variable's text into the JSON type the plugin expects.
#: Numbers are `string`: Meltano 4.4 cannot pass a `decimal` set from an environment variable (the plugins
#: read "0.5" as 0.5; klaviyo_core/env_config.py).
KINDS = {"integer": "integer", "number": "string", "boolean": "boolean"}


def _plugin(name: str) -> dict:
    return next(p for kind in MELTANO_YML["plugins"].values() for p in kind if p["name"] == name)


def test_every_plugin_is_custom_so_meltano_hub_is_never_needed() -> None:
    plugins = [plugin for kind in MELTANO_YML["plugins"].values() for plugin in kind]

    assert {p["name"] for p in plugins} >= {"tap-klaviyo", "target-klaviyo", "target-duckdb", "tap-jsonl"}
    custom = {p["name"] for p in plugins if "inherit_from" not in p}
    for plugin in plugins:
        assert "variant" not in plugin, plugin["name"]
        if "inherit_from" in plugin:  # another configuration of a custom plugin of this file
            assert plugin["inherit_from"] in custom, plugin["name"]
            continue
        assert plugin.get("namespace") and plugin.get("pip_url") and plugin.get("executable"), plugin["name"]


@pytest.mark.parametrize("name", ["tap-klaviyo", "target-klaviyo"])
def test_meltano_yml_declares_every_connector_setting_with_its_kind(name: str) -> None:
    """Meltano maps only declared settings to <PLUGIN>_<SETTING> variables, and converts by `kind`."""
    about = subprocess.run(
        [str(Path(sys.executable).parent / name), "--about", "--format=json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    properties = json.loads(about.stdout)["settings"]["properties"]
    declared = {setting["name"]: setting for setting in _plugin(name)["settings"]}

    assert set(declared) - SDK_SETTINGS == set(properties) - SDK_SETTINGS, "meltano.yml and --about disagree"
    for setting, spec in declared.items():
        types = set(properties[setting]["type"]) - {"null"}
        expected = {KINDS[t] for t in types if t in KINDS}
        assert {spec.get("kind")} == expected or not expected, f"{name}.{setting}: kind should be {expected}"
        assert bool(spec.get("sensitive")) == bool(properties[setting].get("secret")), f"{name}.{setting}: sensitive"


def test_jobs_and_cron_schedules_for_both_directions(project: MeltanoProject) -> None:
    jobs = json.loads(project.run("job", "list", "--format=json").check().stdout)
    schedules = json.loads(project.run("schedule", "list", "--format=json").check().stdout)["schedules"]["job"]

    assert {job["job_name"]: job["tasks"] for job in jobs["jobs"]} == {
        "klaviyo-to-warehouse": ["tap-klaviyo target-duckdb"],
        "warehouse-to-klaviyo": ["tap-jsonl target-klaviyo"],
        "warehouse-consent-to-klaviyo": ["tap-jsonl--consent target-klaviyo--subscribe"],
        "warehouse-events-to-klaviyo": ["tap-jsonl--orders target-klaviyo--track"],
    }
    assert {s["name"]: (s["job"]["name"], s["cron_interval"]) for s in schedules} == {
        "klaviyo-to-warehouse-hourly": ("klaviyo-to-warehouse", "0 * * * *"),
        "warehouse-to-klaviyo-daily": ("warehouse-to-klaviyo", "30 6 * * *"),
    }


def test_sandbox_environment_points_at_the_sandbox_and_dev_at_klaviyo(project: MeltanoProject) -> None:
    sandbox = _config(project, "tap-klaviyo", "--environment=sandbox")
    dev = _config(project, "tap-klaviyo", TAP_KLAVIYO_API_KEY="pk_real_looking_key")

    assert sandbox["base_url"] == "http://127.0.0.1:8765"
    assert dev["base_url"] == "https://a.klaviyo.com", "the connectors' default, declared in meltano.yml"
    assert dev["api_key"], "TAP_KLAVIYO_API_KEY is the api_key setting"
    assert _config(project, "target-duckdb")["filepath"] == "output/warehouse.duckdb"
    assert _config(project, "target-duckdb", "--environment=sandbox")["filepath"] == "output/sandbox.duckdb"


def test_a_real_account_needs_only_environment_variables(project: MeltanoProject, klaviyo: t.Any, tmp_path) -> None:
    """The dev environment (no --environment) with the documented variables; the sandbox stands in for
    Klaviyo, reached through TARGET_KLAVIYO_BASE_URL since a real account needs no base URL."""
    people = tmp_path / "people.jsonl"
    people.write_text('{"email": "real.account@example.com", "first_name": "Real"}\n')
    credentials = {
        "TARGET_KLAVIYO_API_KEY": klaviyo.api_key,
        "TARGET_KLAVIYO_LIST_NAME": "VIP from the warehouse",
        "TAP_JSONL_PATH": str(people),
        "TARGET_KLAVIYO_BASE_URL": klaviyo.base_url,
    }

    project.run("run", "warehouse-to-klaviyo", **credentials).check()

    deadline = time.monotonic() + 30  # wait_for_completion is off outside the sandbox environment:
    while True:  # the run ends once Klaviyo has accepted the import job, which then completes on its own
        found = pipeline_report.list_members(klaviyo.base_url, klaviyo.api_key, "VIP from the warehouse")
        if found["emails"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert found["emails"] == ["real.account@example.com"]
    assert project.state("dev:tap-jsonl-to-target-klaviyo", environment="dev"), "state of its own, apart from sandbox's"


def test_without_a_file_the_dev_job_fails_instead_of_sending_demo_people(
    project: MeltanoProject, klaviyo: t.Any
) -> None:
    run = project.run(
        "run",
        "warehouse-to-klaviyo",
        TARGET_KLAVIYO_API_KEY=klaviyo.api_key,
        TARGET_KLAVIYO_LIST_NAME="Should stay empty",
        TARGET_KLAVIYO_BASE_URL=klaviyo.base_url,
    )

    assert run.code != 0
    assert "'path' is a required property" in run.output
    assert pipeline_report.list_members(klaviyo.base_url, klaviyo.api_key, "Should stay empty")["lists"] == []


def _config(project: MeltanoProject, plugin: str, *options: str, **env: str) -> dict:
    run = project.run(*options, "config", "print", plugin, "--format=json", **env).check()
    return json.loads(run.stdout)


def test_the_report_helper_speaks_the_connectors_revision() -> None:
    from klaviyo_core.settings import DEFAULT_REVISION

    assert pipeline_report.REVISION == DEFAULT_REVISION
