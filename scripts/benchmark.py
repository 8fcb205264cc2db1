"""Benchmark tap-klaviyo (and target-klaviyo) against the local Klaviyo sandbox.

    .venv/bin/python scripts/benchmark.py [--streams events,profiles] [--latency-ms 300]
        [--events-scale 250] [--profiles-scale 60] [--max-concurrency 16] [--rss-check]
        [--target 100000] [--baseline 80a50cd [--pairs 3]] [--json]

For each stream a sandbox is started as a subprocess (``python -m klaviyo_sandbox``
with the stream's ``--scale``, ``--latency-ms`` and ``--rate-limit-scale``), the
catalog is discovered once, then the tap syncs that one stream into /dev/null as a
subprocess of its own. Printed per stream: records, wall seconds, records/s,
requests/s (whole run, and steady state = the middle 80% of the run from the
sandbox's request log) against the endpoint's steady limit, 429s received (from the
sandbox's counters), CPU seconds per 100k records, and the tap's peak RSS
(``wait4`` rusage of the tap process). ``--rss-check`` also runs each stream with a
tenth of the data and prints the ratio of the peak RSS.

``--target N`` writes N rows with target-klaviyo (piped from a file of Singer messages),
once per operation of ``--target-operations`` (add, upsert, subscribe, track, remove, remove_ids;
default add), and prints rows/s, requests made per Klaviyo operation, 429s, CPU and RSS. ``remove``
(by email) and ``remove_ids`` (by profile id) first add the rows to the list, untimed.

``--baseline REF`` runs each stream's sync alternately with the tap of git revision REF
(installed into a venv of its own in the work dir, the libraries at this checkout's locked
versions; the sandbox and the settings stay this checkout's) and with this checkout's,
``--pairs`` times, and prints the medians side by side with their ratio: this machine's figure
against the release's in the same minutes, where absolute CPU seconds move by tens of percent
between machines and hours. ``--baseline HEAD`` weighs uncommitted changes against the last
commit. The venv is made once per work dir (``--workdir`` keeps it for the next run).

``--group-catalog SCALE`` syncs ``tags`` alone from the catalog of every stream with a stream per
list and segment (``list_and_segment_streams``), as Meltano passes it: what a run pays for the
streams it does not sync (wall, CPU, peak RSS).

Not a test: nothing is asserted. The sandbox shares the machine's CPUs (it spends
~15-20 ms per 1000-event page), so say what binds when quoting the figures.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import typing as t
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from klaviyo_core import endpoints  # noqa: E402

STREAMS = {  # stream -> (operation, records per sandbox scale unit)
    "events": ("get_events", 20_000),
    "profiles": ("get_profiles", 2_000),
    "list_members": ("get_profiles_for_list", None),
}
TAP = [sys.executable, "-c", "from tap_klaviyo.tap import cli; cli()"]
#: The tap's entry point as a script (for ``python -m cProfile``).
TAP_SCRIPT = str(ROOT / "scripts" / "run_tap.py")
TARGET = [sys.executable, "-c", "from target_klaviyo.target import cli; cli()"]
#: ``--profile py-spy``: the sampling profiler, not a dependency of the plugins, next to this Python.
PY_SPY = Path(sys.executable).with_name("py-spy")


class TapBuild(t.NamedTuple):
    """A tap to run: its command, the working directory it imports from, its name in the tables."""

    command: list[str]
    cwd: Path
    name: str


THIS_CHECKOUT = TapBuild(TAP, ROOT, "this checkout")


class Sandbox:
    """``python -m klaviyo_sandbox`` as a subprocess on a free port."""

    def __init__(
        self,
        *,
        scale: float,
        latency_ms: float,
        rate_limit_scale: float,
        job_seconds: float = 2.0,
        rate_window: str = "fixed",
        data: str = "standard",
        tls: str | None = None,
        gzip: bool = False,
    ) -> None:
        self.args = [
            sys.executable, "-m", "klaviyo_sandbox", "--port", "0", "--scale", str(scale),
            "--latency-ms", str(latency_ms), "--rate-limit-scale", str(rate_limit_scale),
            "--job-seconds", str(job_seconds), "--rate-window", rate_window, "--data", data,
            *(["--tls", tls] if tls else []), *(["--gzip"] if gzip else []),
        ]  # fmt: skip
        self.tls = tls

    def __enter__(self) -> Sandbox:
        self.proc = subprocess.Popen(self.args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().split()
        if len(line) != 2:
            raise SystemExit(f"sandbox did not start: {line}")
        self.base_url, self.api_key = line
        # the sandbox made its certificate before it printed that line
        self.context = ssl.create_default_context(cafile=str(Path(self.tls) / "cert.pem")) if self.tls else None
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    def get(self, path: str) -> t.Any:
        with urllib.request.urlopen(self.base_url + path, context=self.context) as answer:  # the loopback sandbox
            return json.loads(answer.read())

    def counters(self) -> dict[str, int]:
        return self.get("/__sandbox/state")["counters"]


def sandbox_options(args: argparse.Namespace) -> dict[str, t.Any]:
    """The sandbox's options shared by every mode: latency, limits, data, TLS, gzip."""
    return {
        "latency_ms": args.latency_ms, "rate_limit_scale": args.rate_limit_scale, "rate_window": args.rate_window,
        "data": args.data, "tls": args.tls_dir, "gzip": args.gzip,
    }  # fmt: skip


