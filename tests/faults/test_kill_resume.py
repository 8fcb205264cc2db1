"""Kill the tap at random points, resume from the last state it emitted: nothing is lost.

Each chain runs ``tap-klaviyo`` as a subprocess and SIGKILLs it at a point drawn from a
seeded RNG: after the k-th record of a stream, right after the j-th STATE message, at the
first line of output, or after the m-th request reached Klaviyo (which lands in discovery
or in the middle of a page loop, whatever stdout shows). The next run gets the last
STATE line read so far (``--state``) and is killed again, until a run completes. Like a
target at the other end of the pipe, the reader keeps every complete line the tap wrote
before it died. Then, per stream, the union of all runs equals a fault-free sync, and
each run repeats only what resuming must repeat.
"""

from __future__ import annotations

import collections
import datetime as dt
import random

import pytest

from tests.faults.harness import (
    FIGURES,
    KillableRun,
    Output,
    canonical,
    in_parallel,
    parse_time,
    sandbox,
    tap_config,
)

pytestmark = pytest.mark.slow  # a module fixture runs for seconds (pyproject: markers)

SEED = 21
CHAINS = 8
KILLS_PER_CHAIN = 4
LOOKBACK = dt.timedelta(seconds=1)  # greater-than bookmarks are re-read from one second earlier


def plan(rng: random.Random, clean: Output) -> list[tuple]:
    """The kill points of one chain."""
    counts = {stream: len(records) for stream, records in clean.records.items()}
    points = []
    for _ in range(KILLS_PER_CHAIN):
        draw = rng.random()
        if draw < 0.1:
            points.append(("first-line",))
        elif draw < 0.25:
            points.append(("state", rng.randint(1, 8)))
        elif draw < 0.4:
            points.append(("request", rng.randint(1, 30)))
        else:
            stream = rng.choice(sorted(counts))
            points.append(("record", stream, rng.randint(1, counts[stream])))
    return points


def trigger_for(point: tuple, order: list[str]):
    kind = point[0]
    if kind == "first-line":
        return lambda message, run: True
    if kind == "state":
        return lambda message, run: (
            message["type"] == "STATE" and sum(m["type"] == "STATE" for m in run.messages) >= point[1]
        )
    if kind == "record":
        stream, k = point[1], point[2]
        position = order.index(stream)

        def fire(message, run):  # the k-th record of the stream, or the first one of a later stream
            if message["type"] != "RECORD":
                return False
            here = order.index(message["stream"])
            return here > position or (here == position and run.per_stream[stream] >= k)

        return fire
    return None


def run_chain(number: int, clean: Output, workdir) -> dict:
    rng = random.Random(7000 + number)
    points = plan(rng, clean)
    order = clean.stream_order
    runs: list[tuple[dict | None, KillableRun]] = []
    fired: list[tuple] = []
    state = None
    with sandbox(SEED) as box:
        config = tap_config(box)
        for index, point in enumerate([*points, None]):
            watch = None
            if point is not None and point[0] == "request":
                before = len(box.store.request_log)
                watch = lambda before=before, m=point[1]: len(box.store.request_log) - before >= m  # noqa: E731
            trigger = trigger_for(point, order) if point is not None else None
            run = KillableRun(config, workdir / f"chain{number}" / f"run{index}", state, trigger, watch).run()
            runs.append((state, run))
            if not run.killed:
                break
            fired.append((*point, run.killed_in))
            state = run.output.last_state or state
    return {"points": points, "fired": fired, "runs": runs}


@pytest.fixture(scope="module")
def chains(expected, faults_workdir):
    clean = expected(SEED)
    results = in_parallel({n: (lambda n=n: run_chain(n, clean, faults_workdir / "kill")) for n in range(CHAINS)})
    FIGURES.add("kill_points_planned", sum(len(c["points"]) for c in results.values()))
    FIGURES.add("kill_points_tried", sum(len(c["fired"]) for c in results.values()))
    FIGURES.add("kill_resume_runs", sum(len(c["runs"]) for c in results.values()))
    return results


