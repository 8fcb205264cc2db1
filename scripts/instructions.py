"""Instructions the tap executes (valgrind's callgrind): A/B comparisons that timings cannot make.

    .venv/bin/python scripts/instructions.py [--stream profiles] [--requests 30,130] [--scales 1,5]
        [--max-concurrency 8] [--skip-requests] [--skip-sync]

CPU seconds on the shared development machine move by 10-20% between runs of the same code,
which hides a change of a few percent; the instructions a run executes barely move. Each figure
is the difference of two runs, so start-up cancels out:

* per page request: ``scripts/bench_requests.py``'s measured process (``fetch_page``: the request
  built, paced, sent, its body read and split) making the larger and the smaller number of
  ``--requests``, against a sandbox without rate limits;
* per record of a whole sync: ``tap-klaviyo`` syncing ``--stream`` (selected alone, discovered
  once, output to /dev/null) from sandboxes of the larger and the smaller ``--scales``, divided
  by the difference in records.

Compare like with like: instructions weigh C loops far more than Python code. msgspec splitting a
profiles page into its resources is ~1.4 million instructions in ~0.1 ms; requests sending the
request and reading the answer ~1.4 million in ~1 ms.

Both run under valgrind, 30-60 times slower than usual. valgrind is not a project dependency
(``apt-get install valgrind``). Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmark import STREAMS, TAP, Sandbox, cache_bytecode, discover_selecting, record_count  # noqa: E402 - after the path above

CALLGRIND = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]


def instructions(command: list[str]) -> tuple[int, str]:
    """The instructions ``command`` executed (callgrind's total), and its stderr (its log)."""
    run = subprocess.run([*CALLGRIND, *command], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True, check=True)  # fmt: skip
    found = re.search(r"Collected : (\d+)", run.stderr)
    if found is None:
        raise SystemExit(f"callgrind printed no total: {run.stderr[-500:]}")
    return int(found.group(1)), run.stderr


def per_request(stream: str, counts: list[int]) -> float:
    """Instructions of one more page request of ``stream``."""
    with Sandbox(scale=1.0, latency_ms=0, rate_limit_scale=0) as sandbox:
        config = {"api_key": sandbox.api_key, "base_url": sandbox.base_url, "discover_custom_fields": False}
        script = [sys.executable, str(ROOT / "scripts" / "bench_requests.py"), "--stream", stream]
        totals = [instructions([*script, "--requests", str(n), "--child", json.dumps(config)])[0] for n in counts]
    return (totals[1] - totals[0]) / (counts[1] - counts[0])


def per_record(stream: str, scales: list[float], max_concurrency: int, work: Path) -> tuple[float, list[int]]:
    """Instructions of one more record of a whole sync of ``stream``, and the records of each sync."""
    totals, records = [], []
    for scale in scales:
        with Sandbox(scale=scale, latency_ms=0, rate_limit_scale=0) as sandbox:
            config = {"api_key": sandbox.api_key, "base_url": sandbox.base_url, "max_concurrency": max_concurrency}
            config_path = work / "config.json"
            config_path.write_text(json.dumps(config))
            catalog_path = work / "catalog.json"
            discover_selecting(config_path, stream, catalog_path)
            total, log = instructions([*TAP, "--config", str(config_path), "--catalog", str(catalog_path)])
        totals.append(total)
        records.append(record_count(log, stream))
    return (totals[1] - totals[0]) / max(records[1] - records[0], 1), records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stream", default="profiles", choices=sorted(STREAMS))
    parser.add_argument("--requests", default="30,130", help="two request counts (per page request)")
    parser.add_argument("--scales", default="1,5", help="two sandbox scales (per record of a sync)")
    parser.add_argument("--max-concurrency", type=int, default=8)
    parser.add_argument("--skip-requests", action="store_true")
    parser.add_argument("--skip-sync", action="store_true")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    cache_bytecode()  # as benchmark.py: the plugins' modules compiled once, not in every measured run
    if not args.skip_requests:
        counts = [int(n) for n in args.requests.split(",")]
        per = per_request(args.stream, counts)
        print(
            f"{args.stream}: {per / 1e6:.3f} M instructions per page request ({counts[1]} minus {counts[0]} requests)"
        )
    if not args.skip_sync:
        scales = [float(n) for n in args.scales.split(",")]
        with tempfile.TemporaryDirectory(prefix="klaviyo-instructions-") as work:
            per, records = per_record(args.stream, scales, args.max_concurrency, Path(work))
        print(
            f"{args.stream}: {per / 1e3:.1f} k instructions per record of a sync "
            f"({records[1]:,} minus {records[0]:,} records, max_concurrency {args.max_concurrency})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
