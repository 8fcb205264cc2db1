"""Regenerate the README's settings tables from the plugins' own `--about --format=markdown`.

Usage: python scripts/readme_settings.py [--check]
The tables sit between `<!-- settings:PLUGIN -->` and `<!-- /settings:PLUGIN -->` markers.
"""

from __future__ import annotations

import re
import subprocess
import textwrap
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
PLUGINS = ("tap-klaviyo", "target-klaviyo")


def settings_table(plugin: str) -> str:
    """The `## Settings` table the plugin prints about itself."""
    executable = Path(sys.executable).parent / plugin
    about = subprocess.run([str(executable), "--about", "--format=markdown"], capture_output=True, text=True, check=True).stdout
    about = textwrap.dedent(about)
    table = re.search(r"^\| Setting .*?(?=\n\n|\Z)", about, flags=re.S | re.M)
    if not table:
        raise SystemExit(f"{plugin} --about printed no settings table")
    return table.group(0).strip()


def render(readme: str) -> str:
    for plugin in PLUGINS:
        pattern = re.compile(rf"(<!-- settings:{plugin} -->\n).*?(<!-- /settings:{plugin} -->)", re.S)
        readme = pattern.sub(lambda m, p=plugin: m.group(1) + settings_table(p) + "\n" + m.group(2), readme)
    return readme


def main() -> int:
    current = README.read_text(encoding="utf-8")
    updated = render(current)
    if "--check" in sys.argv[1:]:
        if updated != current:
            print("README settings tables are stale: run python scripts/readme_settings.py")
            return 1
        return 0
    README.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
