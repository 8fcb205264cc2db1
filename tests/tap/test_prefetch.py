"""The prefetch of upcoming streams (tap_klaviyo/prefetch.py): same output, same requests, bounded, stoppable.

The full-sync comparisons run the tap in-process against the loopback sandbox, once as
shipped and once with the prefetch switched off; the kill test runs the CLI.
"""

from __future__ import annotations

import collections
import copy
import io
import json
import os
import re
import signal
import subprocess
import threading
import typing as t
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import requests

from tap_klaviyo import prefetch as prefetch_module, tap as tap_module
from tap_klaviyo.concurrency import Page
from tap_klaviyo.reports import ReportStream
from tap_klaviyo.stream import KlaviyoStream
from tap_klaviyo.tap import TapKlaviyo
from tests.conftest import BIN, select
from tests.perf.test_reader import CountingCondition

REPORT = "campaign_values_report"


def sandbox_config(box: t.Any, **extra: t.Any) -> dict:
    return {
        "api_key": box.api_key,
        "base_url": box.base_url,
        "discover_custom_fields": False,
        "max_concurrency": 8,
        **extra,
    }


def requests_by_operation(box: t.Any) -> collections.Counter:
    total: collections.Counter = collections.Counter()
    for store in box.app.accounts.values():
        total.update({key: value for key, value in store.counters.items() if key.startswith("op:")})
    return total


def full_sync(
    box: t.Any, catalog: dict, state: dict | None = None, **settings: t.Any
) -> tuple[list[dict], collections.Counter, list[prefetch_module.StreamPrefetch]]:
    """Messages of one in-process sync, the sandbox requests it made, and the prefetch it used."""
    before = requests_by_operation(box)
    used: list[prefetch_module.StreamPrefetch] = []
    real = tap_module.StreamPrefetch

    def recording(*args: t.Any, **kwargs: t.Any) -> prefetch_module.StreamPrefetch:
        used.append(real(*args, **kwargs))
        return used[-1]

    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, redirect_stdout(out):
        patch.setattr(tap_module, "StreamPrefetch", recording)
        TapKlaviyo(config=sandbox_config(box, **settings), catalog=catalog, state=copy.deepcopy(state)).sync_all()
    messages = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    return messages, requests_by_operation(box) - before, used


def comparable(messages: list[dict]) -> dict[str, list[dict]]:
    """Messages per stream (STATE on its own), less what depends on the moment of the run.

    That is when records were read (``time_extracted``), the full-table ``version``, and the
    run's start in the state (the SDK's signposts, and bookmarks capped there: any time of
    today with microseconds, which Klaviyo's whole-second values never have).
    """
    text = re.sub(r'"\d{4}-\d\d-\d\dT[\d:]{8}\.\d+\+00:00"', '"<run start>"', json.dumps(messages))
    per_stream: dict[str, list[dict]] = collections.defaultdict(list)
    for message in json.loads(text):
        message = {k: v for k, v in message.items() if k not in ("time_extracted", "version")}
        per_stream[message.get("stream", message["type"])].append(message)
    return per_stream


@pytest.fixture(scope="module")
def catalog(sandbox: t.Any) -> dict:
    """Every stream selected by default, plus one report (a daily budget: must not be prefetched)."""
    discovered = TapKlaviyo(config=sandbox_config(sandbox)).catalog_dict
    defaults = [
        entry["tap_stream_id"]
        for entry in discovered["streams"]
        if next(m for m in entry["metadata"] if m["breadcrumb"] == [])["metadata"].get("selected-by-default", True)
    ]
    return select(discovered, *defaults, REPORT)


@pytest.fixture(scope="module")
def runs(sandbox: t.Any, catalog: dict) -> dict[str, t.Any]:
    """The same full sync with the prefetch and without it (the tap's class switched off)."""
    with_prefetch = full_sync(sandbox, catalog)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tap_module, "StreamPrefetch", lambda *args, **kwargs: None)
        without = full_sync(sandbox, catalog)
    return {"with": with_prefetch, "without": without}


@pytest.mark.slow
def test_a_full_sync_writes_the_same_messages_with_the_prefetch_as_without(runs) -> None:
    with_prefetch, without = comparable(runs["with"][0]), comparable(runs["without"][0])
    assert sorted(with_prefetch) == sorted(without)
    for stream, messages in without.items():
        assert with_prefetch[stream] == messages, stream
    assert sum(m["type"] == "RECORD" for m in runs["with"][0]) > 1000  # a real sync, many streams
    assert len({m["stream"] for m in runs["with"][0] if m["type"] == "RECORD"}) >= 15