def run(
    command: list[str],
    *,
    stdin: t.IO | None = None,
    stdout: t.IO | None = None,
    stderr: t.IO | None = None,
    cwd: Path = ROOT,
) -> tuple[float, float, int, int]:
    """(wall s, CPU s, peak RSS KB, exit code) of one process (rusage from wait4)."""
    start = time.monotonic()
    proc = subprocess.Popen(command, cwd=cwd, stdin=stdin, stdout=stdout, stderr=stderr)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, proc.returncode


def profiled(command: list[str], how: str | None, stem: Path) -> list[str]:
    """``command`` run under a profiler (its other figures are then off: profiling costs CPU).

    ``py-spy`` samples the thread holding the GIL, which is where the tap spends its CPU (``STEM.txt``:
    collapsed stacks, see :func:`summarize_stacks`);
    ``cprofile`` sees the main thread only (``STEM.prof``).
    """
    if how == "py-spy":
        record = ["record", "--gil", "--rate", "200", "--format", "raw", "--output", f"{stem}.txt"]
        return [str(PY_SPY), *record, "--", *command]
    if how == "cprofile":
        return [sys.executable, "-m", "cProfile", "-o", f"{stem}.prof", TAP_SCRIPT, *command[len(TAP) :]]
    return command


def summarize_stacks(path: Path, top: int = 25) -> str:
    """The functions with the most samples of a py-spy ``--format raw`` file: self and total, in %."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        samples += count
        frames = [frame.split(" (")[0] + " (" + frame.rsplit("/", 1)[-1] for frame in stack.split(";")[1:]]
        if frames:
            own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + count
    lines = [f"{samples} samples (the thread holding the GIL); self % / total %:"]
    for frame, count in sorted(own.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"{100 * count / samples:5.1f} {100 * total[frame] / samples:5.1f}  {frame}")
    return "\n".join(lines)


def steady_rate(log: list[dict], op: str) -> float | None:
    """Requests/s of ``op`` in steady state.

    Runs past 80 s: from 65 s after the first request (the first minute's quota,
    which a sliding window spends up front, is over) to the last request. Shorter
    runs: the middle 80% of the requests' time span.
    """
    times = sorted(entry["t"] for entry in log if entry.get("op") == op)
    if len(times) < 20:
        return None
    span = times[-1] - times[0]
    if span > 80:
        lo, hi = times[0] + 65, times[-1]
    else:
        lo, hi = times[0] + 0.1 * span, times[-1] - 0.1 * span
    inside = [x for x in times if lo <= x <= hi]
    return len(inside) / (hi - lo) if hi > lo else None


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a running process (Linux /proc), 0 when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def record_count(log_text: str, stream: str) -> int:
    """Records the SDK counted (its ``record_count`` metric lines, summed)."""
    total = 0
    for line in log_text.splitlines():
        if '"metric":"record_count"' in line and f'"stream":"{stream}"' in line:
            total += json.loads(line.split("METRIC: ", 1)[1])["value"]
    return total


#: Selects one stream of the catalog on stdin (the stream named by its argument) and prints the
#: number of streams on stderr.
_SELECT_ONE = """
import json, sys
catalog = json.load(sys.stdin)
for entry in catalog["streams"]:
    for item in entry["metadata"]:
        if item["breadcrumb"] == []:
            item["metadata"]["selected"] = entry["tap_stream_id"] == sys.argv[1]
