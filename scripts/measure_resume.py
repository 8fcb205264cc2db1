"""Kill the tap after N records of a stream, resume from its last STATE, count re-emitted records.

    .venv/bin/python scripts/measure_resume.py [ROOT] STREAM N SCALE
    e.g. scripts/measure_resume.py . events 7500 1

ROOT is a checkout of this repository (default: this one), so that another version of
the code can be measured with the same script. Not a test: nothing is asserted.
"""

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("words", nargs="+", metavar="[ROOT] STREAM N SCALE")
args = parser.parse_args().words
if len(args) == 3:
    args = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), *args]
if len(args) != 4 or not args[2].isdigit():
    parser.error("give [ROOT] STREAM N SCALE, N a number of records, e.g. events 7500 1")
root, stream, kill_after, scale = args[0], args[1], int(args[2]), args[3]
sys.path.insert(0, root)
os.chdir(root)
from klaviyo_sandbox import Sandbox, SandboxConfig  # noqa: E402  # from ROOT, put on sys.path above

tap = [sys.executable, "-c", "from tap_klaviyo.tap import cli; cli()"]
tmp = tempfile.mkdtemp()
with Sandbox(SandboxConfig(scale=float(scale), rate_limit_scale=0, now="now")) as sb:
    cfg = f"{tmp}/c.json"
    pathlib.Path(cfg).write_text(
        json.dumps(
            {
                "api_key": sb.api_key,
                "base_url": sb.base_url,
                "discover_custom_fields": False,
                "start_date": "2000-01-01T00:00:00Z",
            }
        )
    )
    cat = json.loads(
        subprocess.run(tap + ["--config", cfg, "--discover"], capture_output=True, text=True, check=True).stdout
    )
    for e in cat["streams"]:
        for m in e["metadata"]:
            if m["breadcrumb"] == []:
                m["metadata"]["selected"] = e["tap_stream_id"] == stream
    pathlib.Path(f"{tmp}/cat.json").write_text(json.dumps(cat))
    proc = subprocess.Popen(
        tap + ["--config", cfg, "--catalog", f"{tmp}/cat.json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    seen, state, states = [], None, 0
    for line in proc.stdout:
        m = json.loads(line)
        if m["type"] == "RECORD":
            seen.append(json.dumps(m["record"], sort_keys=True))
        elif m["type"] == "STATE":
            state = m["value"]
            states += 1
        if len(seen) >= kill_after:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    pathlib.Path(f"{tmp}/state.json").write_text(json.dumps(state or {}))
    t0 = time.monotonic()
    out = subprocess.run(
        tap + ["--config", cfg, "--catalog", f"{tmp}/cat.json", "--state", f"{tmp}/state.json"],
        capture_output=True,
        text=True,
        check=False,  # a failed resume shows as fewer resumed records
    )
    again = [
        json.dumps(json.loads(line)["record"], sort_keys=True) for line in out.stdout.splitlines() if '"RECORD"' in line
    ]
    first = set(seen)
    print(
        json.dumps(
            {
                "code": root,
                "stream": stream,
                "killed_after": len(seen),
                "states_before_kill": states,
                "resumed_records": len(again),
                "re_emitted": sum(1 for r in again if r in first),
            }
        )
    )
