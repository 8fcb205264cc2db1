#!/usr/bin/env python3
"""Show what the Meltano pipelines moved: used by ./scripts/demo.sh and tests/e2e, handy by hand.

    records LOG                      records per stream a run read (the tap's record_count metrics
                                     in a `meltano run` log); standard library only
    members --list-name NAME         a Klaviyo list's members, through the API (sandbox or real
                                     account: --base-url/--api-key, or TARGET_KLAVIYO_BASE_URL and
                                     TARGET_KLAVIYO_API_KEY); standard library only
    counts DB [--schema klaviyo]     rows per table of the DuckDB warehouse
    sql DB QUERY                     any query on the warehouse, rows as JSON
    state < STATE_JSON               bookmarks per stream of `meltano state get <state id>`

`counts` and `sql` need the `duckdb` package: run them with the Python of target-duckdb's
Meltano venv (.meltano/loaders/target-duckdb/venv/bin/python), the same duckdb that wrote the file.
Add --json to records/members/counts for machine-readable output.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.parse
import urllib.request
from collections import Counter

#: `<plugin>  METRIC: {...}` in a Meltano log (`... | METRIC: {...}` straight from an SDK plugin).
METRIC = re.compile(r"(\S+)\s+METRIC: (\{.*\})\s*$")
DEFAULT_BASE_URL = "https://a.klaviyo.com"
REVISION = "2026-07-15"  # the connectors' pinned revision (klaviyo_core.settings.DEFAULT_REVISION)
SAMPLE_QUERY = """
SELECT m.name AS metric, count(*) AS events, count(DISTINCT e.profile_id) AS profiles
FROM {schema}.events e JOIN {schema}.metrics m ON m.id = e.metric_id
GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5
""".strip()


def record_counts(lines: list[str], plugin: str = "") -> dict[str, int]:
    """Sum of the SDK's `record_count` counters per stream (a stream reports one per partition)."""
    counts: Counter = Counter()
    for line in lines:
        match = METRIC.search(line)
        if not match or (plugin and match.group(1) != "|" and not match.group(1).startswith(plugin)):
            continue
        try:
            metric = json.loads(match.group(2))
        except ValueError:
            continue
        if metric.get("metric") == "record_count" and "stream" in (metric.get("tags") or {}):
            counts[metric["tags"]["stream"]] += int(metric.get("value") or 0)
    return dict(sorted(counts.items()))


def bookmark_lines(state: dict) -> list[str]:
    """One line per stream of a Meltano state document: its bookmark(s), or `full table`."""
    lines = []
    for stream, bookmark in sorted(((state.get("singer_state") or state).get("bookmarks") or {}).items()):
        marks = [bookmark, *(bookmark.get("partitions") or [])]
        values = [
            f"{m['replication_key']} >= {m['replication_key_value']}"
            + (f" ({', '.join(f'{v}' for v in (m.get('context') or {}).values())})" if m.get("context") else "")
            for m in marks
            if m.get("replication_key_value")
        ]
        lines.append(f"{stream}: " + ("; ".join(values) if values else "full table"))
    return lines


