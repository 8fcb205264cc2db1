"""Ctrl-C and SIGTERM (what cron, Kubernetes and orchestrators send) end a run non-zero after a resumable STATE.

Real signals are sent to the real console scripts while they work against the sandbox.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import typing as t
from pathlib import Path

import pytest

from klaviyo_sandbox import Sandbox, SandboxConfig
from tests.e2e.helpers import pipeline_report

BIN = Path(sys.executable).parent
#: A line the target logs once the list is resolved (when the first SCHEMA arrives), just before it reads
#: the rows. Not "Created Klaviyo list": after creating one, the target waits to converge with runs
#: elsewhere (target_klaviyo.lists.CONVERGE_DELAY) before it reads on.
READ_MARK = "Writing to Klaviyo list"
EXPECTED_CODE = {signal.SIGINT: 130, signal.SIGTERM: 143}


@pytest.fixture(scope="module")
def slow_klaviyo() -> t.Iterator[t.Any]:
    """Answers take 50 ms, so a sync is still running when the signal comes."""
    with Sandbox(SandboxConfig(seed=5, scale=0.2, latency_ms=50, rate_limit_scale=0.0, job_seconds=0.2)) as box:
        yield box


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("TAP_KLAVIYO", "TARGET_KLAVIYO"))}


def _start(executable: str, config: dict, tmp_path: Path, *args: str) -> subprocess.Popen:
    path = tmp_path / f"{executable}.json"
    path.write_text(json.dumps(config))
    return subprocess.Popen(
        [str(BIN / executable), "--config", str(path), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )


def _lines_until(stream: t.IO[bytes], wanted: t.Callable[[dict], bool], timeout: float = 60) -> list[dict]:
    """Messages read from a process's stdout up to the first one ``wanted`` accepts."""
    messages: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        messages.append(json.loads(line))
        if wanted(messages[-1]):
            return messages
    raise AssertionError(f"never saw the message waited for; last: {messages[-3:]}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_tap_emits_its_state_and_exits_non_zero(slow_klaviyo, tmp_path, signum) -> None:
    config = {
        "api_key": slow_klaviyo.api_key,
        "base_url": slow_klaviyo.base_url,
        "discover_custom_fields": False,
        "max_concurrency": 2,
    }
    tap = _start("tap-klaviyo", config, tmp_path)
    errors: list[bytes] = []
    threading.Thread(target=lambda: errors.extend(tap.stderr), daemon=True).start()
    before = _lines_until(tap.stdout, lambda m: m["type"] == "RECORD" and m["stream"] == "events")

    tap.send_signal(signum)
    rest = tap.stdout.read()  # the reader's buffer holds what was read past the first event
    tap.wait(timeout=60)
    stderr = b"".join(errors)

    after = [json.loads(line) for line in rest.decode().split("\n") if line.strip()]
    assert tap.returncode == EXPECTED_CODE[signum], stderr.decode()[-2000:]
    assert after and after[-1]["type"] == "STATE", "the last message is the state to resume from"
    bookmarks = after[-1]["value"]["bookmarks"]
    assert bookmarks.get("events", {}).get("replication_key_value"), bookmarks.get("events")
    assert f"Received {signal.Signals(signum).name}" in stderr.decode()
    emitted = [m["record"]["datetime"] for m in before + after if m["type"] == "RECORD" and m["stream"] == "events"]
    # Resumable: the bookmark never passes an event not emitted (they come sorted by datetime, so
    # every event before the bookmark was emitted; the next run re-reads from the bookmark on).
    assert emitted == sorted(emitted)
    assert bookmarks["events"]["replication_key_value"] <= max(emitted)


def _schema_and_rows(emails: list[str]) -> str:
    schema = {
        "type": "SCHEMA",
        "stream": "people",
        "key_properties": ["email"],
        "schema": {"properties": {"email": {"type": "string"}}},
    }
    rows = [{"type": "RECORD", "stream": "people", "record": {"email": email}} for email in emails]
    state = {"type": "STATE", "value": {"bookmarks": {"people": {"done": len(emails)}}}}
    return "\n".join(json.dumps(m) for m in [schema, *rows, state]) + "\n"


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_target_drains_what_it_received_then_exits_non_zero(slow_klaviyo, tmp_path, signum) -> None:
    list_name = f"Signal {signum.name}"
    emails = [f"sig{signum.value}.{n}@example.com" for n in range(5)]
    config = {
        "api_key": slow_klaviyo.api_key,
        "base_url": slow_klaviyo.base_url,
        "list_name": list_name,
        "wait_for_completion": True,
        "wait_timeout_seconds": 300,
        "rejects_file": str(tmp_path / "rejects.jsonl"),
    }
    target = _start("target-klaviyo", config, tmp_path)
    target.stdin.write(_schema_and_rows(emails).encode())
    target.stdin.flush()  # ... and the pipe stays open: the tap is still "running"
    stdout_lines: list[bytes] = []
    stderr_lines: list[str] = []
    readers = [
        threading.Thread(target=lambda: stdout_lines.extend(target.stdout), daemon=True),
        threading.Thread(target=lambda: stderr_lines.extend(line.decode() for line in target.stderr), daemon=True),
    ]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + 60
    while not any(READ_MARK in line for line in stderr_lines) and time.monotonic() < deadline:
        time.sleep(0.05)  # until the rows were read
    time.sleep(0.5)

    target.send_signal(signum)
    target.wait(timeout=120)
    for reader in readers:
        reader.join(timeout=5)
    out = b"".join(stdout_lines)

    log = "".join(stderr_lines)
    assert target.returncode == EXPECTED_CODE[signum], log[-2000:]
    states = [json.loads(line) for line in out.decode().split("\n") if line.startswith("{")]
    assert states and states[-1] == {"bookmarks": {"people": {"done": 5}}}, "the state of the rows drained"
    members = pipeline_report.list_members(slow_klaviyo.base_url, slow_klaviyo.api_key, list_name)["emails"]
    assert members == sorted(emails), "every row received before the signal was written"