@pytest.mark.slow
def test_the_prefetch_served_requests_and_made_no_extra_one(runs) -> None:
    (prefetch,) = runs["with"][2]
    assert prefetch.requests > 20
    assert prefetch.taken == prefetch.requests  # every answer fetched ahead was used
    assert prefetch.dropped == 0
    assert prefetch.readers_started >= 1  # events, profiles, members: their own readers, started ahead
    assert runs["with"][1] == runs["without"][1]  # the same requests per endpoint


@pytest.mark.slow
def test_reports_are_never_prefetched_and_spend_no_more_of_their_budget(runs, catalog) -> None:
    tap = TapKlaviyo(config={"api_key": "pk_test_0123456789abcdef", "discover_custom_fields": False})
    report_ops = {f"op:{t.cast('KlaviyoStream', tap.streams[REPORT]).operation_id}"}
    assert runs["without"][1][next(iter(report_ops))] > 0, "the report was synced"
    assert {key: runs["with"][1][key] for key in report_ops} == {key: runs["without"][1][key] for key in report_ops}
    reports = [stream for stream in tap.streams.values() if isinstance(stream, ReportStream)]
    assert reports
    assert not any(prefetch_module.prefetchable(t.cast("KlaviyoStream", stream)) for stream in reports)


@pytest.mark.slow
def test_an_incremental_sync_from_a_state_writes_the_same_messages_and_requests(sandbox, catalog) -> None:
    """Windows planned from bookmarks (read-only) must be the sync's, or nothing ahead is used."""
    settings = {"start_date": "2024-06-01T00:00:00Z"}
    first = full_sync(sandbox, catalog, **settings)[0]
    state = [message["value"] for message in first if message["type"] == "STATE"][-1]
    with_prefetch = full_sync(sandbox, catalog, state, **settings)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tap_module, "StreamPrefetch", lambda *args, **kwargs: None)
        without = full_sync(sandbox, catalog, state, **settings)
    assert comparable(with_prefetch[0]) == comparable(without[0])
    assert with_prefetch[1] == without[1]
    (prefetch,) = with_prefetch[2]
    assert prefetch.requests == prefetch.taken > 0
    assert prefetch.readers_started >= 1


def test_max_concurrency_one_prefetches_nothing(sandbox, catalog) -> None:
    out = io.StringIO()
    tap = TapKlaviyo(config=sandbox_config(sandbox, max_concurrency=1), catalog=select(catalog, "tags", "metrics"))
    with pytest.MonkeyPatch.context() as patch, redirect_stdout(out):
        patch.setattr(tap_module, "StreamPrefetch", lambda *args, **kwargs: pytest.fail("prefetch at 1"))
        tap.sync_all()
    assert '"stream":"tags"' in out.getvalue().replace(" ", "")


# -- the prefetch on its own: streams of pages in memory ---------------------------------------


class PagedStream:
    """What the prefetch uses of a stream: requests and pages of a fake collection, one chain."""

    parent_stream_type = None
    child_streams: t.ClassVar[list] = []
    prefetch_ahead = True
    http_method = "GET"
    replication_key = None
    partitions = None
    reads_in_parallel = False
    operation_id = "get_tags"

    def __init__(self, name: str, pages: int, page_bytes: int = 1000) -> None:
        self.name = name
        self.fail_on: int | None = None  # the page whose request fails
        self.page_count = pages
        self.page_bytes = page_bytes
        self.sent: list[str] = []
        self.lock = threading.Lock()

    def reads_whole_chain(self, window: t.Any) -> bool:
        return True

    def build_request(self, context: t.Any, window: t.Any, next_url: str | None) -> requests.PreparedRequest:
        return requests.Request("GET", next_url or f"https://a.klaviyo.com/api/{self.name}?page=0").prepare()

    def send_for_page(self, request: requests.PreparedRequest) -> Page:
        number = int(str(request.url).rsplit("=", 1)[1])
        with self.lock:
            self.sent.append(str(request.url))
        if number == self.fail_on:
            raise requests.HTTPError(f"page {number} refused")
        more = number + 1 < self.page_count
        next_url = f"https://a.klaviyo.com/api/{self.name}?page={number + 1}" if more else None
        return Page(records=[{"id": f"{self.name}-{number}"}], next_url=next_url, full=more, first=None, last=None,
                    size=self.page_bytes)  # fmt: skip

    def read(self, prefetch: prefetch_module.StreamPrefetch) -> list[str]:
        """The stream's own read loop: take each page from the prefetch, else fetch it."""
        ids, url = [], None
        while True:
            request = self.build_request(None, None, url)
            page = prefetch.take(t.cast("KlaviyoStream", self), request) or self.send_for_page(request)
            ids += [record["id"] for record in page.records]
            if not page.next_url:
                return ids
            url = page.next_url


