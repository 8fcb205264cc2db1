"""meltano.yml as Meltano reads it: every setting of both plugins as `--about` reports it, and Meltano's own schema."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("meltano_settings", ROOT / "scripts" / "meltano_settings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _plugin(name: str) -> dict:
    document = yaml.safe_load((ROOT / "meltano.yml").read_text())
    return next(p for kind in document["plugins"].values() for p in kind if p["name"] == name)


def test_settings_and_capabilities_are_what_about_reports() -> None:
    current = (ROOT / "meltano.yml").read_text(encoding="utf-8")
    assert _generator().render(current) == current, "run: .venv/bin/python scripts/meltano_settings.py"


@pytest.mark.parametrize("name", ["tap-klaviyo", "target-klaviyo"])
def test_every_setting_has_a_label_a_description_and_its_default(name: str) -> None:
    about = _generator().about(name)["settings"]["properties"]
    settings = {s["name"]: s for s in _plugin(name)["settings"]}

    assert set(settings) == set(about)
    for setting_name, setting in settings.items():
        assert setting.get("label") and setting.get("description"), setting_name
        assert setting.get("value") == about[setting_name].get("default"), setting_name


def test_settings_group_validation_names_declared_settings_only() -> None:
    for name in ("tap-klaviyo", "target-klaviyo"):
        plugin = _plugin(name)
        declared = {s["name"] for s in plugin["settings"]}
        assert all(set(group) <= declared for group in plugin["settings_group_validation"]), name


def test_the_tap_has_a_test_command_that_reads_settings_from_the_environment() -> None:
    assert _plugin("tap-klaviyo")["commands"]["test"]["args"] == "--config=ENV --test"


def test_meltano_yml_passes_meltanos_schema_check() -> None:
    """The `check-meltano` pre-commit hook: check-jsonschema with Meltano's schema (shipped in the package)."""
    executable = Path(sys.executable).parent / "check-jsonschema"
    if not executable.exists():
        executable = Path(shutil.which("check-jsonschema") or "check-jsonschema")
    done = subprocess.run(
        [str(executable), "--builtin-schema", "vendor.meltano", str(ROOT / "meltano.yml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
