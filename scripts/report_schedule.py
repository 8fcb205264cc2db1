#!/usr/bin/env python3
"""Count the report requests a schedule makes: the tap run again and again against the sandbox.

Each run is a real sync (in-process, through the sandbox's HTTP API) whose clock is set
to the scheduled moment; the state of one run is given to the next, as Meltano does.
The requests counted are those the sandbox received, per report endpoint and UTC day.

    python scripts/report_schedule.py            # daily and hourly schedules, 3 days each
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import io
import json
import logging
import sys
import typing as t
from contextlib import redirect_stdout
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from klaviyo_sandbox import Sandbox, SandboxConfig
from tap_klaviyo import reports
from tap_klaviyo.tap import TapKlaviyo

ALL_REPORTS = tuple(stream.name for stream in reports.REPORT_STREAM_TYPES)
FIRST_RUN = dt.datetime(2026, 7, 12, 0, 30, tzinfo=dt.timezone.utc)


def simulate(
    box: t.Any, moments: t.Sequence[dt.datetime], streams: t.Sequence[str] = ALL_REPORTS, **settings: t.Any
) -> dict[str, collections.Counter]:
    """Requests per UTC day and operation over runs at ``moments``."""
    config = {"api_key": box.api_key, "base_url": box.base_url, "discover_custom_fields": False, **settings}
    catalog = TapKlaviyo(config=config).catalog_dict
    for entry in catalog["streams"]:
        for metadata in entry["metadata"]:
            if metadata["breadcrumb"] == []:
                metadata["metadata"]["selected"] = entry["tap_stream_id"] in streams
    state: dict = {}
    per_day: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for moment in moments:
        seen = len(box.store.request_log)
        with mock.patch.object(reports.ReportStream, "run_started_at", lambda self, context, m=moment: m):
            out = io.StringIO()
            with redirect_stdout(out):
                TapKlaviyo(config=config, catalog=catalog, state=state).sync_all()
        states = [json.loads(line)["value"] for line in out.getvalue().splitlines() if '"STATE"' in line]
        state = states[-1] if states else state
        for request in list(box.store.request_log)[seen:]:
            if request["op"]:
                per_day[moment.date().isoformat()][request["op"]] += 1
    return per_day


def schedule(every: dt.timedelta, days: int) -> list[dt.datetime]:
    return [FIRST_RUN + every * n for n in range(int(dt.timedelta(days=days) / every))]


def main() -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    logging.disable(logging.WARNING)  # deferral warnings would drown the table
    with Sandbox(SandboxConfig(seed=3, scale=0.05, rate_limit_scale=0.0)) as box:
        for label, every in (("daily", dt.timedelta(days=1)), ("hourly", dt.timedelta(hours=1))):
            per_day = simulate(box, schedule(every, 3), start_date="2026-06-12T00:00:00Z")
            budget = reports.DEFAULT_DAILY_BUDGET
            print(f"{label} schedule (report_interval daily, lookback 3, default budget {budget}):")
            for day, counts in sorted(per_day.items()):
                shown = ", ".join(f"{op} {n}" for op, n in sorted(counts.items()))
                print(f"  {day}: {shown}")
    backfill = len(reports.chunks(FIRST_RUN - dt.timedelta(days=365), FIRST_RUN, "daily"))
    print(f"first run with a year of backfill: {backfill} requests per daily series report")
    return 0


if __name__ == "__main__":
    sys.exit(main())