def wait_until_idle(prefetch: prefetch_module.StreamPrefetch) -> None:
    for _ in range(200):
        with prefetch._lock:
            if prefetch._workers.idle == len(prefetch._workers.threads) and not prefetch._in_flight:
                return
        threading.Event().wait(0.01)
    raise AssertionError("the prefetch never went idle")


def test_the_buffer_stays_within_its_bytes_and_every_page_is_read_once_in_order() -> None:
    streams = [PagedStream("first", 3), PagedStream("second", 20), PagedStream("third", 20)]
    prefetch = prefetch_module.StreamPrefetch(t.cast("list[KlaviyoStream]", streams), workers=4, max_bytes=10_000)
    try:
        prefetch.reached(t.cast("KlaviyoStream", streams[0]))
        for stream in streams:
            prefetch.reached(t.cast("KlaviyoStream", stream))
            assert stream.read(prefetch) == [f"{stream.name}-{n}" for n in range(stream.page_count)]
            wait_until_idle(prefetch)
            assert prefetch.peak_bytes <= 10_000
    finally:
        prefetch.close()
    for stream in streams:  # each page requested once, by the prefetch or by the stream
        assert sorted(stream.sent) == sorted(set(stream.sent))
        assert len(stream.sent) == stream.page_count
    assert prefetch.taken >= 10
    assert prefetch.requests == prefetch.taken  # none wasted


class SlowPagedStream(PagedStream):
    """Its answers take two milliseconds (real ones: time.sleep is virtual here), time for idle
    workers woken in vain to run."""

    def send_for_page(self, request: requests.PreparedRequest) -> Page:
        threading.Event().wait(0.002)
        return super().send_for_page(request)


def test_idle_prefetch_workers_are_woken_one_at_a_time_not_all_for_every_answer(monkeypatch) -> None:
    # Eight one-page streams start eight workers; then one chain is left, one request to send at a
    # time, so seven workers idle. Notified to all (as before), every answer woke all seven.
    monkeypatch.setattr(prefetch_module, "_in_flight_cap", lambda operation: 8)
    short = [PagedStream(f"short{n}", 1) for n in range(8)]
    now, later = PagedStream("now", 1), SlowPagedStream("later", 60)
    streams = t.cast("list[KlaviyoStream]", [now, *short, later])
    prefetch = prefetch_module.StreamPrefetch(streams, workers=8, max_bytes=10**6)
    prefetch._workers.work_ready = CountingCondition(prefetch._lock)
    try:
        prefetch.reached(t.cast("KlaviyoStream", now))
        wait_until_idle(prefetch)
        wakeups = prefetch._workers.work_ready.wakeups
        workers = len(prefetch._workers.threads)
    finally:
        prefetch.close()
    assert prefetch.requests == 8 + 60  # all sent ahead, each once
    assert workers == 8
    assert wakeups <= 2 * 60


def test_a_stream_that_asks_first_takes_its_chain_over_and_nothing_is_requested_twice() -> None:
    now, slow = PagedStream("now", 1), PagedStream("slow", 5)
    prefetch = prefetch_module.StreamPrefetch(t.cast("list[KlaviyoStream]", [now, slow]), workers=1, max_bytes=10**6)
    with prefetch._lock:  # the stream asks before any worker could send its first request
        prefetch.reached(t.cast("KlaviyoStream", now))
        prefetch.reached(t.cast("KlaviyoStream", slow))
        request = slow.build_request(None, None, None)
        assert prefetch.take(t.cast("KlaviyoStream", slow), request) is None
    try:
        assert slow.read(prefetch) == [f"slow-{n}" for n in range(5)]
    finally:
        prefetch.close()
    assert len(slow.sent) == len(set(slow.sent)) == 5  # each page once, all by the stream
    assert prefetch.requests == 0


def test_a_prefetched_request_that_failed_raises_in_the_streams_turn_and_is_not_sent_again() -> None:
    now, failing = PagedStream("now", 1), PagedStream("failing", 3)
    failing.fail_on = 1  # its second page fails for good
    prefetch = prefetch_module.StreamPrefetch(t.cast("list[KlaviyoStream]", [now, failing]), workers=2)
    try:
        prefetch.reached(t.cast("KlaviyoStream", now))
        wait_until_idle(prefetch)
        prefetch.reached(t.cast("KlaviyoStream", failing))
        with pytest.raises(requests.HTTPError, match="page 1"):
            failing.read(prefetch)
    finally:
        prefetch.close()
    assert len(failing.sent) == 2  # pages 0 and 1, once each; nothing after the failure


