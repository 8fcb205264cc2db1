"""The README stays true: its settings tables are what the plugins say about themselves."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("readme_settings", ROOT / "scripts" / "readme_settings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_settings_tables_match_about_output():
    generator = _generator()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert generator.render(readme) == readme, "run: .venv/bin/python scripts/readme_settings.py"


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "./scripts/test.sh" in readme
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
