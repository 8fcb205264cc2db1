"""scripts/run.sh checks the key before installing anything, and says what a missing start_date means;
run.sh and scripts/setup_meltano.sh answer --help (and setup_meltano.sh an unknown option) without installing."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _project(tmp_path: Path) -> Path:
    """run.sh in a folder of its own, with a setup_meltano.sh that records being called."""
    (tmp_path / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "run.sh", tmp_path / "scripts" / "run.sh")
    fake = tmp_path / "scripts" / "setup_meltano.sh"
    fake.write_text('#!/usr/bin/env bash\ntouch "$(dirname "$0")/../setup-called"\nexit 1\n')
    fake.chmod(0o755)
    return tmp_path


def _run(project: Path, *arguments: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TAP_KLAVIYO_")}
    return subprocess.run(
        ["bash", str(project / "scripts" / "run.sh"), *arguments],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_a_key_it_stops_at_once_saying_how_to_set_it(tmp_path) -> None:
    project = _project(tmp_path)
    started = time.monotonic()
    done = _run(project)

    assert done.returncode == 1 and time.monotonic() - started < 5
    assert "TAP_KLAVIYO_API_KEY is not set: export TAP_KLAVIYO_API_KEY=pk_..." in done.stderr
    assert not (project / "setup-called").exists(), "nothing is installed before the settings are checked"


def test_a_key_in_dot_env_is_enough_and_a_missing_start_date_is_explained(tmp_path) -> None:
    project = _project(tmp_path)
    (project / ".env").write_text("TAP_KLAVIYO_API_KEY=pk_from_dot_env\n")
    done = _run(project)

    assert (project / "setup-called").exists(), "the key check passed, setup started"
    assert "a first run reads the account's whole history" in done.stderr


def test_with_a_start_date_nothing_is_said_about_history(tmp_path) -> None:
    project = _project(tmp_path)
    done = _run(project, TAP_KLAVIYO_API_KEY="pk_x", TAP_KLAVIYO_START_DATE="2024-01-01")

    assert "whole history" not in done.stderr and (project / "setup-called").exists()


def test_help_describes_the_job_and_installs_nothing(tmp_path) -> None:
    project = _project(tmp_path)
    done = _run(project, "--help")

    assert done.returncode == 0 and done.stdout.startswith("Extract a real Klaviyo account into output/*.jsonl")
    assert "TAP_KLAVIYO_API_KEY" in done.stdout and not (project / "setup-called").exists()
    assert done.stdout.endswith("to `meltano run` (e.g. --full-refresh).\n")  # the whole header comment, no code


def test_setup_meltano_answers_help_and_refuses_an_unknown_option_before_installing(tmp_path) -> None:
    venv = tmp_path / "venv-meltano"

    def setup(*arguments: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(ROOT / "scripts" / "setup_meltano.sh"), *arguments],
            env={**os.environ, "MELTANO_VENV": str(venv)}, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    helped = setup("--help")
    assert helped.returncode == 0 and helped.stdout.startswith("Set up Meltano for this project")
    assert helped.stdout.endswith("progress goes to stderr.\n")
    refused = setup("--venv-olny")
    assert refused.returncode == 2
    assert refused.stderr == "setup_meltano: unknown option --venv-olny (--venv-only, or none; --help)\n"
    assert not venv.exists(), "nothing installed"
