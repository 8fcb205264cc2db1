"""End-to-end fixtures: the pipelines run through Meltano, the way users run them, on the sandbox.

- Meltano is installed by the tests themselves, in its own virtualenv (``.venv-meltano``, shared
  with ``./scripts/demo.sh``; never a dependency of the connectors), by ``scripts/setup_meltano.sh``.
  When that is impossible (no network) the e2e tests skip, saying why; on CI (``CI`` set) they fail.
- The Meltano project is a temporary copy of the repository (what a fresh clone has), so ``.meltano/``
  and ``output/`` never touch the working tree. Its plugins are installed once per session
  (``meltano install``, with the ``pip_url``s of meltano.yml as they are).
- Each test module gets its own Meltano system database (``MELTANO_DATABASE_URI``, so its own
  state) and its own sandbox, whose clock is the real one (as Klaviyo's is).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import typing as t
from pathlib import Path

import pytest

from tests.e2e.helpers import NOT_COPIED, ROOT, TIMINGS, MeltanoProject


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here carries the ``e2e`` marker (``-m "not e2e"`` leaves Meltano out)."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.e2e)


def _required() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("E2E_REQUIRED"))


def _copy_project(destination: Path) -> None:
    """The working tree as a clone would have it: git's tracked and unignored files, else a filtered copy."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0:
        shutil.copytree(ROOT, destination, ignore=shutil.ignore_patterns(*NOT_COPIED), dirs_exist_ok=True)
        return
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


@pytest.fixture(scope="session")
def meltano_bin() -> Path:
    """Meltano, in its own virtualenv, installed by scripts/setup_meltano.sh when missing."""
    started = time.monotonic()
    try:
        done = subprocess.run(
            ["bash", str(ROOT / "scripts" / "setup_meltano.sh"), "--venv-only"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        problem = "" if done.returncode == 0 else done.stderr.strip()[-2000:]
    except (OSError, subprocess.TimeoutExpired) as exc:
        problem = str(exc)
    if problem:
        reason = f"cannot install Meltano for the e2e tests (scripts/setup_meltano.sh --venv-only): {problem}"
        if _required():
            pytest.fail(reason)
        pytest.skip(reason)
    TIMINGS["meltano venv"] = time.monotonic() - started
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def meltano_project(meltano_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> MeltanoProject:
    """A temporary copy of the project, its plugins installed once for the whole session."""
    root = tmp_path_factory.mktemp("meltano-project")
    _copy_project(root)
    (root / "output").mkdir(exist_ok=True)
    project = MeltanoProject(root, meltano_bin)
    installed = project.run("install", timeout=900)
    TIMINGS["meltano install"] = installed.seconds
    # Meltano itself installed, so the package index is reachable: a plugin that does not install is a bug.
    installed.check()
    return project


@pytest.fixture(scope="module")
def project(meltano_project: MeltanoProject, tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[MeltanoProject]:
    """The session's project with a system database (state) of this module's own."""
    folder = tmp_path_factory.mktemp("meltano-db")
    meltano_project.extra_env = {"MELTANO_DATABASE_URI": f"sqlite:///{folder / 'meltano.db'}"}
    yield meltano_project
    meltano_project.extra_env = {}


@pytest.fixture(scope="module")
def klaviyo() -> t.Iterator[t.Any]:
    """A sandbox Klaviyo with small data, Klaviyo's rate limits, and the real clock."""
    from klaviyo_sandbox import Sandbox, SandboxConfig

    with Sandbox(SandboxConfig(seed=11, scale=0.05, now="now", job_seconds=0.5)) as box:
        yield box


def pytest_terminal_summary(terminalreporter: t.Any) -> None:
    if TIMINGS:
        terminalreporter.write_line(
            "e2e timings: " + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in TIMINGS.items())
        )
