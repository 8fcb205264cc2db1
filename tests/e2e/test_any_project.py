"""Both plugins in a new Meltano project, from this repository over git, as docs/meltano.md says.

The repository is a local git clone of the working tree (a commit and a tag), reached with a
`git+file://` URL through KLAVIYO_SINGER_REPO exactly as users reach theirs with `git+https://`.
The plugin names (`tap-klaviyo-singer`, `target-klaviyo-singer`) do not clash with Meltano Hub's
`tap-klaviyo`; nothing here asks the Hub for anything.
"""

from __future__ import annotations

import os
import subprocess
import time
import typing as t
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import _copy_project
from tests.e2e.helpers import FOREIGN_ENV, TIMINGS, pipeline_report

LIST_NAME = "From another project"


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args], cwd=repo,
                   check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def other_project(meltano_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> t.Callable[..., subprocess.CompletedProcess]:
    repo = tmp_path_factory.mktemp("klaviyo-singer-repo")
    _copy_project(repo)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "release")
    _git(repo, "tag", "v0.1.0")
    home = tmp_path_factory.mktemp("other-meltano")
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV) and k != "VIRTUAL_ENV"}
    env["KLAVIYO_SINGER_REPO"] = f"file://{repo}@v0.1.0"

    def meltano(*args: str, cwd: Path = home / "analytics", timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([str(meltano_bin), *args], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)

    created = meltano("init", "analytics", "--no_usage_stats", cwd=home)
    assert created.returncode == 0, created.stdout + created.stderr
    started = time.monotonic()
    for kind, name in (("extractor", "tap-klaviyo-singer"), ("loader", "target-klaviyo-singer")):
        folder = "extractors" if kind == "extractor" else "loaders"
        added = meltano("add", kind, name, "--from-ref", str(repo / "plugins" / folder / f"{name}.yml"))
        assert added.returncode == 0, added.stdout[-3000:] + added.stderr[-3000:]
    TIMINGS["add both plugins from git"] = time.monotonic() - started
    meltano.root = home / "analytics"  # type: ignore[attr-defined]
    return meltano


def test_the_plugins_are_custom_and_installed_from_the_git_repository(other_project) -> None:
    project = yaml.safe_load((other_project.root / "meltano.yml").read_text())
    plugins = {p["name"]: p for kind in project["plugins"].values() for p in kind}

    assert set(plugins) == {"tap-klaviyo-singer", "target-klaviyo-singer"}
    for plugin in plugins.values():
        assert plugin["pip_url"] == "git+${KLAVIYO_SINGER_REPO}" and "variant" not in plugin
    listed = other_project("config", "tap-klaviyo-singer", "list")
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "rate_limit_share" in listed.stdout and "start_date" in listed.stdout


def test_the_test_command_and_a_pipeline_work(other_project, klaviyo) -> None:
    for plugin in ("tap-klaviyo-singer", "target-klaviyo-singer"):
        for setting, value in (("api_key", klaviyo.api_key), ("base_url", klaviyo.base_url)):
            assert other_project("config", plugin, "set", setting, value).returncode == 0
    assert other_project("config", "target-klaviyo-singer", "set", "list_name", LIST_NAME).returncode == 0
    assert other_project("config", "target-klaviyo-singer", "set", "wait_for_completion", "true").returncode == 0
    assert other_project("select", "tap-klaviyo-singer", "profiles", "*").returncode == 0

    checked = other_project("invoke", "tap-klaviyo-singer:test")
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]
    assert "Connected to Klaviyo account" in checked.stdout + checked.stderr

    run = other_project("run", "tap-klaviyo-singer", "target-klaviyo-singer")
    assert run.returncode == 0, run.stderr[-4000:]
    members = pipeline_report.list_members(klaviyo.base_url, klaviyo.api_key, LIST_NAME)["emails"]
    assert len(members) >= 10, "the sandbox's profiles with an email were added to the list"