def _get(url: str, api_key: str) -> dict:
    request = urllib.request.Request(
        url,
        headers={
            "Authorization": f"Klaviyo-API-Key {api_key}",
            "revision": REVISION,
            "Accept": "application/vnd.api+json",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # http(s) only
        return json.load(response)


def list_members(base_url: str, api_key: str, list_name: str) -> dict:
    """{"lists": [ids named list_name], "emails": [sorted member emails]} (no list: both empty)."""
    base = base_url.rstrip("/")
    quoted = list_name.replace("\\", "\\\\").replace('"', '\\"')
    url = f"{base}/api/lists?" + urllib.parse.urlencode({"filter": f'equals(name,"{quoted}")', "fields[list]": "name"})
    lists: list[str] = []
    while url:
        page = _get(url, api_key)
        lists += [item["id"] for item in page.get("data", []) if item["attributes"].get("name") == list_name]
        url = (page.get("links") or {}).get("next")
    emails: list[str] = []
    for list_id in lists:
        url = f"{base}/api/lists/{list_id}/profiles?" + urllib.parse.urlencode(
            {"fields[profile]": "email", "page[size]": "100"}
        )
        while url:
            page = _get(url, api_key)
            emails += [item["attributes"].get("email") or item["id"] for item in page.get("data", [])]
            url = (page.get("links") or {}).get("next")
    return {"lists": lists, "emails": sorted(emails)}


def _connect(db: str):
    try:
        import duckdb  # noqa: PLC0415 - only the counts/sql commands need it, from target-duckdb's venv
    except ImportError:
        sys.exit("pipeline_report.py: counts/sql need duckdb; run with .meltano/loaders/target-duckdb/venv/bin/python")
    return duckdb.connect(db, read_only=True)


def table_counts(db: str, schema: str) -> dict[str, int]:
    with _connect(db) as con:
        tables = con.execute(
            "SELECT table_catalog, table_name FROM information_schema.tables WHERE table_schema = ? ORDER BY 2",
            [schema],
        ).fetchall()
        return {
            table: con.execute(f'SELECT count(*) FROM "{catalog}"."{schema}"."{table}"').fetchone()[0]
            for catalog, table in tables
        }


def query(db: str, sql: str) -> list[dict]:
    with _connect(db) as con:
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, row)) for row in cursor.fetchall()]


def _table(rows: list[tuple], header: tuple, indent: str = "    ") -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: tuple) -> str:
        cells = (str(v).rjust(w) if isinstance(v, int) else str(v).ljust(w) for v, w in zip(row, widths))
        return indent + "  ".join(cells).rstrip()

    return "\n".join([fmt(header), *(fmt(r) for r in rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("records")
    p.add_argument("log")
    p.add_argument("--plugin", default="tap-", help="only lines of this plugin (default: any tap)")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("members")
    p.add_argument("--list-name", required=True)
    p.add_argument("--base-url", default=os.environ.get("TARGET_KLAVIYO_BASE_URL") or DEFAULT_BASE_URL)
    p.add_argument("--api-key", default=os.environ.get("TARGET_KLAVIYO_API_KEY"))
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("state", help="summarise `meltano state get` JSON read from stdin")
    p = sub.add_parser("counts")
    p.add_argument("db")
    p.add_argument("--schema", default="klaviyo")
    p.add_argument("--sample", action="store_true", help="also run a sample query (top metrics by events)")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("sql")
    p.add_argument("db")
    p.add_argument("query")
    args = parser.parse_args(argv)

    if args.command == "records":
        with open(args.log, encoding="utf-8", errors="replace") as handle:
            counts = record_counts(handle.readlines(), args.plugin)
        print(json.dumps(counts) if args.json else _table(sorted(counts.items()), ("stream", "records")))
    elif args.command == "members":
        if not args.api_key:
            parser.error("members: set --api-key or TARGET_KLAVIYO_API_KEY")
        found = list_members(args.base_url, args.api_key, args.list_name)
        if args.json:
            print(json.dumps(found))
        elif not found["lists"]:
            print(f"    no list named {args.list_name!r} (0 members)")
        else:
            emails = found["emails"]
            shown = ", ".join(emails[:10]) + (f", ... ({len(emails) - 10} more)" if len(emails) > 10 else "")
            print(
                f"    list {args.list_name!r} ({', '.join(found['lists'])}): {len(emails)} members"
                + (f": {shown}" if emails else "")
            )
    elif args.command == "state":
        for line in bookmark_lines(json.load(sys.stdin)):
            print(f"      {line}")
    elif args.command == "counts":
        counts = table_counts(args.db, args.schema)
        if args.json:
            print(json.dumps(counts))
        else:
            print(_table(sorted(counts.items()), ("table", "rows")))
            if args.sample and {"events", "metrics"} <= set(counts):
                sql = SAMPLE_QUERY.format(schema=args.schema)
                rows = query(args.db, sql)
                print("\n    " + " ".join(sql.split()))
                print(_table([tuple(r.values()) for r in rows], tuple(rows[0]) if rows else ("metric",)))
    elif args.command == "sql":
        print(json.dumps(query(args.db, args.query), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
