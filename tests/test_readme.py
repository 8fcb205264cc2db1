"""The README and docs/ stay true: settings tables are what the plugins say about themselves, links lead somewhere."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _generator():
    spec = importlib.util.spec_from_file_location("readme_settings", ROOT / "scripts" / "readme_settings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_settings_tables_match_about_output():
    generator = _generator()
    for page in generator.DOCUMENTS:
        if page.exists():
            text = page.read_text(encoding="utf-8")
            assert generator.render(text) == text, f"{page.name}: run .venv/bin/python scripts/readme_settings.py"


def test_every_setting_is_in_a_settings_table():
    text = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    for plugin in ("tap-klaviyo", "target-klaviyo"):
        assert f"<!-- settings:{plugin} -->\n| Setting" in text
        assert f"<!-- sdk-settings:{plugin} -->\n| Setting" in text


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "./scripts/test.sh" in readme
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_the_readme_lists_every_docs_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    documentation = readme.split("## Documentation", 1)[1].split("\n## ", 1)[0]
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"(docs/{page.name})" in documentation, f"add docs/{page.name} to the README's Documentation list"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_lead_to_files(page: Path):
    text = page.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target:
            continue
        assert (page.parent / target).exists(), f"{page.name}: broken link {target}"
