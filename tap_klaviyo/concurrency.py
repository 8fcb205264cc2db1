"""Fetch a stream's pages in parallel, hand its records over in order.

A stream's replication range is read as contiguous *slices* of its sort key
(``datetime`` for events, ``updated`` for profiles, ``joined_group_at`` for list
members), each an independent ``links.next`` chain. Worker threads fetch pages of
whichever slices come first; the SDK's thread (``get_records``) takes the pages of
the first slice, then the next, strictly in order. So records stay sorted, and the
SDK's bookmark, which is always the last record it emitted, never passes a record
that was not emitted: a run killed at any moment resumes without a gap.

Slices are cut adaptively, so nothing about the account needs to be known up front:

* A pass starts as one slice covering its whole window, and its first request is the
  one a sequential read would make (sorted ascending, at the largest page size). A
  small stream is therefore read with exactly the sequential requests.
* When a full page with a ``links.next`` shows (from the time span of its records)
  that far more pages remain than one slice should hold, the rest of the slice is
  split: the slice itself continues its chain up to a cut about
  :data:`PAGES_PER_SLICE` pages further on (its chain stops at the first record
  past the cut, dropping those records), and new slices of the same width follow
  (one per worker), then one slice for the remainder, which splits again by the same
  rule when its own first page arrives. The first page of a window whose lower
  bound is unknown thus also finds the earliest record: no probe request is needed.
  Dense bursts split again wherever a slice's pages show them.
* A slice's width is whole seconds (Klaviyo's timestamps are whole seconds), so a
  cut never separates records that share a timestamp. A lookback (``greater-than``
  from one second earlier) returns records of the slice before; they are dropped.
* Why bounded slices rather than a fixed split into N pieces: the reader takes
  slices in order, so a big slice would be read one page at a time while the
  slices after it fill their buffers and stall; slices of a few pages keep every
  worker busy with a buffer of a few pages per worker, whatever the data's skew.

Memory is bounded by a budget, not by the account's size: a page is fetched only
while fewer than ``max_buffered_pages`` pages (default: 3 per worker, at most
:data:`BUFFERED_RECORDS` records) are buffered or in flight, and while the buffered
pages' bytes plus those expected of the pages in flight stay under ``max_buffered_bytes``
(default :data:`BUFFERED_BYTES`; pages stay raw JSON until read, so a page costs its
bytes; when the page budget's worth of answers would not fit, the pages behind the slice
being read are held LZ4-compressed, a fifth of that), and only for the ``2 * workers + 2``
slices nearest the reader (the slice being read may always be :data:`HEAD_PAGES` pages
ahead, so it never starves). Workers take the slice being read while it is that close to
running dry, then the first page of a slice not yet cut (the remainder of a split: that page
makes the next slices), then the earliest slice that may fetch. A slice is only ever fetched
by one worker at a time (its next page's URL comes from its previous page).

Several passes can be queued (a tail pass after its main pass; the next lists of
a per-list stream), so the next ones' first pages are fetched while one is read.

Failures: a request that fails for good (after the connection's retries) fails its
slice; slices after it are no longer fetched, and the reader raises the error when
it reaches that slice, after handing over every record before it.
"""

from __future__ import annotations

import collections
import gc
import logging
import math
import threading
import time
import typing as t
from dataclasses import dataclass

from typing_extensions import override

from tap_klaviyo import GC_THRESHOLDS

#: A slice aims at this many full pages: enough that its partial last page wastes
#: little of the rate limit, few enough that the slices ahead of the reader fit the budget
#: (a slice's pages come one round trip after another: the fewer a slice holds, the fewer
#: pages must be buffered ahead to keep the reader busy, for a few more partial pages).
PAGES_PER_SLICE = 2
#: Split a slice when what remains of it looks larger than this many pages.
SPLIT_ABOVE_PAGES = 3
#: Default page budget per worker (buffered plus in flight)...
BUFFERED_PAGES_PER_WORKER = 3
#: ...and in records, whichever is smaller (events pages hold 1,000 records)...
BUFFERED_RECORDS = 48_000
#: ...and in bytes of the answers (a page stays raw JSON until read: ~1 MB for 1,000 events,
#: more for realistic orders). Measured (docs/operations.md), 16 workers at 300 ms: 16 MB
#: kept up on an idle machine but starved the reader when the sandbox answered slowly
#: (a loaded machine); 32 MB of 2-page slices kept up with the 48 pages of 4-page slices.
BUFFERED_BYTES = 32 * 1024 * 1024
#: The slice being read may always run this many pages ahead of the reader.
HEAD_PAGES = 2


