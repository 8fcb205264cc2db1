"""The benchmark scripts themselves: --baseline's side-by-side figures and a revision it cannot install,
a profiler that is not installed, the untimed target run before a removal benchmark."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


benchmark = load_script("benchmark")


def row(tap: str, cpu: float, records_per_s: int, rss: float) -> dict:
    return {
        "tap": tap, "stream": "profiles", "max_concurrency": 8, "records": 50_000, "wall_s": 30.0,
        "records_per_s": records_per_s, "requests_per_s": 16.0, "steady_requests_per_s": 15.0,
        "steady_limit_per_s": 12.5, "status_429": 0, "cpu_s_per_100k": cpu, "peak_rss_mb": rss,
        "tap_cpu_pct": 8, "sandbox_cpu_pct": 23, "load_before": 0.1, "load_after": 0.2,
    }  # fmt: skip


def test_medians_of_each_tap_and_their_ratio(capsys):
    rows = [
        row("80a50cd", 12.0, 1_000, 70.0), row("this checkout", 5.0, 1_600, 58.0),
        row("80a50cd", 10.0, 1_200, 71.0), row("this checkout", 4.0, 1_500, 57.0),
        row("80a50cd", 30.0, 800, 69.0), row("this checkout", 6.0, 1_400, 59.0),
    ]  # fmt: skip
    benchmark.print_baseline_table(rows)
    lines = capsys.readouterr().out.splitlines()
    assert "| 80a50cd | profiles | 50,000 | 12.00 | 1,000 | 70.0 | CPU 12.0, 10.0, 30.0 |" in lines
    assert "| this checkout | profiles | 50,000 | 5.00 | 1,500 | 58.0 | CPU 5.0, 4.0, 6.0 |" in lines
    assert lines[-1] == (
        "profiles: this checkout takes 2.40x less CPU per record than 80a50cd, reads 1.50x as many "
        "records a second, peak RSS 58.0 against 70.0 MB"
    )


def test_the_stream_table_names_the_tap_only_when_rows_are_of_several(capsys):
    benchmark.print_stream_table([row("this checkout", 5.0, 1_600, 58.0)])
    assert capsys.readouterr().out.startswith("| stream | C |")
    benchmark.print_stream_table([row("80a50cd", 12.0, 1_000, 70.0), row("this checkout", 5.0, 1_600, 58.0)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| tap | stream | C |")
    assert lines[2].startswith("| 80a50cd | profiles | 8 | 50,000 |")


def test_a_revision_the_repository_lacks_is_named(tmp_path):
    with pytest.raises(SystemExit, match=r"--baseline no-such-ref: not a commit of this repository"):
        benchmark.install_baseline("no-such-ref", tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing installed


def test_syncs_alternate_the_baseline_and_this_checkout_pair_by_pair():
    baseline = benchmark.TapBuild(["python"], ROOT, "80a50cd")
    args = argparse.Namespace(pairs=2, rss_check=False)
    planned = [(scale, tap.name, label) for scale, tap, label in benchmark.planned_syncs(25.0, args, baseline)]
    assert planned == [
        (25.0, "80a50cd", "80a50cd-1"), (25.0, "this checkout", "this-1"),
        (25.0, "80a50cd", "80a50cd-2"), (25.0, "this checkout", "this-2"),
    ]  # fmt: skip
    alone = benchmark.planned_syncs(25.0, argparse.Namespace(pairs=2, rss_check=True), None)
    assert [(scale, tap.name, label) for scale, tap, label in alone] == [
        (2.5, "this checkout", ""), (25.0, "this checkout", "")
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("script", "argv"),
    [
        ("benchmark", ["--streams", "profiles", "--profile", "py-spy"]),
        ("bench_requests", ["--profile", "--requests", "2"]),
    ],
)
def test_a_profiler_not_installed_is_named_before_anything_starts(script, argv, monkeypatch, capsys, tmp_path):
    module = load_script(script)
    monkeypatch.setattr(module, "PY_SPY", tmp_path / "py-spy")
    monkeypatch.setattr(module.subprocess, "Popen", None)  # no sandbox, no sync: a call would fail
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *argv])
    with pytest.raises(SystemExit) as stopped:
        module.main()
    assert stopped.value.code == 2
    assert "py-spy is not installed next to this Python; run " in capsys.readouterr().err.splitlines()[-1]


def test_the_untimed_target_run_before_a_removal_logs_to_a_file_and_fails_in_one_line(monkeypatch, tmp_path):
    sandbox = argparse.Namespace(api_key="pk_test", base_url="http://127.0.0.1:9")
    runs: list[dict] = []

    def failing_run(command, **streams):
        runs.append(streams)
        return 0.1, 0.1, 1024, 1

    monkeypatch.setattr(benchmark, "run", failing_run)
    failed = r"^target failed adding the rows to remove \(exit 1\); see .*remove-setup\.log$"
    with pytest.raises(SystemExit, match=failed):
        benchmark.add_for_removal(sandbox, 3, tmp_path)
    assert runs[0]["stderr"].name == str(tmp_path / "target-remove-setup.log")  # not the benchmark's own stderr
