"""SIGKILL the tap mid-stream while eight workers fetch slices from the sandbox; resume; nothing lost.

The realistic version of tests/perf/test_state.py: a real process, real HTTP, the
buffered message writer, and a kill at whatever point the output reached.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest

import klaviyo_sandbox as sandbox_module

TAP = [sys.executable, "-c", "from tap_klaviyo.tap import cli; cli()"]


@pytest.fixture(scope="module")
def box() -> t.Iterator[t.Any]:
    config = sandbox_module.SandboxConfig(seed=5, scale=2.0, rate_limit_scale=0.0)  # 40,000 events
    with sandbox_module.Sandbox(config) as running:
        yield running


def run_tap(box: t.Any, tmp_path: Path, *, state: dict | None, kill_after: int | None) -> list[dict]:
    config = {"api_key": box.api_key, "base_url": box.base_url, "discover_custom_fields": False, "max_concurrency": 8}
    (tmp_path / "config.json").write_text(json.dumps(config))
    catalog_path = tmp_path / "catalog.json"
    if not catalog_path.exists():
        catalog = json.loads(subprocess.run(
            [*TAP, "--config", str(tmp_path / "config.json"), "--discover"], capture_output=True, text=True, check=True
        ).stdout)  # fmt: skip
        for entry in catalog["streams"]:
            for item in entry["metadata"]:
                if item["breadcrumb"] == []:
                    item["metadata"]["selected"] = entry["tap_stream_id"] == "events"
        catalog_path.write_text(json.dumps(catalog))
    command = [*TAP, "--config", str(tmp_path / "config.json"), "--catalog", str(catalog_path)]
    if state is not None:
        (tmp_path / "state.json").write_text(json.dumps(state))
        command += ["--state", str(tmp_path / "state.json")]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    messages: list[dict] = []
    records = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        if not line.endswith(b"\n"):
            break  # a line cut by the kill: a target would reject it too
        message = json.loads(line)
        messages.append(message)
        records += message["type"] == "RECORD"
        if kill_after is not None and records >= kill_after:
            os.kill(proc.pid, signal.SIGKILL)
            kill_after = None  # keep reading what the pipe already holds
    proc.wait()
    return messages


def bookmark(messages: list[dict]) -> tuple[dict | None, str | None]:
    states = [m["value"] for m in messages if m["type"] == "STATE"]
    last = states[-1] if states else None
    return last, ((last or {}).get("bookmarks", {}).get("events", {}) or {}).get("replication_key_value")


@pytest.mark.slow
def test_sigkill_with_slices_in_flight_then_resume_loses_nothing(box, tmp_path):
    clean = run_tap(box, tmp_path, state=None, kill_after=None)
    everything = {m["record"]["id"]: m["record"]["datetime"] for m in clean if m["type"] == "RECORD"}
    assert len(everything) == 40_000

    first = run_tap(box, tmp_path, state=None, kill_after=23_456)
    emitted: set[str] = set()
    for message in first:  # every STATE covers only events emitted before it
        if message["type"] == "RECORD":
            emitted.add(message["record"]["id"])
        elif message["type"] == "STATE":
            value = message["value"]["bookmarks"]["events"].get("replication_key_value")
            missing = [i for i, when in everything.items() if value and when < value and i not in emitted]
            assert not missing
    state, _ = bookmark(first)
    assert state is not None  # a STATE came before the kill (one every 10,000 records)

    second = run_tap(box, tmp_path, state=state, kill_after=None)
    seen = emitted | {m["record"]["id"] for m in second if m["type"] == "RECORD"}
    assert seen == set(everything)
