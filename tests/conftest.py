"""Fixtures shared by every test folder."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


class CliRun(t.NamedTuple):
    code: int
    stdout: str
    stderr: str

    def messages(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]


def run_cli(
    executable: str,
    *args: str,
    config: dict | None = None,
    tmp_path: Path,
    stdin: str | None = None,
    timeout: float = 120,
) -> CliRun:
    """Run an installed console script the way a shell pipe or Meltano does."""
    command = [str(BIN / executable), *args]
    if config is not None:
        path = tmp_path / f"{executable}-config.json"
        path.write_text(json.dumps(config))
        command += ["--config", str(path)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAP_KLAVIYO", "TARGET_KLAVIYO"))}
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    return CliRun(done.returncode, done.stdout, done.stderr)


def select(catalog: dict, *names: str) -> dict:
    """A copy of ``catalog`` with exactly the streams ``names`` selected."""
    catalog = copy.deepcopy(catalog)
    for entry in catalog["streams"]:
        for metadata in entry["metadata"]:
            if metadata["breadcrumb"] == []:
                metadata["metadata"]["selected"] = entry["tap_stream_id"] in names
    return catalog


def cli_catalog(config: dict, tmp_path: Path, *names: str) -> Path:
    """``tap-klaviyo --discover``'s catalog with only ``names`` selected, written to ``tmp_path/catalog.json``."""
    result = run_cli("tap-klaviyo", "--discover", config=config, tmp_path=tmp_path)
    assert result.code == 0, result.stderr[-2000:]
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(select(json.loads(result.stdout), *names)))
    return path


@pytest.fixture(scope="session")
def sandbox() -> t.Iterator[t.Any]:
    """A loopback Klaviyo with small deterministic data and no rate limits."""
    from klaviyo_sandbox import Sandbox, SandboxConfig

    with Sandbox(SandboxConfig(seed=3, scale=0.05, rate_limit_scale=0.0, job_seconds=0.3)) as box:
        yield box
