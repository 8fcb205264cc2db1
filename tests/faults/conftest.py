"""Fixtures of the fault tests, and the figures they print at the end of the session.

Set ``FAULT_FIGURES=path.json`` to also get the figures as JSON.
"""

from __future__ import annotations

import json
import os
import typing as t
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.faults.harness import FIGURES, Output, clean_output

#: Work started with the first fault test, by module name: that module awaits its results.
_BACKGROUND: dict[str, Future | None] = {}
_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faults-background")
NETWORK_MODULE = "tests.faults.test_network_faults"


@pytest.fixture(scope="session")
def faults_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="session")
def background() -> dict[str, Future | None]:
    return _BACKGROUND


def pytest_runtest_setup(item: pytest.Item) -> None:
    """With the first fault test, start the network-fault runs: they mostly sleep through
    back-offs and Retry-After waits, so the CPU-bound modules (bad configs, kills) run
    meanwhile, which saves ~40 s. Only tests in this folder overlap with them."""
    if NETWORK_MODULE in _BACKGROUND:
        return
    if not any("fault_runs" in getattr(i, "fixturenames", ()) for i in item.session.items):
        _BACKGROUND[NETWORK_MODULE] = None  # no selected test needs them: nothing to start
        return
    from tests.faults import test_network_faults

    workdir = item.config._tmp_path_factory.mktemp("faults-network")
    _BACKGROUND[NETWORK_MODULE] = _POOL.submit(test_network_faults.run_fault_matrix, workdir)


def pytest_sessionfinish(session: pytest.Session) -> None:
    _POOL.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="session")
def expected(faults_workdir: Path) -> t.Callable[..., Output]:
    """``expected(seed)``: the records a fault-free full sync of that sandbox emits."""
    return lambda seed, **config: clean_output(seed, faults_workdir, **config)


def pytest_terminal_summary(terminalreporter: t.Any) -> None:
    figures = FIGURES.as_dict()
    if not any(v for k, v in figures.items() if k != "rows_lost") and not figures["faults_injected_and_survived"]:
        return
    terminalreporter.section("fault tests: figures")
    for key, value in figures.items():
        terminalreporter.write_line(f"{key}: {json.dumps(value)}")
    target = os.environ.get("FAULT_FIGURES")
    if target:
        Path(target).write_text(json.dumps(figures, indent=2))
