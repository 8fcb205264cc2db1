"""The parallel reader on an in-memory paginated source: order, completeness, bounds, failures.

No timing is asserted: the source sleeps a little per page only so that several
workers really have requests in flight at once.
"""

from __future__ import annotations

import bisect
import random
import threading
import time
import typing as t

import msgspec
import pytest

from tap_klaviyo.concurrency import HEAD_PAGES, Page, ParallelReader, Slice
from tap_klaviyo.records import LazyRecords, PackedRecords


class Source:
    """Records sorted by an integer-second key, served like Klaviyo: [lower, upper) + cursor.

    ``lookback`` makes the first page of a range also return records one second
    before its lower bound (as ``greater-than(key, lower - 1 s)`` does).
    """

    def __init__(self, keys: t.Iterable[int], *, page_size: int, delay: float = 0.0, lookback: bool = False) -> None:
        self.records = [{"id": f"r{i}", "k": float(k)} for i, k in enumerate(sorted(keys))]
        self.keys = [r["k"] for r in self.records]
        self.page_size = page_size
        self.delay = delay
        self.lookback = lookback
        self.lock = threading.Lock()
        self.requests: list[tuple[str, float | None, float | None, int]] = []
        self.fail_at: set[int] = set()  # request numbers (1-based) that raise
        self.in_flight = 0
        self.peak_in_flight = 0
        self.count = 0

    def fetch(self, piece: Slice, url: str | None) -> Page:
        with self.lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            self.count += 1
            number = self.count
        try:
            if url is None:
                lower, upper = piece.lower, piece.upper
                if lower is not None and self.lookback:
                    lower -= 1
                start = bisect.bisect_left(self.keys, lower) if lower is not None else 0
            else:
                low, high, offset = url.split("|")
                lower = None if low == "None" else float(low)
                upper = None if high == "None" else float(high)
                start = int(offset)
            end = bisect.bisect_left(self.keys, upper) if upper is not None else len(self.keys)
            chunk = self.records[start : min(start + self.page_size, end)]
            with self.lock:
                self.requests.append((threading.current_thread().name, lower, upper, start))
            if self.delay:
                time.sleep(self.delay)
            if number in self.fail_at:
                raise RuntimeError(f"request {number} failed")
            more = start + len(chunk) < end
            return Page(
                records=[dict(r) for r in chunk],
                next_url=f"{lower}|{upper}|{start + len(chunk)}" if more else None,
                full=len(chunk) == self.page_size,
                first=chunk[0]["k"] if chunk else None,
                last=chunk[-1]["k"] if chunk else None,
                size=1000 * len(chunk),  # as if each record were 1 KB of JSON
            )
        finally:
            with self.lock:
                self.in_flight -= 1


def key(record: dict) -> float:
    return record["k"]


def read_all(reader: ParallelReader, passes: list[t.Hashable], *, slow: float = 0.0) -> list[dict]:
    out = []
    for pass_id in passes:
        for page in reader.pages(pass_id):
            if slow:
                time.sleep(slow)
            out.extend(page.records)
    return out


