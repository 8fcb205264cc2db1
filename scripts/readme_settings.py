"""Regenerate the settings tables of docs/settings.md (and any README table) from the plugins' own `--about`.

Usage: python scripts/readme_settings.py [--check]
A plugin's own settings sit between `<!-- settings:PLUGIN -->` and `<!-- /settings:PLUGIN -->`, the settings
the Meltano Singer SDK adds to every plugin (stream maps, flattening...) between `<!-- sdk-settings:PLUGIN -->`
and `<!-- /sdk-settings:PLUGIN -->`. Rows come from `PLUGIN --about --format=markdown`.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import textwrap
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = (ROOT / "README.md", ROOT / "docs" / "settings.md")
PLUGINS = ("tap-klaviyo", "target-klaviyo")


def own_settings(plugin: str) -> set[str]:
    """The settings the plugin itself declares (the rest of `--about` is the SDK's)."""
    sys.path.insert(0, str(ROOT))
    from klaviyo_core.settings import CONNECTION_SETTINGS  # noqa: PLC0415

    if plugin == "tap-klaviyo":
        from tap_klaviyo.tap import TAP_SETTINGS as PLUGIN_SETTINGS  # noqa: PLC0415
    else:
        from target_klaviyo.target import TARGET_SETTINGS as PLUGIN_SETTINGS  # noqa: PLC0415
    return {*CONNECTION_SETTINGS.wrapped, *PLUGIN_SETTINGS.wrapped}


def about_table(plugin: str) -> tuple[str, list[str]]:
    """The header and rows of the `Settings` table the plugin prints about itself."""
    executable = Path(sys.executable).parent / plugin
    about = subprocess.run(
        [str(executable), "--about", "--format=markdown"], capture_output=True, text=True, check=True
    ).stdout
    table = re.search(r"^\| Setting .*?(?=\n\n|\Z)", textwrap.dedent(about), flags=re.S | re.M)
    if not table:
        raise SystemExit(f"{plugin} --about printed no settings table")
    lines = table.group(0).strip().splitlines()
    return "\n".join(lines[:2]), lines[2:]


@cache
def tables(plugin: str) -> dict[str, str]:
    header, rows = about_table(plugin)
    own = own_settings(plugin)
    mine = [row for row in rows if _name(row) in own]
    sdk = [row for row in rows if _name(row) not in own]
    return {"settings": "\n".join([header, *mine]), "sdk-settings": "\n".join([header, *sdk])}


def _name(row: str) -> str:
    return row.strip("| ").split("|", 1)[0].strip().split(".", 1)[0]


def render(text: str) -> str:
    for plugin in PLUGINS:
        for kind in ("settings", "sdk-settings"):
            pattern = re.compile(rf"(<!-- {kind}:{plugin} -->\n).*?(<!-- /{kind}:{plugin} -->)", re.S)
            if pattern.search(text):
                table = tables(plugin)[kind]
                text = pattern.sub(lambda m, t=table: m.group(1) + t + "\n" + m.group(2), text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a table is stale")
    check = parser.parse_args().check
    stale = []
    for document in DOCUMENTS:
        if not document.exists():
            continue
        current = document.read_text(encoding="utf-8")
        updated = render(current)
        if updated != current:
            stale.append(document.relative_to(ROOT))
            if not check:
                document.write_text(updated, encoding="utf-8")
    if stale and check:
        print(f"settings tables are stale in {', '.join(map(str, stale))}: run python scripts/readme_settings.py")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
