"""Regenerate the capabilities and settings of tap-klaviyo and target-klaviyo in meltano.yml from `--about`.

Usage: python scripts/meltano_settings.py [--check]

It also writes the plugin definitions other Meltano projects add with
`meltano add extractor tap-klaviyo-singer --from-ref plugins/extractors/tap-klaviyo-singer.yml` (docs/meltano.md):
the same plugins, named so as not to clash with Meltano Hub's `tap-klaviyo`, installed from git.
Each plugin's block sits between `# generated:PLUGIN` and `# /generated:PLUGIN` comment lines: every
setting the plugin reports, with its label, description, default (`value`), kind and sensitivity, so
that Meltano shows them (`meltano config PLUGIN list`) and maps `<PLUGIN>_<SETTING>` variables to them.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

MELTANO_YML = Path(__file__).resolve().parent.parent / "meltano.yml"
PLUGINS = ("tap-klaviyo", "target-klaviyo")
ROOT = MELTANO_YML.parent
#: Capabilities `--about` reports that meltano.yml leaves out. With `structured-logging` Meltano 4.4 re-renders
#: the plugins' log lines and drops the tags of METRIC lines: `meltano run` would no longer show which stream
#: a record count belongs to (scripts/pipeline_report.py and the demo read those counts).
CAPABILITIES_LEFT_OUT = ("structured-logging",)
#: name in this project -> (plugin type folder, name elsewhere)
DEFINITIONS = {
    "tap-klaviyo": ("extractors", "tap-klaviyo-singer"),
    "target-klaviyo": ("loaders", "target-klaviyo-singer"),
}
#: Where other projects install from: this repository, at a tag, from an environment variable Meltano expands.
GIT_PIP_URL = "git+${KLAVIYO_SINGER_REPO}"
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
        # Not `decimal`: Meltano 4.4 crashes writing the config of a decimal set from an environment
        # variable ("Object of type Decimal is not JSON serializable"); the plugins read "0.5" as 0.5.
        result["kind"] = "string"
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
        "capabilities": [c for c in info["capabilities"] if c not in CAPABILITIES_LEFT_OUT],
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


def definition_path(plugin: str) -> Path:
    kind, name = DEFINITIONS[plugin]
    return ROOT / "plugins" / kind / f"{name}.yml"


def definition(meltano_yml: str, plugin: str) -> str:
    """The plugin as another project declares it: this project's definition, renamed, from git."""
    document = yaml.safe_load(meltano_yml)
    kind, name = DEFINITIONS[plugin]
    found = next(p for p in document["plugins"][kind] if p["name"] == plugin)
    found = {**found, "name": name, "pip_url": GIT_PIP_URL}
    header = (
        f"# {name}: {plugin} of klaviyo-singer for any Meltano project (docs/meltano.md). Generated by\n"
        "# scripts/meltano_settings.py from meltano.yml. Set KLAVIYO_SINGER_REPO to the repository and tag,\n"
        "# e.g. https://github.com/your-org/klaviyo-singer.git@v0.1.0\n"
    )
    return header + yaml.safe_dump(found, sort_keys=False, width=110, allow_unicode=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is stale")
    check = parser.parse_args().check
    current = MELTANO_YML.read_text(encoding="utf-8")
    updated = render(current)
    outputs = {MELTANO_YML: (current, updated)}
    for plugin in PLUGINS:
        path = definition_path(plugin)
        outputs[path] = (path.read_text(encoding="utf-8") if path.exists() else "", definition(updated, plugin))
    stale = [path.relative_to(ROOT) for path, (old, new) in outputs.items() if old != new]
    if check:
        if stale:
            print(f"stale: {', '.join(map(str, stale))}: run python scripts/meltano_settings.py")
            return 1
        return 0
    for path, (_, new) in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
