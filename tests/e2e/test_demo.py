"""./scripts/demo.sh, the README's one command: a fresh project copy, start to finish, twice, and interrupted."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import typing as t
from pathlib import Path

import pytest

from tests.e2e.helpers import TIMINGS, MeltanoProject

SCALE = "0.05"  # 100 profiles, 1,000 events: the flow, not the volume


class Demo(t.NamedTuple):
    code: int
    output: str

    @property
    def sandbox_pid(self) -> int:
        return int(re.search(r"listening on http://127\.0\.0\.1:\d+ \(pid (\d+)\)", self.output).group(1))

    def section(self, title: str) -> str:
        return self.output.split(title, 1)[1].split("\n==> ", 1)[0]

    def table(self, title: str) -> dict[str, int]:
        rows = re.findall(r"^ {4}(\w+) +(\d+)$", self.section(title), flags=re.MULTILINE)
        return {name: int(count) for name, count in rows}


def _env(project: MeltanoProject, meltano_bin: Path, **extra: str) -> dict[str, str]:
    return project.env(MELTANO_VENV=str(meltano_bin.parent.parent), **extra)


def run_demo(project: MeltanoProject, meltano_bin: Path, *args: str, **env: str) -> Demo:
    started = time.monotonic()
    done = subprocess.run(
        ["./scripts/demo.sh", "--scale", SCALE, *args],
        cwd=project.root,
        env=_env(project, meltano_bin, **env),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    TIMINGS[f"demo.sh {' '.join(args) or 'run'}"] = time.monotonic() - started
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    return Demo(done.returncode, output)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_interrupted_demo_stops_its_sandbox(project: MeltanoProject, meltano_bin: Path) -> None:
    demo = subprocess.Popen(
        ["./scripts/demo.sh", "--scale", SCALE],
        cwd=project.root,
        env=_env(project, meltano_bin),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines = []
    for line in demo.stdout:
        lines.append(line)
        if line.startswith("==> Klaviyo -> DuckDB"):
            break
    os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C: the whole process group
    lines += demo.stdout.readlines()
    code = demo.wait(timeout=120)
    output = "".join(lines)

    assert code == 130, output
    assert "(sandbox stopped)" in output
    assert not alive(Demo(code, output).sandbox_pid)


@pytest.fixture(scope="module")
def first(project: MeltanoProject, meltano_bin: Path) -> Demo:
    return run_demo(project, meltano_bin)


def test_demo_shows_both_pipelines_working(first: Demo) -> None:
    landed = first.table("What landed in output/sandbox.duckdb")
    incremental = first.table("Records this incremental run read")

    assert landed["profiles"] == 100 and landed["events"] == 1000
    assert set(landed) >= {"campaigns", "flows", "lists", "metrics", "reviews", "segments"}
    assert incremental["profiles"] < landed["profiles"] and incremental["events"] < landed["events"]
    assert "profiles: updated >= " in first.section("Meltano's stored state")
    before, after = first.section("Before:").split("After:")
    assert "no list named 'Meltano demo: new customers' (0 members)" in before
    assert re.search(r"list 'Meltano demo: new customers' \(\w+\): 5 members: ada\.lovelace@example\.com", after)
    assert "(sandbox stopped)" in first.output and not alive(first.sandbox_pid)


def test_demo_is_rerunnable_with_a_chosen_port(first: Demo, project: MeltanoProject, meltano_bin: Path) -> None:
    """Again, on a chosen port, with a real account's settings around: in the shell and in .env."""
    port = free_port()
    dotenv = project.root / ".env"
    dotenv.write_text(
        "TAP_KLAVIYO_API_KEY=pk_real_account_key\nexport TAP_KLAVIYO_CLIENT_ID=real-app\n"
        "TARGET_KLAVIYO_LIST_NAME='Real list'\nTAP_JSONL_PATH=/nowhere/people.jsonl\n"
    )
    try:
        again = run_demo(
            project,
            meltano_bin,
            "--port",
            str(port),
            "--verbose",
            TAP_KLAVIYO_REFRESH_TOKEN="real-refresh-token",
            TARGET_KLAVIYO_LIST_ID="RealId",
        )
    finally:
        dotenv.unlink()

    assert ".env sets TAP_KLAVIYO_API_KEY,TAP_KLAVIYO_CLIENT_ID,TARGET_KLAVIYO_LIST_NAME,TAP_JSONL_PATH" in again.output
    assert f"listening on http://127.0.0.1:{port} " in again.output
    assert "Block run completed" in again.output, "--verbose shows Meltano's logs"
    assert again.table("What landed in output/sandbox.duckdb") == first.table("What landed in output/sandbox.duckdb")
    assert again.table("Records this incremental run read") == first.table("Records this incremental run read")
    members = re.compile(r"list 'Meltano demo: new customers' \(\w+\): (.*)")
    assert members.search(again.section("After:")).group(1) == members.search(first.section("After:")).group(1)
    assert not alive(again.sandbox_pid)
