"""Bookmarks under concurrency: a STATE never claims a record that was not emitted before it.

The tap syncs events from the in-memory fake Klaviyo with eight workers and small
pages (so a run has dozens of slices, many in flight at once), is "killed" after N
records (stdout raises), and resumes from the last STATE it wrote. Every STATE of
every run must be safe to resume from, and the resumed runs together must emit
every event.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import random
import typing as t
from contextlib import redirect_stdout

import pytest
import requests_mock

from klaviyo_core import endpoints
from tap_klaviyo.tap import TapKlaviyo
from tests.tap.conftest import select_only
from tests.tap.fake_klaviyo import FakeKlaviyo, event

CONFIG = {
    "api_key": "pk_test_0123456789abcdef",
    "start_date": "2024-01-01T00:00:00Z",
    "discover_custom_fields": False,
    "max_concurrency": 8,
}
PAGE_SIZE = 40


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it is written."""


class KillAfter(io.StringIO):
    """stdout that dies when the (records + 1)-th RECORD message is written."""

    def __init__(self, records: int | None) -> None:
        super().__init__()
        self.allowed = records
        self.seen = 0

    def write(self, text: str) -> int:
        if '"type":"RECORD"' in text:
            self.seen += 1
            if self.allowed is not None and self.seen > self.allowed:
                raise Killed
        return super().write(text)


def events_dataset(count: int, seed: int = 11) -> list[dict]:
    """Events over 2024: sparse stretches, a dense day, and seconds shared by several events."""
    rng = random.Random(seed)
    start = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    seconds = [rng.randrange(0, 360 * 86400) for _ in range(count // 2)]
    seconds += [rng.randrange(100 * 86400, 101 * 86400) for _ in range(count // 2 - 40)]
    seconds += [200 * 86400 + 17] * 40
    seconds.sort()
    return [event(f"e{i:05d}", (start + dt.timedelta(seconds=s)).isoformat()) for i, s in enumerate(seconds)]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> t.Iterator[FakeKlaviyo]:
    real = endpoints.page_size_max
    monkeypatch.setattr(endpoints, "page_size_max", lambda op: PAGE_SIZE if op == "get_events" else real(op))
    with requests_mock.Mocker() as mocker:
        klaviyo = FakeKlaviyo(mocker)
        klaviyo.add("/api/events", *events_dataset(1500))
        yield klaviyo


def sync(state: dict | None, kill_after: int | None) -> list[dict]:
    """One run's messages up to its end or its kill."""
    catalog = select_only(TapKlaviyo(config=CONFIG), "events")
    out = KillAfter(kill_after)
    try:
        with redirect_stdout(out):
            TapKlaviyo(config=CONFIG, catalog=catalog, state=state).sync_all()
    except Killed:
        pass
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def assert_every_state_is_safe(messages: list[dict], everything: dict[str, str], resumed_from: str | None) -> None:
    """Each STATE's bookmark: every event before it was emitted (by this run or before its start)."""
    emitted: set[str] = set()
    for message in messages:
        if message["type"] == "RECORD":
            emitted.add(message["record"]["id"])
        elif message["type"] == "STATE":
            bookmark = message["value"]["bookmarks"].get("events", {}).get("replication_key_value")
            if not bookmark:
                continue
            skipped = [
                event_id for event_id, when in everything.items()
                if when < bookmark and event_id not in emitted and not (resumed_from and when < resumed_from)
            ]  # fmt: skip
            assert not skipped, f"STATE {bookmark} is ahead of unemitted events {skipped[:5]}"


def test_many_slices_in_flight_are_emitted_in_order_with_every_event(fake):
    messages = sync(None, None)
    records = [m["record"] for m in messages if m["type"] == "RECORD"]
    expected = [
        r["id"] for r in sorted(fake.collections["/api/events"], key=lambda r: (r["attributes"]["datetime"], r["id"]))
    ]
    assert sorted(r["id"] for r in records) == sorted(expected)
    assert [r["datetime"] for r in records] == sorted(r["datetime"] for r in records)
    assert len(fake.requests) > len(records) // PAGE_SIZE  # it was read in pages of PAGE_SIZE
    filters = {fake.params(i).get("filter") for i in range(len(fake.requests))}
    assert len(filters) > 8  # in many slices, not one chain


@pytest.mark.parametrize("kill_after", [1, 97, 400, 777, 1333, 1499])
def test_a_run_killed_with_slices_in_flight_resumes_from_its_last_state_without_a_gap(fake, kill_after):
    everything = {r["id"]: r["attributes"]["datetime"] for r in fake.collections["/api/events"]}
    first = sync(None, kill_after)
    assert_every_state_is_safe(first, everything, None)
    seen = {m["record"]["id"] for m in first if m["type"] == "RECORD"}
    assert len(seen) == kill_after
    states = [m["value"] for m in first if m["type"] == "STATE"]
    last_state = states[-1] if states else None
    bookmark = (last_state or {}).get("bookmarks", {}).get("events", {}).get("replication_key_value")

    second = sync(last_state, None)
    assert_every_state_is_safe(second, everything, bookmark)
    seen |= {m["record"]["id"] for m in second if m["type"] == "RECORD"}
    assert seen == set(everything)


def test_a_state_is_written_every_so_often_during_a_long_read(fake, monkeypatch):
    from tap_klaviyo.streams import EventsStream

    monkeypatch.setattr(EventsStream, "STATE_MSG_FREQUENCY", 100)
    everything = {r["id"]: r["attributes"]["datetime"] for r in fake.collections["/api/events"]}
    messages = sync(None, None)
    assert sum(m["type"] == "STATE" for m in messages) >= 10
    assert_every_state_is_safe(messages, everything, None)