_gc_tuned = False


def tune_gc() -> None:
    """Make the garbage collector cheap for a stream of short-lived JSON objects (once per process).

    Pages are parsed into tens of thousands of dicts and lists that die by reference
    counting; the default thresholds (a collection every 700 allocations) scanned
    them over and over: 60-70% of the time spent parsing a page went to the
    collector. Objects alive now (modules, catalog, schemas) are frozen out of scans
    and collections run a hundred times less often. Cyclic garbage is still collected.

    No full collection first: it found nothing to free at this point (start-up makes
    no garbage cycles worth the name) and cost ~30 ms of every run's start-up.
    """
    global _gc_tuned  # noqa: PLW0603
    if _gc_tuned:
        return
    _gc_tuned = True
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)  # set at import already (tap_klaviyo/__init__.py); again in case it changed


T = t.TypeVar("T")


class WorkerThreads(t.Generic[T]):
    """Worker threads that wait for work under their owner's lock, woken one at a time.

    ``find`` (called with the lock held) returns the next piece of work, or None while there
    is none; ``closed`` says the owner stopped. Work to do wakes one idle worker, or starts
    one (up to ``limit``) when none is idle; a worker that takes work calls
    :meth:`wake_or_spawn` again, so workers join one after another while more remains. One
    condition notified to all woke every idle worker for every page (a 20,000-profile sync:
    3,071 context switches against 1,872, docs/operations.md). The parallel reader and the
    stream prefetch both use it.
    """

    def __init__(
        self,
        lock: threading.Lock | threading.RLock,
        target: t.Callable[[], None],
        limit: int,
        name: str,
        *,
        find: t.Callable[[], T | None],
        closed: t.Callable[[], bool],
    ) -> None:
        self.work_ready = threading.Condition(lock)
        self.idle = 0  # workers waiting for work
        self.threads: list[threading.Thread] = []
        self._target, self._limit, self._name = target, limit, name
        self._find, self._closed = find, closed

    def wake_or_spawn(self) -> None:
        """With the lock held: if there is work, wake one idle worker, or start one."""
        if self._closed() or self._find() is None:
            return
        if self.idle:
            self.work_ready.notify()
        elif len(self.threads) < self._limit:
            name = f"{self._name}-{len(self.threads) + 1}"
            thread = threading.Thread(target=self._target, name=name, daemon=True)
            self.threads.append(thread)
            thread.start()

    def next_work(self) -> T | None:
        """With the lock held: the next piece of work, waiting while there is none; None once closed."""
        while not self._closed():
            found = self._find()
            if found is not None:
                return found
            self.idle += 1
            self.work_ready.wait()
            self.idle -= 1
        return None

    def wake_all(self) -> None:
        """With the lock held: wake every idle worker (to see that their owner closed)."""
        self.work_ready.notify_all()

    def join(self, seconds: float) -> None:
        """Wait up to ``seconds`` in all for the workers (but the calling thread) to exit."""
        deadline = time.monotonic() + seconds
        current = threading.current_thread()
        for thread in self.threads:
            if thread is not current:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))


@dataclass
class Page:
    """One answer: its records (converted), where the chain goes next, the key range."""

    records: t.Sequence[dict]  # read once, in order (a page's records stay JSON until then)
    next_url: str | None
    full: bool  # as many resources as asked for, so more may follow
    first: float | None  # sort key of the first record, epoch seconds
    last: float | None  # sort key of the last record
    size: int = 0  # bytes the page holds while buffered (its answer's body, or its records packed)

    def pack(self) -> None:
        """Hold the records compressed while the page waits, when they can be (:class:`Packable`)."""
        if isinstance(self.records, Packable):
            self.records, self.size = self.records.packed()


