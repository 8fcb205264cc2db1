"""Run target-klaviyo's real CLI entry point in-process against the loopback Klaviyo (klaviyo_sandbox)."""

from __future__ import annotations

import json
import logging
import sys
import typing as t
from dataclasses import dataclass
from pathlib import Path

import pytest

from klaviyo_sandbox import Sandbox
from target_klaviyo.target import cli
from tests.klaviyo import Account, sandbox_config

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def job_seconds() -> float:
    """How long the account's import jobs take; 0: done at once. A test parametrizes it to watch one run."""
    return 0.0


@pytest.fixture
def klaviyo(job_seconds: float) -> t.Iterator[Account]:
    """A fresh loopback Klaviyo account for each test."""
    with Sandbox(sandbox_config(job_seconds=job_seconds)) as box:
        yield Account(box)


@dataclass
class Run:
    exit_code: int
    stdout: str
    log: str
    workdir: Path

    @property
    def states(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def rejects(self, name: str = "klaviyo-rejects.jsonl") -> list[dict]:
        path = self.workdir / name
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def singer_lines(stream: str, rows: t.Iterable[dict], properties: dict, *, state: dict | None = None) -> str:
    """A small Singer message file: SCHEMA, the RECORDs, an optional STATE."""
    schema = {"type": "object", "properties": properties}
    lines = [{"type": "SCHEMA", "stream": stream, "schema": schema, "key_properties": []}]
    lines += [{"type": "RECORD", "stream": stream, "record": row} for row in rows]
    if state is not None:
        lines.append({"type": "STATE", "value": state})
    return "\n".join(json.dumps(line) for line in lines) + "\n"


@pytest.fixture
def run_target(
    klaviyo: Account, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, caplog
) -> t.Callable[..., Run]:
    """``run_target(config, fixture_name_or_text)``: ``target-klaviyo --config c.json --input f.singer``."""
    monkeypatch.chdir(tmp_path)  # the default rejects file lands in the test's folder
    caplog.set_level(logging.INFO)
    counter = iter(range(1000))

    def run(config: dict, singer: str) -> Run:
        n = next(counter)
        config_path = tmp_path / f"config{n}.json"
        config_path.write_text(json.dumps({"api_key": klaviyo.api_key, "base_url": klaviyo.base_url, **config}))
        fixture = FIXTURES / singer
        if not singer.endswith(".singer") or not fixture.exists():
            fixture = tmp_path / f"input{n}.singer"
            fixture.write_text(singer)
        capsys.readouterr()
        caplog.clear()
        root = logging.getLogger()
        handlers = list(root.handlers)
        monkeypatch.setattr(sys, "argv", ["target-klaviyo", "--config", str(config_path), "--input", str(fixture)])
        try:
            cli()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            for handler in root.handlers[:]:  # the SDK's CLI adds a stderr handler on every call
                if handler not in handlers:
                    root.removeHandler(handler)
        return Run(code, capsys.readouterr().out, caplog.text, tmp_path)

    return run