json.dump(catalog, sys.stdout)
print(len(catalog["streams"]), file=sys.stderr)
"""


def discover_selecting(config_path: Path, stream: str, catalog_path: Path, tap: TapBuild = THIS_CHECKOUT) -> int:
    """Write the tap's catalog (``--discover`` with this config) to ``catalog_path``, ``stream``
    alone selected; return its number of streams.

    The catalog is selected in a process of its own: with a stream per list and segment it is
    ~100 MB as Python objects, which this process would otherwise hold while the tap runs (and a
    child process's peak RSS counts what its parent held when it was started).
    """
    found = subprocess.run(
        [*tap.command, "--config", str(config_path), "--discover"], cwd=tap.cwd, capture_output=True, check=True
    )
    with open(catalog_path, "wb") as out:
        selected = subprocess.run([sys.executable, "-c", _SELECT_ONE, stream], input=found.stdout, stdout=out,
                                  stderr=subprocess.PIPE, check=True)  # fmt: skip
    return int(selected.stderr)


def bench_stream(
    stream: str, scale: float, args: argparse.Namespace, work: Path, tap: TapBuild = THIS_CHECKOUT, label: str = ""
) -> dict:
    """One sync of ``stream`` from a fresh sandbox by ``tap`` (``label`` names its files in ``work``)."""
    operation = STREAMS[stream][0]
    steady = endpoints.endpoint(operation).steady_per_minute * args.rate_limit_scale  # what the sandbox enforces
    with Sandbox(scale=scale, **sandbox_options(args)) as sandbox:
        config = {
            "api_key": sandbox.api_key, "base_url": sandbox.base_url,
            "max_concurrency": args.max_concurrency, "discover_custom_fields": args.custom_fields,
            "rate_limit_share": args.rate_limit_share,
        }  # fmt: skip
        config_path = work / f"config-{stream}.json"
        config_path.write_text(json.dumps(config))
        catalog_path = work / f"catalog-{stream}.json"
        discover_selecting(config_path, stream, catalog_path, tap)
        before = sandbox.counters()
        stem = f"{work}/tap-{stream}-{scale}{label and '-' + label}"  # scale has a dot: no with_suffix
        log_path = Path(f"{stem}.log")
        sandbox_cpu = process_cpu_seconds(sandbox.proc.pid)
        load = os.getloadavg()[0]
        command = profiled(tap.command, args.profile, Path(stem))
        with open(os.devnull, "wb") as sink, open(log_path, "w") as log:
            wall, cpu, rss_kb, exit_code = run(
                [*command, "--config", str(config_path), "--catalog", str(catalog_path)],
                stdout=sink, stderr=log, cwd=tap.cwd,
            )  # fmt: skip
        sandbox_cpu = process_cpu_seconds(sandbox.proc.pid) - sandbox_cpu
        after = sandbox.counters()
        request_log = sandbox.get("/__sandbox/requests?limit=100000")
    if exit_code:
        raise SystemExit(f"tap failed on {stream} (exit {exit_code}); see {log_path}")
    if args.profile == "py-spy":
        print(summarize_stacks(Path(f"{stem}.txt")), flush=True)
    records = record_count(log_path.read_text(), stream)
    requests = after.get(f"op:{operation}", 0) - before.get(f"op:{operation}", 0)
    throttled = after.get("status:429", 0) - before.get("status:429", 0)
    return {
        "stream": stream, "scale": scale, "records": records, "wall_s": round(wall, 1),
        "records_per_s": round(records / wall), "requests": requests,
        "requests_per_s": round(requests / wall, 1),
        "steady_requests_per_s": _round(steady_rate(request_log, operation)),
        "steady_limit_per_s": round(steady / 60, 1), "status_429": throttled,
        "cpu_s": round(cpu, 1), "cpu_s_per_100k": round(cpu / max(records, 1) * 100_000, 2),
        "peak_rss_mb": round(rss_kb / 1024, 1), "tap_cpu_pct": round(100 * cpu / wall),
        "sandbox_cpu_pct": round(100 * sandbox_cpu / wall), "load_before": round(load, 1),
        "load_after": round(os.getloadavg()[0], 1), "max_concurrency": args.max_concurrency, "log": str(log_path),
        "tap": tap.name,
    }  # fmt: skip


def install_baseline(revision: str, work: Path) -> TapBuild:
    """The tap of git ``revision`` installed into a venv of its own in ``work``: its code and the
    dependencies it declares, at the versions this checkout's lock pins where the lock names them
    (so the figures compare the code, not the libraries' releases).

    Run from ``work``, it imports the installed packages, never this checkout's: checked here.
    """
    git = ["git", "-C", str(ROOT)]
    commit = [*git, "rev-parse", "--short", f"{revision}^{{commit}}"]
    found = subprocess.run(commit, capture_output=True, text=True, check=False)
    if found.returncode:
        raise SystemExit(f"--baseline {revision}: not a commit of this repository ({found.stderr.strip()})")
    short = found.stdout.strip()
    home = work / f"baseline-{short}"
    python = home / "venv" / "bin" / "python"
    installed = home / "installed"  # written last: an install cut short is made again
    if not installed.exists():
        shutil.rmtree(home, ignore_errors=True)
        (home / "src").mkdir(parents=True)
        archive = subprocess.run([*git, "archive", short], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(home / "src")], input=archive.stdout, check=True)
        subprocess.run([sys.executable, "-m", "venv", str(home / "venv")], check=True)
        lock = ROOT / "requirements" / "lock.txt"
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-c", str(lock), str(home / "src")], check=True)
        installed.touch()
    tap = TapBuild([str(python), *TAP[1:]], work, short)
    where = subprocess.run([str(python), "-c", "import tap_klaviyo; print(tap_klaviyo.__file__)"],
                           cwd=tap.cwd, capture_output=True, text=True, check=False)  # fmt: skip
    if where.returncode:
        raise SystemExit(f"--baseline {revision}: its tap does not import ({where.stderr.strip().splitlines()[-1]})")
    if not Path(where.stdout.strip()).resolve().is_relative_to((home / "venv").resolve()):
        raise SystemExit(f"--baseline {revision}: its python imports tap_klaviyo from {where.stdout.strip()}")
    return tap


def planned_syncs(
    scale: float, args: argparse.Namespace, baseline: TapBuild | None
) -> list[tuple[float, TapBuild, str]]:
    """A stream's syncs as (scale, tap, label): with a baseline, ``--pairs`` of its tap's, each
    followed by this checkout's; else this checkout's, after one of a tenth of the data for ``--rss-check``."""
    if baseline is not None:
        return [
            (scale, tap, f"{name}-{pair}")
            for pair in range(1, args.pairs + 1)
            for tap, name in ((baseline, baseline.name), (THIS_CHECKOUT, "this"))
        ]
    smaller = [(scale / 10, THIS_CHECKOUT, "")] if args.rss_check else []
    return [*smaller, (scale, THIS_CHECKOUT, "")]


def print_baseline_table(rows: list[dict]) -> None:
    """Per stream, the medians of the baseline's runs and of this checkout's, and their ratio."""
    header = ("stream", "records", "CPU s/100k", "records/s", "peak RSS MB", "each run")
    print("| " + " | ".join(("tap", *header)) + " |")
    print("|" + "|".join("---" for _ in range(len(header) + 1)) + "|")
    medians: dict[tuple[str, str], dict[str, float]] = {}
    for stream in dict.fromkeys(r["stream"] for r in rows):
        for tap in dict.fromkeys(r["tap"] for r in rows if r["stream"] == stream):
            runs = [r for r in rows if r["stream"] == stream and r["tap"] == tap]
            figures = {name: statistics.median(r[name] for r in runs)
                       for name in ("cpu_s_per_100k", "records_per_s", "peak_rss_mb")}  # fmt: skip
            medians[stream, tap] = figures
            each = ", ".join(str(r["cpu_s_per_100k"]) for r in runs)
            print(f"| {tap} | {stream} | {runs[0]['records']:,} | {figures['cpu_s_per_100k']:.2f} | "
                  f"{figures['records_per_s']:,.0f} | {figures['peak_rss_mb']:.1f} | CPU {each} |")  # fmt: skip
    for (stream, tap), figures in medians.items():
        this = medians.get((stream, THIS_CHECKOUT.name))
        if tap != THIS_CHECKOUT.name and this:
            cpu = figures["cpu_s_per_100k"] / this["cpu_s_per_100k"]
            speed = this["records_per_s"] / figures["records_per_s"]
            print(f"{stream}: this checkout takes {cpu:.2f}x less CPU per record than {tap}, reads {speed:.2f}x "
                  f"as many records a second, peak RSS {this['peak_rss_mb']:.1f} against "
                  f"{figures['peak_rss_mb']:.1f} MB")  # fmt: skip


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


#: target-klaviyo operations the benchmark can run: extra settings, and each row's columns.
TARGET_OPERATIONS: dict[str, dict[str, t.Any]] = {
    "add": {"list_name": "Benchmark"},
    "upsert": {},
    "subscribe": {},
    "unsubscribe": {},
    "suppress": {},
    "track": {"metric_name": "Placed Order"},
    # remove: the rows are first added to the list (not timed), then removed by email (looked up) or by id
    "remove": {"operation": "remove", "list_name": "Benchmark"},
    "remove_ids": {"operation": "remove", "list_name": "Benchmark"},
}


def target_row(operation: str, i: int, profile_ids: list[str] | None = None) -> dict:
    """Row ``i`` of the benchmark input for ``operation`` (deterministic)."""
    email = f"bench.{i}@example.com"
    if operation == "remove":
        return {"email": email}
    if operation == "remove_ids":
        return {"profile_id": profile_ids[i] if profile_ids else ""}
    if operation in ("subscribe", "unsubscribe"):
        phone = f"+1415{i % 10_000_000:07d}" if i % 10 == 0 else None  # every 10th also subscribes to SMS
        consented = "2025-03-01T12:00:00Z" if i % 2 else None  # half are historical imports
        return {"email": email, "phone_number": phone, "consented_at": consented if operation == "subscribe" else None}
    if operation == "track":
        return {"email": email, "unique_id": f"order-{i}", "time": "2026-05-01T12:00:00Z", "value": i % 97 + 0.5,
                "properties": {"items": i % 5 + 1, "sku": f"SKU-{i % 300}"}}  # fmt: skip
    return {"email": email, "first_name": f"Person {i}", "plan": "pro" if i % 3 else "free", "orders": i % 17}


def write_target_input(path: Path, operation: str, rows: int, profile_ids: list[str] | None = None) -> None:
    with path.open("w") as out:
        columns = target_row(operation, 0, profile_ids)
        schema = {"type": "object", "properties": {c: {} for c in columns}}
        out.write(json.dumps({"type": "SCHEMA", "stream": "people", "schema": schema, "key_properties": []}) + "\n")
        for i in range(rows):
            row = target_row(operation, i, profile_ids)
            out.write(json.dumps({"type": "RECORD", "stream": "people", "record": row}) + "\n")
        out.write(json.dumps({"type": "STATE", "value": {"people": "done"}}) + "\n")


def api_get(sandbox: Sandbox, path: str) -> dict:
    request = urllib.request.Request(
        sandbox.base_url + path,
        headers={"Authorization": f"Klaviyo-API-Key {sandbox.api_key}", "revision": "2026-07-15"},
    )
    with urllib.request.urlopen(request) as answer:  # the loopback sandbox
        return json.loads(answer.read())


def add_for_removal(sandbox: Sandbox, rows: int, work: Path) -> list[str]:
    """Put the benchmark's profiles on the list "Benchmark" (waiting for the jobs); their ids, in row order."""
    input_path = work / "remove-setup.singer"
    write_target_input(input_path, "add", rows)
    config_path = work / "target-config-remove-setup.json"
    config_path.write_text(json.dumps({
        "api_key": sandbox.api_key, "base_url": sandbox.base_url, "list_name": "Benchmark",
        "wait_for_completion": True, "rejects_file": str(work / "rejects-remove-setup.jsonl"),
    }))  # fmt: skip
    log_path = work / "target-remove-setup.log"
    with input_path.open("rb") as source, open(os.devnull, "wb") as sink, open(log_path, "w") as log:
        code = run([*TARGET, "--config", str(config_path)], stdin=source, stdout=sink, stderr=log)[3]
    if code:
        raise SystemExit(f"target failed adding the rows to remove (exit {code}); see {log_path}")
    ids: dict[str, str] = {}
    path = "/api/profiles?page[size]=100&fields[profile]=email"
    while path:
        document = api_get(sandbox, path)
        ids.update({p["attributes"]["email"]: p["id"] for p in document["data"] if p["attributes"].get("email")})
        path = (document.get("links") or {}).get("next") or ""
        path = path[len(sandbox.base_url) :] if path.startswith(sandbox.base_url) else path
    return [ids[f"bench.{i}@example.com"] for i in range(rows)]


def bench_target(rows: int, args: argparse.Namespace, work: Path, operation: str = "add") -> dict:
    input_path = work / f"{operation}.singer"
    if not operation.startswith("remove"):
        write_target_input(input_path, operation, rows)
    with Sandbox(
        scale=0.01,
        latency_ms=args.latency_ms,
        rate_limit_scale=args.rate_limit_scale,
        job_seconds=args.job_seconds,
        rate_window=args.rate_window,
    ) as sandbox:
        if operation.startswith("remove"):
            write_target_input(input_path, operation, rows, add_for_removal(sandbox, rows, work))
        config = {
            "api_key": sandbox.api_key, "base_url": sandbox.base_url, "operation": operation,
            "wait_for_completion": args.wait_for_completion, "max_concurrency": args.max_concurrency,
            "rate_limit_share": args.rate_limit_share,
            "rejects_file": str(work / f"rejects-{operation}.jsonl"), **TARGET_OPERATIONS[operation],
        }  # fmt: skip
        config_path = work / f"target-config-{operation}.json"
        config_path.write_text(json.dumps(config))
        before = sandbox.counters()
        log_path = work / f"target-{operation}.log"
        with input_path.open("rb") as source, open(os.devnull, "wb") as sink, open(log_path, "w") as log:
            wall, cpu, rss_kb, code = run(
                [*TARGET, "--config", str(config_path)], stdin=source, stdout=sink, stderr=log
            )
        after = sandbox.counters()
    if code:
        raise SystemExit(f"target failed (exit {code}); see {log_path}")
    ops = {k[3:]: after.get(k, 0) - before.get(k, 0) for k in after if k.startswith("op:")}
    return {
        "operation": operation, "profiles": rows, "wall_s": round(wall, 1), "profiles_per_s": round(rows / wall),
        "jobs": ops.get("bulk_import_profiles", 0), "requests": sum(ops.values()), "requests_by_operation": ops,
        "status_429": after.get("status:429", 0) - before.get("status:429", 0), "cpu_s": round(cpu, 1),
        "peak_rss_mb": round(rss_kb / 1024, 1), "wait_for_completion": args.wait_for_completion,
        "latency_ms": args.latency_ms, "max_concurrency": args.max_concurrency, "log": str(log_path),
    }  # fmt: skip


def bench_discovery(args: argparse.Namespace, work: Path) -> dict:
    """``--discover`` with the tap's defaults (``row_scan_depth`` 1000): wall and CPU of the process."""
    with Sandbox(scale=args.discovery_scale, **sandbox_options(args)) as sandbox:
        config_path = work / "config-discovery.json"
        config_path.write_text(json.dumps({"api_key": sandbox.api_key, "base_url": sandbox.base_url}))
        log_path = work / "tap-discovery.log"
        before = sandbox.counters()
        with open(os.devnull, "wb") as sink, open(log_path, "w") as log:
            wall, cpu, rss_kb, code = run([*TAP, "--config", str(config_path), "--discover"], stdout=sink, stderr=log)
        after = sandbox.counters()
    if code:
        raise SystemExit(f"discovery failed (exit {code}); see {log_path}")
    requests = sum(after.get(k, 0) - before.get(k, 0) for k in after if k.startswith("op:"))
    return {
        "mode": "discovery", "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "requests": requests,
        "latency_ms": args.latency_ms, "peak_rss_mb": round(rss_kb / 1024, 1), "log": str(log_path),
    }  # fmt: skip


def bench_group_catalog(scale: float, args: argparse.Namespace, work: Path) -> dict:
    """A sync of ``tags`` alone from the catalog of every stream with ``list_and_segment_streams``
    on (25 lists and 12 segments per unit of sandbox scale): what a run pays for the streams it
    does not sync."""
    with Sandbox(scale=scale, **sandbox_options(args)) as sandbox:
        config = {"api_key": sandbox.api_key, "base_url": sandbox.base_url, "list_and_segment_streams": True}
        config_path, catalog_path = work / "config-groups.json", work / "catalog-groups.json"
        config_path.write_text(json.dumps(config))
        streams = discover_selecting(config_path, "tags", catalog_path)
        log_path = work / "tap-groups.log"
        with open(os.devnull, "wb") as sink, open(log_path, "w") as log:
            command = [*TAP, "--config", str(config_path), "--catalog", str(catalog_path)]
            wall, cpu, rss_kb, code = run(command, stdout=sink, stderr=log)
    if code:
        raise SystemExit(f"the sync failed (exit {code}); see {log_path}")
    return {
        "mode": "one stream from a catalog of lists", "scale": scale, "streams": streams,
        "catalog_mb": round(catalog_path.stat().st_size / 2**20, 1), "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2), "peak_rss_mb": round(rss_kb / 1024, 1), "log": str(log_path),
    }  # fmt: skip


def bench_full_sync(scale: float, args: argparse.Namespace, work: Path) -> dict:
    """Every stream in one sync (discovery included): requests, 429s and whether it finished.

    With ``--rate-limit-scale`` below 1 and ``rate_limit_share`` left at 1 this plays an
    account whose quota other integrations mostly use up: the tap paces to the published
    limits and must learn the smaller ones from Klaviyo's answers.
    """
    with Sandbox(scale=scale, **sandbox_options(args)) as sandbox:
        config = {
            "api_key": sandbox.api_key, "base_url": sandbox.base_url,
            "max_concurrency": args.max_concurrency, "rate_limit_share": args.rate_limit_share,
        }  # fmt: skip
        config_path = work / "config-full.json"
        config_path.write_text(json.dumps(config))
        log_path = work / f"tap-full-{args.max_concurrency}.log"
        with open(os.devnull, "wb") as sink, open(log_path, "w") as log:
            wall, cpu, _rss_kb, code = run([*TAP, "--config", str(config_path)], stdout=sink, stderr=log)
        counters = sandbox.counters()
    requests = sum(value for key, value in counters.items() if key.startswith("op:"))
    throttled = counters.get("status:429", 0)
    return {
        "mode": "full sync", "scale": scale, "rate_limit_scale": args.rate_limit_scale,
        "max_concurrency": args.max_concurrency, "finished": code == 0, "exit_code": code,
        "wall_s": round(wall, 1), "requests": requests, "status_429": throttled,
        "share_429": round(throttled / max(requests, 1), 3), "cpu_s": round(cpu, 1), "log": str(log_path),
        "stream_seconds": stream_seconds(log_path),
    }  # fmt: skip


def stream_seconds(log_path: Path) -> dict[str, float]:
    """Seconds per stream from the SDK's ``sync_duration`` metrics, longest first.

    A parent's time includes its child streams' (the SDK syncs a parent's children inline).
    """
    totals: dict[str, float] = {}
    for line in log_path.read_text().splitlines():
        if '"sync_duration"' not in line or "METRIC: " not in line:
            continue
        metric = json.loads(line.split("METRIC: ", 1)[1])
        stream = metric.get("tags", {}).get("stream", "?")
        totals[stream] = totals.get(stream, 0.0) + float(metric.get("value") or 0.0)
    return {name: round(value, 1) for name, value in sorted(totals.items(), key=lambda item: -item[1])}


def print_stream_table(rows: list[dict]) -> None:
    """A row per sync; the tap's name first when the rows are of several (``--baseline``)."""
    header = ("stream", "C", "records", "wall s", "records/s", "req/s", "req/s steady", "steady limit/s",
              "% of limit", "429s", "CPU s/100k", "peak RSS MB", "tap CPU", "sandbox CPU", "load")  # fmt: skip
    several = len({r["tap"] for r in rows}) > 1
    if several:
        header = ("tap", *header)
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        steady = r["steady_requests_per_s"] or r["requests_per_s"]
        share = f"{100 * steady / r['steady_limit_per_s']:.0f}%" if r["steady_limit_per_s"] else "-"
        cells = (r["stream"], r["max_concurrency"], f"{r['records']:,}", r["wall_s"], f"{r['records_per_s']:,}",
                 r["requests_per_s"], r["steady_requests_per_s"], r["steady_limit_per_s"], share, r["status_429"],
                 r["cpu_s_per_100k"], r["peak_rss_mb"], f"{r['tap_cpu_pct']}%", f"{r['sandbox_cpu_pct']}%",
                 f"{r['load_before']}→{r['load_after']}")  # fmt: skip
        print("| " + " | ".join(str(c) for c in ((r["tap"], *cells) if several else cells)) + " |")


def cache_bytecode() -> None:
    """Run the plugins as installed: their modules compiled once, not on every run.

    pip compiles an installed package's bytecode at install time; this checkout, under
    ``PYTHONDONTWRITEBYTECODE=1``, compiled every module of the plugins on every run
    (~0.1 s of CPU, counted in each run's CPU). The packages are compiled here, before
    anything is timed, into their ``__pycache__`` (ignored by git), which Python reads
    even when told not to write it; a module changed since is compiled as before.
    """
    for package in ("klaviyo_core", "tap_klaviyo", "target_klaviyo"):
        compileall.compile_dir(ROOT / package, quiet=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="events,profiles", help="comma list; '' for none")
    parser.add_argument("--events-scale", type=float, default=250.0, help="sandbox --scale for events (20,000 each)")
    parser.add_argument("--profiles-scale", type=float, default=60.0, help="sandbox --scale for profiles (2,000 each)")
    parser.add_argument("--list-members-scale", type=float, default=20.0)
    parser.add_argument("--latency-ms", type=float, default=300.0)
    parser.add_argument("--rate-limit-scale", type=float, default=1.0)
    parser.add_argument("--rate-window", choices=("fixed", "sliding"), default="fixed")
    parser.add_argument(
        "--rate-limit-share",
        type=float,
        default=1.0,
        help="the plugins' rate_limit_share (e.g. equal to --rate-limit-scale, so they pace to it)",
    )
    parser.add_argument("--max-concurrency", type=int, default=8)
    parser.add_argument(
        "--data",
        choices=("standard", "realistic"),
        default="standard",
        help="the sandbox's --data (realistic: "
        "a dozen metrics' property sets, nested line items, types varying between records; typed profile fields)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="the sandbox serves HTTPS (self-signed; the tap trusts it: REQUESTS_CA_BUNDLE)",
    )
    parser.add_argument("--gzip", action="store_true", help="the sandbox gzips answers (the tap asks for gzip)")
    parser.add_argument(
        "--custom-fields",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="discover_custom_fields (the tap's default: on)",
    )
    parser.add_argument("--rss-check", action="store_true", help="also run each stream with a tenth of the data")
    parser.add_argument("--target", type=int, default=0, metavar="N", help="write N rows with target-klaviyo")
    parser.add_argument(
        "--target-operations",
        default="add",
        help=f"comma list of target operations to run with --target ({', '.join(TARGET_OPERATIONS)})",
    )
    parser.add_argument("--job-seconds", type=float, default=10.0, help="sandbox bulk import job duration")
    parser.add_argument("--wait-for-completion", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--full-sync",
        type=float,
        default=0.0,
        metavar="SCALE",
        help="also sync every stream at once from a sandbox of this --scale; report 429s",
    )
    parser.add_argument(
        "--profile",
        choices=("py-spy", "cprofile"),
        help="run each sync under a profiler (files in the work dir; py-spy: the GIL holder, summary printed)",
    )
    parser.add_argument(
        "--discovery",
        action="store_true",
        help="time --discover (default settings) against a sandbox of --discovery-scale",
    )
    parser.add_argument("--discovery-scale", type=float, default=1.0)
    parser.add_argument(
        "--group-catalog",
        type=float,
        default=0.0,
        metavar="SCALE",
        help="sync tags alone from a catalog of every stream and a stream per list and segment "
        "(sandbox of this --scale: 25 lists and 12 segments each)",
    )
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="sync each stream alternately with the tap of this git revision and with this checkout's "
        "(--pairs times each), and print both medians and their ratio",
    )
    parser.add_argument("--pairs", type=int, default=3, help="runs of each tap with --baseline")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    parser.add_argument("--workdir", default=None)
    parser.add_argument(
        "--compile-each-run",
        action="store_true",
        help="let the plugins compile their modules on every run when PYTHONDONTWRITEBYTECODE is set "
        "(default: compiled once into their __pycache__, as pip's install does)",
    )
    args = parser.parse_args()
    if args.baseline and (args.rss_check or args.profile == "cprofile"):
        parser.error("--baseline runs each stream in pairs: not with --rss-check or --profile cprofile")
    if args.profile == "py-spy" and not PY_SPY.exists():
        parser.error(
            f"--profile py-spy: py-spy is not installed next to this Python; run {sys.executable} -m pip install py-spy"
        )
    work = Path(args.workdir or tempfile.mkdtemp(prefix="klaviyo-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    args.tls_dir = None
    if args.tls:  # a certificate of this run, trusted by the tap's processes only (verification stays on)
        args.tls_dir = str(work / "tls")
        os.environ["REQUESTS_CA_BUNDLE"] = str(Path(args.tls_dir) / "cert.pem")
    if not args.compile_each_run:
        cache_bytecode()
    print(f"# {' '.join(sys.argv)}  (work files in {work}; {os.cpu_count()} CPUs)", flush=True)
    rows: list[dict] = []
    baseline = install_baseline(args.baseline, work) if args.baseline else None
    for stream in [s for s in args.streams.split(",") if s]:
        for scale, tap, label in planned_syncs(getattr(args, f"{stream}_scale"), args, baseline):
            rows.append(bench_stream(stream, scale, args, work, tap, label))
            print(json.dumps(rows[-1]), flush=True)
    if rows:
        print()
        print_stream_table(rows)
        if args.baseline:
            print()
            print_baseline_table(rows)
        if args.rss_check:
            for small, big in zip(rows[::2], rows[1::2]):
                print(
                    f"peak RSS {big['stream']}: {big['peak_rss_mb']} MB with 10x the data of "
                    f"{small['peak_rss_mb']} MB ({big['peak_rss_mb'] / small['peak_rss_mb']:.2f}x)"
                )
    result: dict[str, t.Any] = {"streams": rows}
    if args.target:
        result["target"] = []
        for operation in [o for o in args.target_operations.split(",") if o]:
            target = bench_target(args.target, args, work, operation)
            result["target"].append(target)
            print()
            print(
                f"target {operation}: {target['profiles']:,} rows in {target['wall_s']} s = "
                f"{target['profiles_per_s']:,} rows/s; {target['requests']} requests "
                f"{target['requests_by_operation']}; {target['status_429']} 429s; CPU {target['cpu_s']} s; "
                f"peak RSS {target['peak_rss_mb']} MB (wait_for_completion={target['wait_for_completion']}, "
                f"latency {target['latency_ms']:g} ms, max_concurrency {target['max_concurrency']})",
                flush=True,
            )
    if args.discovery:
        found = bench_discovery(args, work)
        result["discovery"] = found
        print(
            f"\ndiscovery at {found['latency_ms']:g} ms latency: {found['wall_s']} s wall, {found['cpu_s']} s CPU, "
            f"{found['requests']} requests, peak RSS {found['peak_rss_mb']} MB",
            flush=True,
        )
    if args.group_catalog:
        groups = bench_group_catalog(args.group_catalog, args, work)
        result["group_catalog"] = groups
        print(
            f"\ntags alone from a catalog of {groups['streams']} streams ({groups['catalog_mb']} MB): "
            f"{groups['wall_s']} s wall, {groups['cpu_s']} s CPU, peak RSS {groups['peak_rss_mb']} MB",
            flush=True,
        )
    if args.full_sync:
        full = bench_full_sync(args.full_sync, args, work)
        result["full_sync"] = full
        print()
        print(
            f"full sync (scale {full['scale']}, limits x{full['rate_limit_scale']}, max_concurrency "
            f"{full['max_concurrency']}): finished={full['finished']} in {full['wall_s']} s; {full['requests']} "
            f"requests, {full['status_429']} answered 429 ({100 * full['share_429']:.1f}%)"
        )
        slowest = list(full["stream_seconds"].items())[:8]
        print("  seconds per stream (a parent's include its children's): " + ", ".join(f"{n} {v}" for n, v in slowest))
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
