"""Every script in scripts/ answers as a command-line tool should: ``--help`` prints its usage; an
argument it does not know is one error line, exit 2, naming it (or the arguments missing, where a
script has some), without a traceback (readme_settings.py and meltano_settings.py regenerated their
files whatever they were given; measure_resume.py stopped with an IndexError without its arguments)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(path.name for path in (ROOT / "scripts").glob("*.py"))


def run_script(name: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *arguments],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_prints_usage(name):
    answer = run_script(name, "--help")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.lower().startswith("usage:"), answer.stdout[:200]


@pytest.mark.parametrize("name", SCRIPTS)
def test_an_unknown_argument_is_one_line(name):
    answer = run_script(name, "--no-such-option")
    assert answer.returncode == 2
    assert answer.stdout == ""
    errors = [line for line in answer.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, answer.stderr
    assert "--no-such-option" in errors[0] or "required" in errors[0]  # or what is missing, where arguments are
    assert "Traceback" not in answer.stderr
