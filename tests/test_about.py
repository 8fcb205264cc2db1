"""--version and --about tell the truth: the package's version, the Pythons CI tests, clean markdown."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
VERSION = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
PLUGINS = ["tap-klaviyo", "target-klaviyo"]


def _run(plugin: str, *args: str) -> str:
    done = subprocess.run(
        [str(Path(sys.executable).parent / plugin), *args], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout + done.stderr


@pytest.mark.parametrize("plugin", PLUGINS)
def test_version_is_the_packages(plugin: str) -> None:
    assert f"{plugin} v{VERSION}," in _run(plugin, "--version")


@pytest.mark.parametrize("plugin", PLUGINS)
def test_about_lists_the_python_versions_ci_tests(plugin: str) -> None:
    about = json.loads(_run(plugin, "--about", "--format=json"))
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    tested = workflow["jobs"]["test"]["strategy"]["matrix"]["python-version"]

    assert about["version"] == VERSION
    assert about["supported_python_versions"] == tested


@pytest.mark.parametrize("plugin", PLUGINS)
def test_about_markdown_renders_cleanly(plugin: str) -> None:
    markdown = _run(plugin, "--about", "--format=markdown")

    assert markdown.startswith(f"# `{plugin}`\n"), "no indented first line (it would render as code)"
    assert not re.search(r":(mod|class|func|meth|attr|ref):`", markdown), "no Sphinx roles"
    description = markdown.split("\n\n", 2)[1]
    assert "\n" not in description.strip() and "``" not in description