def test_at_least_twenty_kill_points_across_streams_were_tried(chains):
    fired = [point for chain in chains.values() for point in chain["fired"]]
    assert len(fired) >= 20, fired
    assert len({point[-1] for point in fired}) >= 6, fired  # killed inside many different streams
    assert {point[0] for point in fired} >= {"record", "state", "request"}


@pytest.mark.parametrize("number", range(CHAINS))
def test_resumed_runs_together_emit_exactly_the_full_data_set(chains, expected, number):
    clean = expected(SEED)
    chain = chains[number]
    final = chain["runs"][-1][1]
    assert final.code == 0 and not final.killed, final.stderr[-3000:]
    assert "Traceback" not in final.stderr

    emitted: dict[str, dict[tuple, str]] = collections.defaultdict(dict)
    for _, run in chain["runs"]:
        output = run.output
        assert output.duplicates() == {}, "a single run emitted a primary key twice"
        for stream, records in output.records.items():
            for record in records:
                key = output.pk(stream, record)
                emitted[stream].setdefault(key, canonical(record))
                assert emitted[stream][key] == canonical(record)

    lost = 0
    for stream in clean.records:
        expected_records = {clean.pk(stream, r): canonical(r) for r in clean.records[stream]}
        lost += len(set(expected_records) - set(emitted[stream]))
        assert emitted[stream] == expected_records, f"{stream}: union of the resumed runs differs"
    FIGURES.lost(lost)


@pytest.mark.parametrize("number", range(CHAINS))
def test_a_resumed_run_repeats_nothing_before_its_bookmarks(chains, number):
    """Incremental streams re-read only from their bookmark (one second earlier for greater-than)."""
    for state, run in chains[number]["runs"]:
        bookmarks = (state or {}).get("bookmarks") or {}
        output = run.output
        for stream, records in output.records.items():
            key = output.replication_key(stream)
            if key is None:
                continue
            for record in records:
                bookmark = _bookmark_of(bookmarks.get(stream) or {}, record)
                if bookmark is not None and (parse_time(record.get(key)) or bookmark) < bookmark - LOOKBACK:
                    pytest.fail(f"{stream} re-emitted a record of {record[key]} from before its bookmark {bookmark}")


def _bookmark_of(stream_state: dict, record: dict) -> dt.datetime | None:
    """The bookmark a record was resumed from: its partition's (a child stream such as flow_messages
    keeps one per parent; of passes like {channel} and {channel, archived} the most specific the
    record matches), else the stream's. A partition not in the state yet, or without a bookmark,
    starts from the beginning."""
    partitions = stream_state.get("partitions")
    if partitions:
        matching = [p for p in partitions if all(record.get(k) == v for k, v in (p.get("context") or {}).items())]
        best = max(matching, key=lambda p: len(p.get("context") or {}), default={})
        value = best.get("replication_key_value")
    else:
        value = stream_state.get("replication_key_value")
    return parse_time(value) if value else None


def _bookmark(stream_state: dict) -> dt.datetime | None:
    values = [stream_state.get("replication_key_value")]
    values += [p.get("replication_key_value") for p in stream_state.get("partitions") or []]
    parsed = [parse_time(v) for v in values if v]
    if stream_state.get("partitions") and len(parsed) < len(stream_state["partitions"]):
        return None  # a partition without a bookmark starts from the beginning
    return min(parsed) if parsed else None


def test_resumed_runs_did_start_from_bookmarks(chains):
    """The check above is not empty: many resumed runs had bookmarks for the streams they re-read."""
    checked = 0
    for chain in chains.values():
        for state, run in chain["runs"]:
            bookmarks = (state or {}).get("bookmarks") or {}
            output = run.output
            checked += sum(
                1
                for stream in output.records
                if output.replication_key(stream) and _bookmark(bookmarks.get(stream) or {}) is not None
            )
    assert checked >= 20
