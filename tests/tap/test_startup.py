"""What a run costs before its first request: the garbage collector during imports and at the first page.

Each check runs in a fresh interpreter (this one has imported everything long ago).
"""

from __future__ import annotations

import json
import subprocess
import sys

from tap_klaviyo import GC_THRESHOLDS


def run_python(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_tap_scans_none_of_the_objects_it_loads():
    """The sync's GC thresholds are set before singer-sdk and its dependencies load (tap_klaviyo/__init__.py).

    With the defaults a full collection ran during the imports, and young ones every 700
    allocations: ~50 ms of every run. A top-level import moved above the thresholds fails here.
    """
    seen = run_python(
        "import gc, json\n"
        "import tap_klaviyo.tap\n"
        "print(json.dumps({'threshold': gc.get_threshold(), 'full': gc.get_stats()[2]['collections'],"
        " 'young': gc.get_stats()[0]['collections']}))"
    )
    assert tuple(seen["threshold"]) == GC_THRESHOLDS
    assert seen["full"] == 0
    assert seen["young"] < 50  # ~15 at 70,000 allocations each; ~2,000 with the defaults


def test_the_first_page_freezes_what_start_up_made_without_a_full_collection():
    """``tune_gc`` moves start-up's objects out of every later scan; a full collection there cost ~30 ms."""
    seen = run_python(
        "import gc, json\n"
        "from tap_klaviyo.concurrency import tune_gc\n"
        "full = []\n"
        "gc.callbacks.append(lambda phase, info: full.append(phase) if info['generation'] == 2 else None)\n"
        "tune_gc(); tune_gc()\n"
        "frozen, threshold = gc.get_freeze_count(), gc.get_threshold()\n"
        "print(json.dumps({'full': full.count('start'), 'frozen': frozen, 'threshold': threshold}))"
    )
    assert seen["full"] == 0
    assert seen["frozen"] > 10_000  # the modules, classes and functions loaded so far
    assert tuple(seen["threshold"]) == GC_THRESHOLDS
