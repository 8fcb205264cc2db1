#!/usr/bin/env python3
"""Requests each content stream makes for a full sync of the demo account (docs/streams.md).

Starts the sandbox at ``--scale`` (default 1, the demo's) with Klaviyo's rate limits, syncs
each content stream alone through the installed ``tap-klaviyo`` (its parent stream is read
too, as a real run must), and counts the requests the sandbox answered, per operation. The
last column is what reading children one request per parent would cost: the parents'
own listing plus one request per parent (more for parents with several pages of children).

Usage: .venv/bin/python scripts/content_requests.py [--scale 1] [--streams flow_messages,...]
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from klaviyo_sandbox import Sandbox, SandboxConfig  # noqa: E402

STREAMS = (
    "campaign_messages",
    "flow_actions",
    "flow_messages",
    "templates",
    "tags",
    "tag_groups",
    "catalog_items",
    "catalog_variants",
    "catalog_categories",
    "coupons",
    "coupon_codes",
    "forms",
    "images",
)
TAP = Path(sys.executable).parent / "tap-klaviyo"


def per_parent(box: Sandbox) -> dict[str, str]:
    """Requests a one-request-per-parent design needs (listing the parents included)."""
    ds = box.store.ds
    content = ds.content
    actions = sum(content.n_actions(f) for f in range(ds.n_flows))
    flow_pages = -(-ds.n_flows // 50)
    return {
        "campaign_messages": f"{3 + ds.n_campaigns} (3 campaign pages + 1 per campaign, {ds.n_campaigns})",
        "flow_actions": f"{flow_pages + ds.n_flows} ({flow_pages} flow page + 1 per flow, {ds.n_flows})",
        "flow_messages": f"{flow_pages + ds.n_flows + actions} (flows, 1 per flow for its actions, "
        f"1 per action, {actions})",
        "coupon_codes": f"{1 + content.n_coupons}+ (1 coupon page + 1 per coupon, {content.n_coupons}, + pages)",
    }


def catalog(config_path: Path, stream: str, work: Path) -> Path:
    found = subprocess.run(
        [str(TAP), "--config", str(config_path), "--discover"], capture_output=True, text=True, check=True
    )
    document = json.loads(found.stdout)
    for entry in document["streams"]:
        for metadata in entry["metadata"]:
            if metadata["breadcrumb"] == []:
                metadata["metadata"]["selected"] = entry["tap_stream_id"] == stream
    path = work / f"catalog-{stream}.json"
    path.write_text(json.dumps(document))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--streams", default=",".join(STREAMS))
    args = parser.parse_args()
    with Sandbox(SandboxConfig(seed=1, scale=args.scale)) as box, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config = work / "config.json"
        config.write_text(
            json.dumps({"api_key": box.api_key, "base_url": box.base_url, "discover_custom_fields": False})
        )
        baseline = per_parent(box)
        print("| stream | records | requests (by operation) | seconds | one request per parent |")
        print("|---|---|---|---|---|")
        for stream in args.streams.split(","):
            path = catalog(config, stream, work)
            before = collections.Counter(box.store.counters)
            started = time.monotonic()
            done = subprocess.run(
                [str(TAP), "--config", str(config), "--catalog", str(path)], capture_output=True, text=True, check=False
            )
            elapsed = time.monotonic() - started
            if done.returncode:
                print(done.stderr[-2000:], file=sys.stderr)
                return 1
            records = sum(1 for line in done.stdout.splitlines() if json.loads(line).get("type") == "RECORD")
            delta = collections.Counter(box.store.counters)
            delta.subtract(before)
            ops = {k[3:]: n for k, n in sorted(delta.items()) if k.startswith("op:") and n}
            total = sum(ops.values())
            shown = ", ".join(f"{op} {n}" for op, n in ops.items())
            print(f"| {stream} | {records:,} | {total} ({shown}) | {elapsed:.1f} | {baseline.get(stream, '-')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
