"""The recipes of docs/orchestration.md name the jobs and schedules meltano.yml has, and run as written.

Airflow and Dagster are too heavy to install for this: their recipes run against stand-ins that record
what the recipe asks of them (operators, ops, schedules). What those run, `meltano run <job>`, is what
tests/e2e runs through Meltano.
"""

from __future__ import annotations

import copy
import re
import shlex
import subprocess
import sys
import types
import typing as t
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "orchestration.md").read_text(encoding="utf-8")
MELTANO = yaml.safe_load((ROOT / "meltano.yml").read_text(encoding="utf-8"))
JOBS = {job["name"] for job in MELTANO["jobs"]}
SCHEDULES = {s["name"]: (s["job"], s["interval"]) for s in MELTANO["schedules"]}
CRON_OF_JOB = dict(SCHEDULES.values())


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", DOC, flags=re.S | re.M)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []

    def record(self, name: str) -> t.Callable[..., t.Any]:
        def call(*args: t.Any, **kwargs: t.Any) -> t.Any:
            self.calls.append((name, args, kwargs))
            return _Anything()

        return call

    def of(self, name: str) -> list[tuple[tuple, dict]]:
        return [(args, kwargs) for called, args, kwargs in self.calls if called == name]


class _Anything:
    def __call__(self, *args: t.Any, **kwargs: t.Any) -> _Anything:
        return self

    def __enter__(self) -> _Anything:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _run_with_modules(code: str, modules: dict[str, types.ModuleType], monkeypatch: pytest.MonkeyPatch) -> dict:
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    namespace: dict = {"__name__": "recipe"}
    exec(compile(code, "docs/orchestration.md", "exec"), namespace)  # the documented recipe
    return namespace


def _module(name: str, **attributes: t.Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


def test_the_airflow_dag_runs_a_meltano_job_on_its_meltano_schedule(monkeypatch) -> None:
    (code,) = [block for block in blocks("python") if "airflow" in block]
    calls = Recorder()
    modules = {
        "airflow": _module("airflow", DAG=calls.record("DAG")),
        "airflow.operators": _module("airflow.operators"),
        "airflow.operators.bash": _module("airflow.operators.bash", BashOperator=calls.record("BashOperator")),
    }

    _run_with_modules(code, modules, monkeypatch)

    ((_, dag),) = calls.of("DAG")
    ((_, task),) = calls.of("BashOperator")
    command = shlex.split(task["bash_command"])
    assert command[0] == ".venv-meltano/bin/meltano" and command[1:3] == ["run", "klaviyo-to-warehouse"]
    assert command[2] in JOBS and dag["schedule"] == CRON_OF_JOB[command[2]]
    assert dag["max_active_runs"] == 1 and task["append_env"] is True


def test_the_dagster_recipes_name_jobs_and_schedules_of_meltano_yml(monkeypatch) -> None:
    loads, runs = [block for block in blocks("python") if "dagster" in block]
    calls = Recorder()
    modules = {
        "dagster": _module(
            "dagster",
            repository=lambda fn: fn,
            job=lambda **kw: lambda fn: fn,
            ScheduleDefinition=calls.record("ScheduleDefinition"),
        ),
        "dagster_meltano": _module(
            "dagster_meltano",
            load_jobs_from_meltano_project=calls.record("load"),
            meltano_resource=object(),
            meltano_run_op=calls.record("meltano_run_op"),
        ),
    }

    first = _run_with_modules(loads, modules, monkeypatch)
    second = _run_with_modules(runs, modules, monkeypatch)
    first["klaviyo_singer"]()
    second["klaviyo_to_warehouse"]()
    second["klaviyo_singer"]()

    assert calls.of("load") == [(("/opt/klaviyo-singer",), {})]
    ((run_args, _),) = calls.of("meltano_run_op")
    assert run_args[0] in JOBS
    ((_, schedule),) = calls.of("ScheduleDefinition")
    assert schedule["cron_schedule"] == CRON_OF_JOB[run_args[0]]


def test_the_cron_lines_run_the_schedules_of_meltano_yml() -> None:
    (cron,) = blocks("cron")
    for line in cron.strip().splitlines():
        fields = line.split()
        name = fields[fields.index("run") + 1]
        assert name in SCHEDULES and " ".join(fields[:5]) == SCHEDULES[name][1], line


def test_the_accounts_environments_pass_meltanos_schema_check(tmp_path) -> None:
    (snippet,) = blocks("yaml")
    project = copy.deepcopy(MELTANO)
    project["environments"] += yaml.safe_load(snippet)["environments"]
    path = tmp_path / "meltano.yml"
    path.write_text(yaml.safe_dump(project, sort_keys=False))
    executable = Path(sys.executable).parent / "check-jsonschema"

    done = subprocess.run(
        [str(executable), "--builtin-schema", "vendor.meltano", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    for environment in yaml.safe_load(snippet)["environments"]:
        assert environment["env"]["TAP_KLAVIYO_API_KEY"].startswith("$"), "each account's key from its own secret"
