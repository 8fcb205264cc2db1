"""Klaviyo -> DuckDB through Meltano: `meltano --environment=sandbox run klaviyo-to-warehouse`.

A full sync lands every record of the sandbox; after 5 profiles change, the same command reads
only what changed (plus what the inclusive filters re-read by design) from the state Meltano stored.
"""

from __future__ import annotations

import typing as t
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.e2e.helpers import TIMINGS, MeltanoProject, MeltanoRun, get, post, sandbox_env

STATE_ID = "sandbox:tap-klaviyo-to-target-duckdb"
#: Collections the sandbox counts itself (`GET /__sandbox/state`); stream name = collection name.
COLLECTIONS = ("profiles", "events", "campaigns", "flows", "lists", "segments", "metrics", "reviews")
TOUCHED = 5


class Sync(t.NamedTuple):
    run: MeltanoRun
    db: Path
    state_before: dict
    state: dict
    rows: dict[str, int]
    at_or_after_bookmark: dict[str, set[str]]


def _naive_utc(value: str) -> str:
    """A bookmark as DuckDB's TIMESTAMP columns hold it (UTC, no offset)."""
    return datetime.fromisoformat(value).astimezone(timezone.utc).replace(tzinfo=None).isoformat(sep=" ")


def _bookmarks(state: dict) -> dict[str, list[dict]]:
    """Per incremental stream, its bookmarks (one per partition, e.g. campaigns per channel)."""
    found = {}
    for stream, bookmark in (state.get("singer_state") or {}).get("bookmarks", {}).items():
        marks = [m for m in [bookmark, *(bookmark.get("partitions") or [])] if m.get("replication_key_value")]
        partitioned = [m for m in marks if m.get("context")]
        if marks:
            found[stream] = partitioned or marks
    return found


def _at_or_after(project: MeltanoProject, db: Path, state: dict) -> dict[str, set[str]]:
    """Ids of rows already in the warehouse that an incremental run reads again, by design: the filters
    include the bookmark (records sharing its second) and future-dated records are always read."""
    found = {}
    for stream, marks in _bookmarks(state).items():
        found[stream] = set()
        for mark in marks:
            since = _naive_utc(mark["replication_key_value"])
            where = [f"CAST(\"{mark['replication_key']}\" AS TIMESTAMP) >= TIMESTAMP '{since}'"]
            where += [f""""{key}" = '{value}'""" for key, value in (mark.get("context") or {}).items()]
            rows = project.sql(db, f'SELECT id FROM klaviyo."{stream}" WHERE {" AND ".join(where)}')
            found[stream] |= {row["id"] for row in rows}
    return found


