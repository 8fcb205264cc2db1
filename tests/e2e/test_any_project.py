"""Both plugins in a new Meltano project, from this repository over git, with the commands of docs/meltano.md.

The repository is a local git clone of the working tree (a commit and the tag the docs use), and the
docs' block runs as written except for the addresses: the repository's `https://` URL becomes its
`file://` one and the raw-file URLs become paths into the clone. The plugin names
(`tap-klaviyo-singer`, `target-klaviyo-singer`) do not clash with Meltano Hub's `tap-klaviyo`;
nothing here asks the Hub for anything.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import typing as t
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import _copy_project
from tests.e2e.helpers import FOREIGN_ENV, ROOT, TIMINGS, pipeline_report

DOC = (ROOT / "docs" / "meltano.md").read_text(encoding="utf-8")
SECTION = DOC.split("## Using the plugins from any Meltano project", 1)[1].split("\n## ", 1)[0]
(BLOCK,) = re.findall(r"^```bash\n(.*?)^```", SECTION, flags=re.S | re.M)
LIST_NAME = "From another project"


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        timeout=120,
    )


class OtherProject(t.NamedTuple):
    root: Path
    env: dict[str, str]
    meltano: Path
    block: subprocess.CompletedProcess

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.meltano), *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="module")
def other_project(meltano_bin: Path, klaviyo: t.Any, tmp_path_factory: pytest.TempPathFactory) -> OtherProject:
    repo = tmp_path_factory.mktemp("klaviyo-singer-repo")
    _copy_project(repo)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "release")
    _git(repo, "tag", "v0.1.0")
    home = tmp_path_factory.mktemp("other-meltano")
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV) and k != "VIRTUAL_ENV"}
    env["PATH"] = f"{meltano_bin.parent}{os.pathsep}{env.get('PATH', '')}"
    env["TAP_KLAVIYO_SINGER_BASE_URL"] = env["TARGET_KLAVIYO_SINGER_BASE_URL"] = klaviyo.base_url
    created = subprocess.run(
        [str(meltano_bin), "init", "analytics", "--no_usage_stats"],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    block = (
        BLOCK.replace("https://github.com/your-org/klaviyo-singer.git", f"file://{repo}")
        .replace("https://raw.githubusercontent.com/your-org/klaviyo-singer/v0.1.0/", f"{repo}/")
        .replace("pk_your_private_key", klaviyo.api_key)
    )
    started = time.monotonic()
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=home / "analytics",
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    TIMINGS["docs/meltano.md: plugins from git"] = time.monotonic() - started
    env["KLAVIYO_SINGER_REPO"] = f"file://{repo}@v0.1.0"
    return OtherProject(home / "analytics", env, meltano_bin, done)


def test_the_documented_commands_add_install_and_test_the_plugins(other_project) -> None:
    done = other_project.block
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Connected to Klaviyo account" in done.stdout + done.stderr


def test_the_plugins_are_custom_and_installed_from_the_git_repository(other_project) -> None:
    project = yaml.safe_load((other_project.root / "meltano.yml").read_text())
    plugins = {p["name"]: p for kind in project["plugins"].values() for p in kind}

    assert set(plugins) == {"tap-klaviyo-singer", "target-klaviyo-singer"}
    for plugin in plugins.values():
        assert plugin["pip_url"] == "git+${KLAVIYO_SINGER_REPO}" and "variant" not in plugin
    listed = other_project.run("config", "list", "--all", "tap-klaviyo-singer")
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "TAP_KLAVIYO_SINGER_RATE_LIMIT_SHARE" in listed.stdout


def test_a_pipeline_between_the_two_plugins(other_project, klaviyo) -> None:
    for setting, value in (("api_key", klaviyo.api_key), ("list_name", LIST_NAME), ("wait_for_completion", "true")):
        assert other_project.run("config", "set", "target-klaviyo-singer", setting, value).returncode == 0
    assert other_project.run("select", "tap-klaviyo-singer", "profiles", "*").returncode == 0

    run = other_project.run("run", "tap-klaviyo-singer", "target-klaviyo-singer")

    assert run.returncode == 0, run.stderr[-4000:]
    members = pipeline_report.list_members(klaviyo.base_url, klaviyo.api_key, LIST_NAME)["emails"]
    assert len(members) >= 10, "the sandbox's profiles with an email were added to the list"
