"""Helpers of the e2e tests: run Meltano in a project copy, read what the pipelines moved."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import time
import typing as t
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load_report_helpers() -> t.Any:
    """scripts/pipeline_report.py: what the demo shows is what the tests check."""
    spec = importlib.util.spec_from_file_location("pipeline_report", ROOT / "scripts" / "pipeline_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pipeline_report = _load_report_helpers()

#: Settings that must come from meltano.yml and the test, never from the shell running the tests.
FOREIGN_ENV = ("TAP_KLAVIYO_", "TARGET_KLAVIYO_", "TAP_JSONL_", "TARGET_DUCKDB_", "TARGET_JSONL_", "MELTANO_")
#: What a fresh clone would not have (the rest of the working tree is copied).
NOT_COPIED = (
    ".git",
    ".venv*",
    ".meltano",
    "output",
    "__pycache__",
    "*.egg-info",
    ".pytest_cache",
    "build",
    "dist",
    ".env",
    "*.token.json",
    "klaviyo-rejects.jsonl",
)
LIST_NAME = "Meltano demo: new customers"  # the sandbox environment's list_name in meltano.yml
TIMINGS: dict[str, float] = {}


@dataclass
class MeltanoRun:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def records(self, plugin: str = "tap-") -> dict[str, int]:
        """Records per stream the run's tap read (its record_count metrics)."""
        return pipeline_report.record_counts(self.output.splitlines(), plugin)

    def check(self) -> MeltanoRun:
        assert self.code == 0, f"meltano {' '.join(self.args)} exited {self.code}:\n{self.output[-6000:]}"
        return self


class MeltanoProject:
    """A copy of the repository with its Meltano plugins installed."""

    def __init__(self, root: Path, meltano: Path):
        self.root = root
        self.meltano = meltano
        self.extra_env: dict[str, str] = {}

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV)}
        env.update(self.extra_env)
        env.update(extra)
        return env

    def run(self, *args: str, timeout: float = 300, **env: str) -> MeltanoRun:
        started = time.monotonic()
        done = subprocess.run(
            [str(self.meltano), *args],
            cwd=self.root,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return MeltanoRun(args, done.returncode, done.stdout, done.stderr, time.monotonic() - started)

    def state(self, state_id: str, environment: str = "sandbox") -> dict:
        """The state Meltano stored for state_id ({} when there is none)."""
        done = subprocess.run(
            [str(self.meltano), f"--environment={environment}", "state", "get", state_id],
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        text = done.stdout.strip()
        return json.loads(text) if done.returncode == 0 and text.startswith("{") else {}

    @property
    def duckdb_python(self) -> Path:
        return self.root / ".meltano" / "loaders" / "target-duckdb" / "venv" / "bin" / "python"

    def sql(self, db: Path, query: str) -> list[dict]:
        """Rows of a query on a DuckDB file, with the duckdb of target-duckdb's own venv."""
        done = subprocess.run(
            [str(self.duckdb_python), str(ROOT / "scripts" / "pipeline_report.py"), "sql", str(db), query],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def table_counts(self, db: Path, schema: str = "klaviyo") -> dict[str, int]:
        done = subprocess.run(
            [
                str(self.duckdb_python),
                str(ROOT / "scripts" / "pipeline_report.py"),
                "counts",
                str(db),
                "--schema",
                schema,
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


def sandbox_env(box: t.Any) -> dict[str, str]:
    """What points the sandbox environment of meltano.yml at this sandbox's port."""
    return {"TAP_KLAVIYO_BASE_URL": box.base_url, "TARGET_KLAVIYO_BASE_URL": box.base_url}


def post(url: str) -> dict:
    with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=30) as response:
        return json.load(response)


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)