@pytest.fixture(scope="module")
def warehouse(project: MeltanoProject, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("warehouse") / "warehouse.duckdb"


@pytest.fixture(scope="module")
def full_sync(project: MeltanoProject, klaviyo: t.Any, warehouse: Path) -> Sync:
    env = {**sandbox_env(klaviyo), "TARGET_DUCKDB_FILEPATH": str(warehouse)}
    before = project.state(STATE_ID)
    run = project.run("--environment=sandbox", "run", "klaviyo-to-warehouse", **env).check()
    TIMINGS["full sync"] = run.seconds
    state = project.state(STATE_ID)
    return Sync(run, warehouse, before, state, project.table_counts(warehouse), _at_or_after(project, warehouse, state))


@pytest.fixture(scope="module")
def incremental(project: MeltanoProject, klaviyo: t.Any, full_sync: Sync) -> tuple[Sync, dict]:
    touched = post(f"{klaviyo.base_url}/__sandbox/touch?stream=profiles&n={TOUCHED}")
    env = {**sandbox_env(klaviyo), "TARGET_DUCKDB_FILEPATH": str(full_sync.db)}
    run = project.run("--environment=sandbox", "run", "klaviyo-to-warehouse", **env).check()
    TIMINGS["incremental sync"] = run.seconds
    state = project.state(STATE_ID)
    return Sync(run, full_sync.db, full_sync.state, state, project.table_counts(full_sync.db), {}), touched


def test_full_sync_lands_every_record_in_duckdb(full_sync: Sync, klaviyo: t.Any) -> None:
    counts = get(f"{klaviyo.base_url}/__sandbox/state")["counts"]
    records = full_sync.run.records("tap-klaviyo")

    assert full_sync.state_before == {}, "a fresh project has no state"
    assert {name: records.get(name) for name in COLLECTIONS} == {name: counts[name] for name in COLLECTIONS}
    assert records["list_members"] > 0 and records["segment_members"] > 0
    assert full_sync.rows == records, "the warehouse holds exactly what the tap read, every stream and row"
    # Meltano shows Python's warnings: a connection left to the garbage collector warned there,
    # and at exit that warning could wait forever for a log lock (docs/operations.md, stops 26-27).
    assert "ResourceWarning" not in full_sync.run.output


def test_meltano_stores_the_bookmarks_of_the_full_sync(full_sync: Sync) -> None:
    bookmarks = _bookmarks(full_sync.state)

    assert {"profiles", "events", "campaigns", "lists", "flows", "segments", "reviews"} <= set(bookmarks)
    assert {m["context"]["channel"] for m in bookmarks["campaigns"]} == {"email", "sms", "mobile_push"}


def test_second_run_reads_only_what_changed(full_sync: Sync, incremental: tuple[Sync, dict]) -> None:
    second, touched = incremental
    first_records, records = full_sync.run.records("tap-klaviyo"), second.run.records("tap-klaviyo")
    changed = {"profiles": set(touched["touched"]), "events": set(touched["events"])}  # 5 profiles, an event each
    repeats = full_sync.at_or_after_bookmark  # records at the bookmark's second, and the future-dated event

    incremental_streams = set(_bookmarks(full_sync.state))
    assert {s: records.get(s, 0) for s in incremental_streams} == {
        s: len(repeats[s] | changed.get(s, set())) for s in incremental_streams
    }
    for stream in incremental_streams:
        assert records.get(stream, 0) < first_records[stream], f"{stream} was read in full again"
    full_table = set(first_records) - incremental_streams  # metrics and memberships: no incremental API
    assert {s: records.get(s) for s in full_table} == {s: first_records[s] for s in full_table}
    assert len(touched["touched"]) == len(touched["events"]) == TOUCHED


def test_second_run_merges_changes_into_the_warehouse(
    project: MeltanoProject, full_sync: Sync, incremental: tuple[Sync, dict]
) -> None:
    second, touched = incremental
    ids = ", ".join(f"'{pid}'" for pid in touched["touched"])
    event_ids = ", ".join(f"'{eid}'" for eid in touched["events"])
    first_bookmark = _naive_utc(full_sync.state["singer_state"]["bookmarks"]["profiles"]["replication_key_value"])
    new_bookmark = _naive_utc(second.state["singer_state"]["bookmarks"]["profiles"]["replication_key_value"])

    assert second.rows["profiles"] == full_sync.rows["profiles"], "changed profiles are updated, not duplicated"
    assert second.rows["events"] == full_sync.rows["events"] + TOUCHED
    new_events = project.sql(second.db, f"SELECT count(*) AS n FROM klaviyo.events WHERE id IN ({event_ids})")
    assert new_events == [{"n": TOUCHED}]
    updated = project.sql(second.db, f"SELECT CAST(updated AS VARCHAR) AS u FROM klaviyo.profiles WHERE id IN ({ids})")
    assert len(updated) == TOUCHED
    first, new = datetime.fromisoformat(first_bookmark), datetime.fromisoformat(new_bookmark)
    assert all(first < datetime.fromisoformat(row["u"]) <= new for row in updated)
    assert new > first, "the bookmark Meltano stored advanced"