@t.runtime_checkable
class Packable(t.Protocol):
    """Records that can be held compressed (``tap_klaviyo.records.LazyRecords``)."""

    def packed(self) -> tuple[t.Sequence[dict], int]:
        """The same records held compressed, and the bytes they hold."""
        ...


class Slice:
    """Records of one pass with ``lower <= key < upper`` (``None``: unbounded), one chain."""

    __slots__ = (
        "after", "claimed", "done", "error", "lower", "next_url", "pages", "pass_id", "requests", "stop", "uncut",
        "upper",
    )  # fmt: skip

    def __init__(
        self,
        pass_id: t.Hashable,
        lower: float | None,
        upper: float | None,
        after: t.Hashable | None = None,
        *,
        uncut: bool = False,
    ) -> None:
        self.pass_id = pass_id
        self.after = after  # a pass that must be fetched completely before this slice starts
        self.lower = lower
        self.upper = upper
        self.stop = upper  # lowered when the slice is split: the chain ends at the first record >= stop
        self.pages: collections.deque[Page] = collections.deque()
        self.next_url: str | None = None
        self.claimed = False
        self.done = False
        self.error: BaseException | None = None
        self.requests = 0
        #: Its width is not cut to the data yet (a pass's window, a split's remainder): its first
        #: page may split it, making the slices the workers fetch next.
        self.uncut = uncut

    @override
    def __repr__(self) -> str:
        return f"Slice({self.pass_id!r}, {self.lower}, {self.stop}, pages={len(self.pages)}, done={self.done})"


#: ``fetch(slice, next_url)``: the first page of the slice when ``next_url`` is None.
Fetch = t.Callable[[Slice, str | None], Page]
#: A record's sort key in epoch seconds (None when the record has none).
Key = t.Callable[[dict], float | None]