def bursty_keys(n: int, seed: int = 7) -> list[int]:
    """Uneven density: sparse years, a dense day, duplicate timestamps."""
    rng = random.Random(seed)
    keys = [rng.randrange(0, 30_000_000) for _ in range(n // 2)]
    keys += [rng.randrange(10_000_000, 10_086_400) for _ in range(n // 2 - 50)]
    keys += [20_000_000] * 50  # fifty records in one second
    return keys


def test_every_record_is_handed_over_once_in_order_while_several_workers_fetch():
    source = Source(bursty_keys(6000), page_size=50, delay=0.002)
    with ParallelReader(source.fetch, key, workers=8, page_size=50, name="t") as reader:
        reader.add_pass("main", 0.0, 30_000_000.0)
        records = read_all(reader, ["main"])
    assert [r["id"] for r in records] == [r["id"] for r in source.records]
    assert reader.splits > 0
    assert len({name for name, *_ in source.requests}) > 1  # more than one worker fetched
    assert source.peak_in_flight > 1


def test_an_unknown_lower_bound_needs_no_probe_and_a_small_range_makes_the_sequential_requests():
    source = Source(range(1000, 1040), page_size=50)
    with ParallelReader(source.fetch, key, workers=8, page_size=50) as reader:
        reader.add_pass("main", None, 5000.0)
        records = read_all(reader, ["main"])
    assert len(records) == 40
    assert len(source.requests) == 1  # one page: no split, no probe, no extra request


def test_a_remainder_is_fetched_before_the_later_pages_of_the_slices_cut_with_it():
    """Its first page cuts the next slices: fetched last, it left the workers idle behind the head."""
    source = Source(range(1000), page_size=10)  # a record a second: a page is 10 s
    fetched = threading.Semaphore(0)
    fetch = source.fetch

    def counted(piece: Slice, url: str | None) -> Page:
        page = fetch(piece, url)
        fetched.release()
        return page

    # One worker, and nothing is read until three answers came: their order is the scheduling's alone.
    with ParallelReader(counted, key, workers=1, page_size=10, max_buffered_pages=20) as reader:
        reader.add_pass("main", 0.0, 1000.0)
        for _ in range(3):
            assert fetched.acquire(timeout=10)
        # The first page cut [0, 27) (two more pages), [27, 45) and the rest, [45, 1000).
        assert [(lower, upper, start) for _, lower, upper, start in source.requests[:3]] == [
            (0.0, 1000.0, 0),
            (0.0, 1000.0, 10),  # the slice being read, up to HEAD_PAGES ahead
            (45.0, 1000.0, 45),  # the remainder's first page, before [0, 27)'s third and [27, 45)'s
        ]
        records = read_all(reader, ["main"])
    assert [r["id"] for r in records] == [r["id"] for r in source.records]


def test_slice_boundaries_never_separate_records_that_share_a_timestamp():
    keys = [k for k in range(0, 100_000, 10) for _ in range(3)]  # triples on each timestamp
    source = Source(keys, page_size=20, delay=0.001)
    with ParallelReader(source.fetch, key, workers=6, page_size=20) as reader:
        reader.add_pass("main", 0.0, 100_000.0)
        records = read_all(reader, ["main"])
    assert [r["id"] for r in records] == [r["id"] for r in source.records]
    assert reader.splits > 0


def test_a_greater_than_lookback_does_not_hand_over_records_twice():
    source = Source(range(0, 20_000, 2), page_size=25, delay=0.001, lookback=True)
    with ParallelReader(source.fetch, key, workers=5, page_size=25) as reader:
        reader.add_pass("main", 100.0, 20_000.0)
        records = read_all(reader, ["main"])
    assert [r["k"] for r in records] == [k for k in source.keys if k >= 100]


def test_an_unbounded_pass_is_split_up_to_the_horizon_and_read_to_its_end():
    source = Source(range(0, 50_000, 5), page_size=40, delay=0.001)
    with ParallelReader(source.fetch, key, workers=4, page_size=40, horizon=30_000.0) as reader:
        reader.add_pass(("list", 0), None, None)
        records = read_all(reader, [("list", 0)])
    assert [r["id"] for r in records] == [r["id"] for r in source.records]
    assert reader.splits > 0


def test_several_passes_are_read_in_order_and_the_next_ones_are_fetched_ahead():
    sources = {}
    for group in range(6):
        sources[group] = Source(range(group * 1000, group * 1000 + 30), page_size=50, delay=0.01)

    def fetch(piece: Slice, url: str | None) -> Page:
        return sources[piece.pass_id].fetch(piece, url)

    with ParallelReader(fetch, key, workers=6, page_size=50) as reader:
        for group in sources:
            reader.add_pass(group, None, None)
        first = next(iter(reader.pages(0)))
        # while the first group's page is read, other groups' pages are being fetched
        fetched_ahead = sum(len(s.requests) for g, s in sources.items() if g)
        rest = list(first.records) + read_all(reader, [0]) + read_all(reader, list(range(1, 6)))
    assert [r["k"] for r in rest] == [k for g in sources for k in sources[g].keys]
    assert fetched_ahead >= 1


def test_a_pass_declared_after_another_starts_only_once_that_one_is_fetched():
    main = Source(range(400), page_size=50, delay=0.005)
    tail = Source(range(10_000, 10_010), page_size=50)

    def fetch(piece: Slice, url: str | None) -> Page:
        if piece.pass_id == "tail":
            assert all(s.done for s in reader._slices if s.pass_id == "main")
            return tail.fetch(piece, url)
        return main.fetch(piece, url)

    with ParallelReader(fetch, key, workers=8, page_size=50) as reader:
        reader.add_pass("main", 0.0, 400.0)
        reader.add_pass("tail", 400.0, None, after="main")
        records = read_all(reader, ["main", "tail"])
    assert len(records) == 410


def test_buffered_pages_stay_within_the_budget_however_slow_the_reader():
    source = Source(range(0, 200_000, 4), page_size=50)
    with ParallelReader(source.fetch, key, workers=8, page_size=50, max_buffered_pages=10) as reader:
        reader.add_pass("main", 0.0, 200_000.0)
        peak = 0
        count = 0
        for page in reader.pages("main"):
            peak = max(peak, reader.buffered_pages + reader.in_flight)
            count += len(page.records)
            time.sleep(0.001)
    assert count == len(source.records)
    assert reader.peak_buffered <= 10 + HEAD_PAGES
    assert peak <= 10 + HEAD_PAGES


def test_buffered_bytes_stay_within_the_byte_budget_however_slow_the_reader():
    source = Source(range(0, 200_000, 4), page_size=50)  # 50 KB a page
    budget = 200_000  # four pages' worth, though the page budget would allow 24
    with ParallelReader(source.fetch, key, workers=8, page_size=50, max_buffered_bytes=budget) as reader:
        reader.add_pass("main", 0.0, 200_000.0)
        count = 0
        for page in reader.pages("main"):
            count += len(page.records)
            time.sleep(0.001)
    assert count == len(source.records)
    assert reader.peak_buffered_bytes <= budget + HEAD_PAGES * 50_000  # the head slice may always run ahead
    assert reader.max_buffered_pages == 24 and reader.peak_buffered <= 4 + HEAD_PAGES


class JsonSource(Source):
    """Pages whose records stay JSON until read, as the tap's do (``LazyRecords``), sized by their bytes."""

    def fetch(self, piece: Slice, url: str | None) -> Page:
        page = super().fetch(piece, url)
        body = msgspec.json.encode(page.records)
        page.records, page.size = LazyRecords(msgspec.json.decode(body, type=list[msgspec.Raw]), dict), len(body)
        return page


@pytest.mark.parametrize("budget_binds", [True, False])
def test_pages_that_wait_are_held_packed_only_when_the_byte_budget_binds(budget_binds):
    source = JsonSource(range(0, 100_000, 4), page_size=50)  # ~1.4 KB a page
    budget = 6_000 if budget_binds else 10_000_000  # the page budget (24 pages) would hold ~34 KB
    handed: list[Page] = []
    with ParallelReader(source.fetch, key, workers=8, page_size=50, max_buffered_bytes=budget) as reader:
        reader.add_pass("main", 0.0, 100_000.0)
        records = []
        for page in reader.pages("main"):
            handed.append(page)
            records.extend(page.records)
            time.sleep(0.001)
    assert [r["id"] for r in records] == [r["id"] for r in source.records]
    packed = [page for page in handed if isinstance(page.records, PackedRecords)]
    assert all(page.size == page.records.size for page in packed)
    if budget_binds:  # more pages than the byte budget holds as they came: those behind the head packed
        assert len(packed) > len(handed) / 2
        assert reader.peak_buffered > budget / 1_400 + HEAD_PAGES
        assert reader.peak_buffered_bytes <= budget + HEAD_PAGES * 1_500
    else:
        assert not packed


def test_a_budget_of_one_page_cannot_deadlock():
    source = Source(bursty_keys(3000, seed=3), page_size=30, delay=0.001)
    with ParallelReader(source.fetch, key, workers=6, page_size=30, max_buffered_pages=1) as reader:
        reader.add_pass("main", 0.0, 30_000_000.0)
        records = read_all(reader, ["main"], slow=0.0005)
    assert len(records) == len(source.records)


def test_a_failed_slice_raises_after_every_record_before_it_and_nothing_after():
    source = Source(range(0, 40_000, 2), page_size=50, delay=0.002)
    source.fail_at = {12}
    handed: list[dict] = []
    with ParallelReader(source.fetch, key, workers=6, page_size=50) as reader:
        reader.add_pass("main", 0.0, 40_000.0)
        with pytest.raises(RuntimeError, match="request 12 failed"):
            for page in reader.pages("main"):
                handed.extend(page.records)
    keys = [r["k"] for r in handed]
    assert keys == sorted(keys)
    assert keys == source.keys[: len(keys)]  # a prefix: no gap before the failure


def test_closing_early_stops_the_workers():
    source = Source(range(100_000), page_size=50, delay=0.002)
    reader = ParallelReader(source.fetch, key, workers=6, page_size=50, name="closing")
    reader.add_pass("main", 0.0, 100_000.0)
    next(iter(reader.pages("main")))
    reader.close()
    time.sleep(0.05)
    made = len(source.requests)
    time.sleep(0.05)
    assert len(source.requests) == made
    assert not [t for t in threading.enumerate() if t.name.startswith("closing") and t.is_alive()]


def test_a_lookback_second_holding_several_pages_is_not_handed_over_again():
    keys = [99] * 120 + list(range(100, 3000))
    source = Source(keys, page_size=25, lookback=True)
    with ParallelReader(source.fetch, key, workers=4, page_size=25) as reader:
        reader.add_pass("main", 100.0, 3000.0)
        records = read_all(reader, ["main"])
    assert [r["k"] for r in records] == [float(k) for k in range(100, 3000)]


class CountingCondition(threading.Condition):
    """A condition that counts the waits it returns from."""

    def __init__(self, lock: threading.Lock) -> None:
        super().__init__(lock)
        self.wakeups = 0

    def wait(self, timeout: float | None = None) -> bool:
        result = super().wait(timeout)
        self.wakeups += 1
        return result


def test_idle_workers_are_woken_one_at_a_time_not_all_for_every_page():
    # One chain (no split: an unknown lower bound and no horizon): one page fetchable at a time,
    # so seven of the eight workers idle throughout. Waking them all for every page (one
    # notify_all for every event) gave a 20,000-profile sync 3,071 context switches, not 1,872.
    source = Source(range(4000), page_size=20)
    with ParallelReader(source.fetch, key, workers=8, page_size=20, name="wakeups") as reader:
        reader._workers.work_ready = CountingCondition(reader._lock)
        reader.add_pass("main", None, None)
        records = read_all(reader, ["main"])
        wakeups = reader._workers.work_ready.wakeups
    assert len(records) == 4000
    pages = len(source.requests)
    assert pages == 200
    assert wakeups <= 2 * pages  # notify_all: up to seven a page