def test_closing_drops_what_was_fetched_ahead() -> None:
    streams = [PagedStream("now", 1), PagedStream("later", 10)]
    prefetch = prefetch_module.StreamPrefetch(t.cast("list[KlaviyoStream]", streams), workers=2, max_bytes=10**6)
    prefetch.reached(t.cast("KlaviyoStream", streams[0]))
    wait_until_idle(prefetch)
    assert prefetch._bytes > 0
    prefetch.close()
    assert prefetch._bytes == 0 and not prefetch._answers
    request = streams[1].build_request(None, None, None)
    assert prefetch.take(t.cast("KlaviyoStream", streams[1]), request) is None


def test_planning_writes_nothing_into_the_state(sandbox, catalog) -> None:
    tap = TapKlaviyo(config=sandbox_config(sandbox, start_date="2024-01-01T00:00:00Z"), catalog=catalog)
    before = json.dumps(tap.state, sort_keys=True)
    streams = prefetch_module.sync_order(t.cast("KlaviyoStream", s) for s in tap.streams.values())
    prefetch = prefetch_module.StreamPrefetch(streams, workers=2)
    try:
        planned = [chain for stream in streams for chain in prefetch._plan(stream)]
        for stream in filter(prefetch_module.starts_reader_ahead, streams):
            prefetch._start_reader(stream)  # finds the groups and starts reading them
    finally:
        prefetch.close()
    assert planned
    assert prefetch.readers_started == 4  # events, profiles, list and segment members
    assert json.dumps(tap.state, sort_keys=True) == before


# -- a kill while pages are fetched ahead ----------------------------------------------------------


@pytest.mark.slow
def test_a_sigterm_while_prefetching_leaves_a_state_the_next_run_resumes_without_a_gap(tmp_path: Path) -> None:
    from klaviyo_sandbox import Sandbox, SandboxConfig

    with Sandbox(SandboxConfig(seed=5, scale=0.05, latency_ms=25, rate_limit_scale=0.0)) as box:
        config = tmp_path / "config.json"
        config.write_text(json.dumps(sandbox_config(box)))
        catalog = tmp_path / "catalog.json"
        discovered = subprocess.run([str(BIN / "tap-klaviyo"), "--config", str(config), "--discover"],
                                    capture_output=True, text=True, check=True, env=_env())  # fmt: skip
        names = ["campaigns", "catalog_items", "coupons", "coupon_codes", "flows", "flow_actions", "flow_messages",
                 "forms", "images", "lists", "metrics", "segments", "tags", "templates"]  # fmt: skip
        catalog.write_text(json.dumps(select(json.loads(discovered.stdout), *names)))
        command = [str(BIN / "tap-klaviyo"), "--config", str(config), "--catalog", str(catalog)]

        full = _records(subprocess.run(command, capture_output=True, text=True, check=True, env=_env()).stdout)
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_env())
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line.decode())
            if '"stream":"flow_actions"' in line.decode().replace(" ", "") and '"RECORD"' in line.decode():
                proc.send_signal(signal.SIGTERM)  # mid-sync: later streams are being fetched ahead
                break
        lines += [line.decode() for line in proc.stdout]
        assert proc.wait(30) == 143
        first = [json.loads(line) for line in lines if line.strip()]
        state = [m["value"] for m in first if m["type"] == "STATE"][-1]
        assert first[-1]["type"] == "STATE"
        (tmp_path / "state.json").write_text(json.dumps(state))
        resumed = subprocess.run([*command, "--state", str(tmp_path / "state.json")],
                                 capture_output=True, text=True, check=True, env=_env()).stdout  # fmt: skip
    union = _records("".join(lines)) | _records(resumed)
    assert union == full  # every record of the full sync, none missing
    assert len(_records("".join(lines))) < len(full)  # the kill came before the end


def _records(output: str) -> set[tuple[str, str]]:
    found = set()
    for line in output.splitlines():
        if line.startswith("{"):
            message = json.loads(line)
            if message["type"] == "RECORD":
                record = message["record"]
                found.add((message["stream"], json.dumps(record, sort_keys=True)))
    return found


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("TAP_KLAVIYO", "TARGET_KLAVIYO"))}