class ParallelReader:
    """Slices of one or more passes, fetched by up to ``workers`` threads, read in order.

    Passes are added in reading order (``add_pass``); ``pages(pass_id)`` then yields
    that pass's pages in key order. Use as a context manager, or call ``close``.
    """

    def __init__(
        self,
        fetch: Fetch,
        key: Key,
        *,
        workers: int,
        page_size: int,
        horizon: float | None = None,
        max_buffered_pages: int | None = None,
        max_buffered_bytes: int | None = None,
        name: str = "reader",
        logger: logging.Logger | None = None,
    ) -> None:
        self._fetch = fetch
        self._key = key
        self.workers = max(1, workers)
        self.page_size = max(1, page_size)
        #: Where an unbounded slice stops being split (the run's start): past it, one chain.
        self.horizon = horizon
        default_budget = max(self.workers + HEAD_PAGES, BUFFERED_RECORDS // self.page_size)
        self.max_buffered_pages = max(
            1, max_buffered_pages or min(BUFFERED_PAGES_PER_WORKER * self.workers, default_budget)
        )
        self.max_buffered_bytes = max_buffered_bytes or BUFFERED_BYTES
        #: Only this many slices from the one being read may fetch: those of the split being
        #: fetched (``workers`` and its remainder) and of the next one, cut from that remainder.
        #: One split's worth idled the workers behind a slow head slice (8 workers at 300 ms:
        #: 3-10% fewer events and profiles a second); the budgets bound the memory either way.
        self.max_slices_ahead = 2 * self.workers + 2
        self.name = name
        self.logger = logger or logging.getLogger(__name__)
        # One lock, two conditions: a page ready wakes the reader only; work to fetch wakes
        # one idle worker (WorkerThreads).
        self._lock = threading.Lock()
        self._page_ready = threading.Condition(self._lock)  # the reader waits on it
        self._workers = WorkerThreads(
            self._lock, self._work, self.workers, self.name, find=self._next_fetchable, closed=lambda: self._closed
        )
        self._slices: list[Slice] = []  # not yet handed over, in order; the head is [0]
        self._buffered = 0  # pages fetched, not yet handed over
        self._buffered_bytes = 0  # their size
        self._page_bytes = 0  # the largest page seen: what a page in flight is expected to hold
        self._in_flight = 0
        self._closed = False
        # Counters for progress logs and tests.
        self.pages_fetched = 0
        self.splits = 0
        self.peak_buffered = 0
        self.peak_buffered_bytes = 0

    # -- setup and teardown -----------------------------------------------------------

    def add_pass(
        self, pass_id: t.Hashable, lower: float | None, upper: float | None, *, after: t.Hashable | None = None
    ) -> None:
        """Append a pass (one slice covering its window; split as its pages arrive).

        With ``after``, the pass starts only once that pass is fetched completely
        (a tail pass waits for its main pass; other passes are fetched ahead).
        """
        with self._lock:
            self._slices.append(Slice(pass_id, lower, upper, after, uncut=True))
            self._workers.wake_or_spawn()

    def close(self) -> None:
        """Stop fetching: idle workers exit now, busy ones after their request."""
        with self._lock:
            self._closed = True
            self._slices.clear()
            self._workers.wake_all()
            self._page_ready.notify_all()
        # Idle workers exit at once; one still waiting for an answer is a daemon thread
        # whose page is dropped: do not hold the run up for it.
        self._workers.join(1.0)

    def __enter__(self) -> ParallelReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def buffered_pages(self) -> int:
        return self._buffered

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def pending_passes(self) -> list[t.Hashable]:
        """Pass ids still to be read, in order."""
        with self._lock:
            return list(dict.fromkeys(s.pass_id for s in self._slices))

    # -- the reader (the SDK's thread) ----------------------------------------------

    def pages(
        self,
        pass_id: t.Hashable,
        *,
        heartbeat: t.Callable[[], None] | None = None,
        poll_seconds: float = 1.0,
    ) -> t.Iterator[Page]:
        """The pass's pages in key order; raises a slice's error on reaching that slice.

        ``heartbeat`` is called about every ``poll_seconds`` while waiting (progress logs).
        """
        while True:
            with self._lock:
                while True:
                    if self._closed or not self._slices or self._slices[0].pass_id != pass_id:
                        return
                    head = self._slices[0]
                    if head.pages:
                        page = head.pages.popleft()
                        self._buffered -= 1
                        self._buffered_bytes -= page.size
                        self._workers.wake_or_spawn()  # room for one more page
                        break
                    if head.error is not None:
                        raise head.error
                    if head.done:
                        self._slices.pop(0)
                        self._workers.wake_or_spawn()  # one more slice may fetch
                        continue
                    self._workers.wake_or_spawn()
                    self._page_ready.wait(poll_seconds)
                    if heartbeat is not None:
                        self._lock.release()
                        try:
                            heartbeat()
                        finally:
                            self._lock.acquire()
            yield page

    # -- workers ------------------------------------------------------------------------

    def _next_fetchable(self) -> Slice | None:
        """With the lock held: the slice that may fetch a page now, if any.

        The head while it holds fewer than :data:`HEAD_PAGES` pages; else, with room in the
        budget, the nearest uncut slice's first page, else the earliest slice's next page. An
        uncut slice waiting behind the other slices' later pages split only once they were
        all fetched, and the workers then idled, waiting for the reader (8 workers at 300 ms:
        6.5 requests in flight on average, now 7.1-7.2; docs/operations.md, stop 33).
        """
        room = self._has_room()
        unfinished: set[t.Hashable] = set()  # passes with slices still being fetched
        earliest: Slice | None = None
        for index, candidate in enumerate(self._slices):
            if candidate.error is not None:
                break  # nothing after a failed slice will be read
            if not candidate.done:
                unfinished.add(candidate.pass_id)
            if candidate.claimed or candidate.done or candidate.after in unfinished:
                continue
            if index >= self.max_slices_ahead:
                break  # the pages of nearer slices are handed over first: fetch those
            if index == 0 and len(candidate.pages) < HEAD_PAGES:
                return candidate
            if not room:
                break  # later slices would need room too
            if candidate.uncut and not candidate.requests:
                return candidate
            earliest = earliest or candidate
        return earliest

    def _has_room(self) -> bool:
        """With the lock held: may one more page be fetched within the page and byte budgets?"""
        if self._buffered + self._in_flight >= self.max_buffered_pages:
            return False
        expected = self._buffered_bytes + (self._in_flight + 1) * self._page_bytes
        return expected <= self.max_buffered_bytes

    def _work(self) -> None:
        while True:
            with self._lock:
                candidate = self._workers.next_work()
                if candidate is None:
                    return
                candidate.claimed = True
                self._in_flight += 1
                url = candidate.next_url
                # More fetchable work (and no idle worker)? Bring in another worker.
                self._workers.wake_or_spawn()
            try:
                page = self._fetch(candidate, url)
                answer_bytes = page.size
                if self._packs(candidate):
                    page.pack()
            except BaseException as exc:  # noqa: BLE001 - handed to the reader, raised there
                with self._lock:
                    self._in_flight -= 1
                    candidate.claimed = False
                    candidate.error = exc
                    self._page_ready.notify()
                continue
            with self._lock:
                self._in_flight -= 1
                candidate.claimed = False
                candidate.requests += 1
                self.pages_fetched += 1
                self._page_bytes = max(self._page_bytes, answer_bytes)
                if not self._closed:
                    self._deliver(candidate, page)
                self._page_ready.notify()

    def _packs(self, piece: Slice) -> bool:
        """Whether a page of ``piece`` is held packed: it waits for other slices' pages to be read
        first, and the page budget's worth of answers as they came would not fit the byte budget.

        16 workers reading events buffered ~30 answers of ~1 MB, a third of the peak RSS; packed,
        the page budget binds, in a fifth of the bytes, for ~2 ms of CPU a page. With 8 workers
        (24 pages of events) or profiles' pages of 100, the answers fit as they came, and packing
        would cost CPU for nothing. The slice being read keeps its pages as they came
        (docs/operations.md, stop 34).
        """
        with self._lock:
            if self.max_buffered_pages * self._page_bytes <= self.max_buffered_bytes:
                return False
            return bool(self._slices) and self._slices[0] is not piece

    def _deliver(self, piece: Slice, page: Page) -> None:
        """With the lock held: keep the page's records that belong to the slice; maybe split it."""
        if piece.stop is not None and page.last is not None and page.last >= piece.stop:
            page.records = [r for r in page.records if _before(self._key(r), piece.stop)]
            piece.done = True
        elif not page.next_url:
            piece.done = True  # an empty page with a links.next goes on (the SDK would drop the rest)
        else:
            piece.next_url = page.next_url
            self._maybe_split(piece, page)
        if piece.lower is not None and page.first is not None and page.first < piece.lower:
            # A greater-than lookback returned records of the slice before (already handed
            # over): on the first page, or more pages when many share that second.
            page.records = [r for r in page.records if _at_or_after(self._key(r), piece.lower)]
        if page.records:
            piece.pages.append(page)
            self._buffered += 1
            self._buffered_bytes += page.size
            self.peak_buffered = max(self.peak_buffered, self._buffered + self._in_flight)
            self.peak_buffered_bytes = max(self.peak_buffered_bytes, self._buffered_bytes)

    def _maybe_split(self, piece: Slice, page: Page) -> None:
        """With the lock held: cut the rest of ``piece`` into slices when many pages remain."""
        end = piece.stop if piece.stop is not None else self.horizon
        if not page.full or page.first is None or page.last is None or end is None or page.last >= end:
            return
        density = len(page.records) / max(page.last - page.first, 1.0)  # records per second
        if (end - page.last) * density / self.page_size <= SPLIT_ABOVE_PAGES:
            return
        width = max(1, math.ceil(PAGES_PER_SLICE * self.page_size / density))
        cut = math.floor(page.last) + width
        if cut >= end:
            return
        pieces: list[Slice] = []
        lower = cut
        while len(pieces) < self.workers and lower + width < end:
            pieces.append(Slice(piece.pass_id, lower, lower + width, piece.after))
            lower += width
        pieces.append(Slice(piece.pass_id, lower, piece.stop, piece.after, uncut=True))  # the rest (None: unbounded)
        position = self._slices.index(piece) + 1
        self._slices[position:position] = pieces
        piece.stop = cut
        self.splits += 1
        self._workers.wake_or_spawn()


def _at_or_after(value: float | None, bound: float) -> bool:
    return value is None or value >= bound


def _before(value: float | None, bound: float) -> bool:
    return value is None or value < bound
