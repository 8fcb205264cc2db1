"""Regenerate the capabilities and settings of tap-klaviyo and target-klaviyo in meltano.yml from `--about`.

Usage: python scripts/meltano_settings.py [--check]
Each plugin's block sits between `# generated:PLUGIN` and `# /generated:PLUGIN` comment lines: every
setting the plugin reports, with its label, description, default (`value`), kind and sensitivity, so
that Meltano shows them (`meltano config PLUGIN list`) and maps `<PLUGIN>_<SETTING>` variables to them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

MELTANO_YML = Path(__file__).resolve().parent.parent / "meltano.yml"
PLUGINS = ("tap-klaviyo", "target-klaviyo")
INDENT = "    "  # a plugin's keys, under `plugins: extractors|loaders: - name:`


def about(plugin: str) -> dict:
    executable = Path(sys.executable).parent / plugin
    done = subprocess.run([str(executable), "--about", "--format=json"], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def _types(spec: dict) -> set[str]:
    declared = spec.get("type") or []
    return ({declared} if isinstance(declared, str) else set(declared)) - {"null"}


def setting(name: str, spec: dict) -> dict:
    """One Meltano setting definition from the plugin's JSON schema of it."""
    result: dict = {"name": name, "label": spec.get("title") or name}
    if spec.get("description"):
        result["description"] = " ".join(str(spec["description"]).split())
    types = _types(spec)
    if spec.get("enum"):
        result["kind"] = "options"
        result["options"] = [{"label": str(value), "value": value} for value in spec["enum"]]
    elif spec.get("format") == "date-time":
        result["kind"] = "date_iso8601"
    elif types & {"integer"}:
        result["kind"] = "integer"
    elif types & {"number"}:
        result["kind"] = "decimal"
    elif types & {"boolean"}:
        result["kind"] = "boolean"
    elif types & {"object"}:
        result["kind"] = "object"
    elif types & {"array"}:
        result["kind"] = "array"
    else:
        result["kind"] = "string"
    if "default" in spec and spec["default"] is not None:
        result["value"] = spec["default"]
    if spec.get("secret"):
        result["sensitive"] = True
    return result


def block(plugin: str) -> str:
    info = about(plugin)
    document = {
        "capabilities": list(info["capabilities"]),
        "settings": [setting(name, spec) for name, spec in info["settings"]["properties"].items()],
    }
    text = yaml.safe_dump(document, sort_keys=False, width=110, allow_unicode=True, default_flow_style=False)
    return "".join(f"{INDENT}{line}\n" if line else "\n" for line in text.splitlines())


def render(meltano_yml: str) -> str:
    for plugin in PLUGINS:
        pattern = re.compile(rf"(^ *# generated:{plugin}\b[^\n]*\n).*?(^ *# /generated:{plugin}\n)", re.S | re.M)
        if not pattern.search(meltano_yml):
            raise SystemExit(f"meltano.yml has no '# generated:{plugin}' ... '# /generated:{plugin}' block")
        meltano_yml = pattern.sub(lambda m, p=plugin: m.group(1) + block(p) + m.group(2), meltano_yml)
    return meltano_yml


def main() -> int:
    current = MELTANO_YML.read_text(encoding="utf-8")
    updated = render(current)
    if "--check" in sys.argv[1:]:
        if updated != current:
            print("meltano.yml settings are stale: run python scripts/meltano_settings.py")
            return 1
        return 0
    MELTANO_YML.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
