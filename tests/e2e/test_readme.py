"""Every shell block of the README, run as written on a fresh copy of the project, against the sandbox.

The README's placeholders for a real key (`pk_your_private_key`, `pk_...`) become the sandbox's test
key, a config file's `"api_key": ...` also gets the sandbox's `base_url`, and the Meltano blocks reach
the sandbox through TAP_KLAVIYO_BASE_URL / TARGET_KLAVIYO_BASE_URL. Nothing else is changed: a block
that needs anything else to work on a fresh machine fails here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import typing as t
from pathlib import Path

import pytest

from tests.e2e.conftest import _copy_project
from tests.e2e.helpers import FOREIGN_ENV, ROOT, TIMINGS, pipeline_report

README = (ROOT / "README.md").read_text(encoding="utf-8")
#: Blocks another test runs as written: (the block's command, what runs it).
COVERED_ELSEWHERE = {
    "./scripts/demo.sh": "tests/e2e/test_demo.py",
    "./scripts/test.sh": ".ci/run (CI runs exactly this command)",
}
PEOPLE = [{"email": "vip.one@example.com", "first_name": "One"}, {"email": "vip.two@example.com", "plan": "gold"}]


class BlockRun(t.NamedTuple):
    code: int
    output: str
    seconds: float


def bash_blocks() -> list[str]:
    return [block.strip() for block in re.findall(r"^```bash\n(.*?)^```", README, flags=re.S | re.M)]


def _for_the_sandbox(block: str, box: t.Any) -> str:
    block = block.replace(
        '"api_key": "pk_your_private_key"', f'"api_key": "{box.api_key}", "base_url": "{box.base_url}"'
    )
    return block.replace("pk_your_private_key", box.api_key).replace("pk_...", box.api_key)


@pytest.fixture(scope="module")
def readme_runs(meltano_bin: Path, klaviyo: t.Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, BlockRun]:
    """Each block not covered elsewhere, in README order, in one fresh copy of the project."""
    root = tmp_path_factory.mktemp("readme-project")
    _copy_project(root)
    # Meltano itself is the one scripts/setup_meltano.sh installed for the session (same version), as if
    # this copy had run it: the blocks call .venv-meltano/bin/meltano as written.
    (root / ".venv-meltano").symlink_to(meltano_bin.parent.parent, target_is_directory=True)
    (root / "exports").mkdir()
    (root / "exports" / "vips.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PEOPLE))
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV) and k != "VIRTUAL_ENV"}
    env.update({"TAP_KLAVIYO_BASE_URL": klaviyo.base_url, "TARGET_KLAVIYO_BASE_URL": klaviyo.base_url})
    runs: dict[str, BlockRun] = {}
    for block in bash_blocks():
        if block in COVERED_ELSEWHERE:
            continue
        started = time.monotonic()
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", _for_the_sandbox(block, klaviyo)],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        runs[block] = BlockRun(done.returncode, done.stdout + done.stderr, time.monotonic() - started)
    TIMINGS["README blocks"] = sum(run.seconds for run in runs.values())
    runs["__root__"] = BlockRun(0, str(root), 0.0)
    return runs


def _run(runs: dict[str, BlockRun], marker: str) -> BlockRun:
    (block,) = [b for b in runs if marker in b]
    run = runs[block]
    assert run.code == 0, f"README block exited {run.code}:\n{block}\n---\n{run.output[-4000:]}"
    return run


def test_every_shell_block_is_run_here_or_by_a_named_test(readme_runs) -> None:
    blocks = bash_blocks()
    assert set(COVERED_ELSEWHERE) <= set(blocks), "a block named here is no longer in the README"
    assert {b for b in blocks if b not in COVERED_ELSEWHERE} == set(readme_runs) - {"__root__"}
    assert len(readme_runs) - 1 >= 4


def test_run_sh_extracts_the_account_into_jsonl(readme_runs) -> None:
    run = _run(readme_runs, "./scripts/run.sh")
    output = Path(readme_runs["__root__"].output) / "output"
    assert (output / "events.jsonl").stat().st_size > 0 and (output / "profiles.jsonl").stat().st_size > 0
    assert "TAP_KLAVIYO_START_DATE is not set: a first run reads the account's whole history" in run.output


def test_the_plain_singer_pipe_writes_every_stream(readme_runs) -> None:
    _run(readme_runs, ".venv-jsonl/bin/target-jsonl")
    lines = (Path(readme_runs["__root__"].output) / "output" / "events.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line)["id"] for line in lines)


def test_the_target_example_adds_the_good_row_and_rejects_the_bad_one(readme_runs, klaviyo) -> None:
    run = _run(readme_runs, ".venv/bin/target-klaviyo")
    assert "Stream 'vip': 2 rows received, 1 sent, 1 rejected (invalid email: 1)" in run.output
    assert pipeline_report.list_members(klaviyo.base_url, klaviyo.api_key, "VIP customers")["emails"] == [
        "ann@example.com"
    ]


def test_the_meltano_jobs_run_against_an_account_configured_by_environment(readme_runs, klaviyo) -> None:
    _run(readme_runs, "meltano run klaviyo-to-warehouse")
    assert (Path(readme_runs["__root__"].output) / "output" / "warehouse.duckdb").exists()
    deadline = time.monotonic() + 30  # wait_for_completion is off outside the sandbox environment
    while True:
        found = pipeline_report.list_members(klaviyo.base_url, klaviyo.api_key, "Warehouse VIPs")["emails"]
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert found == sorted(p["email"] for p in PEOPLE)
