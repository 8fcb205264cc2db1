"""The stream's side of the parallel reader (:mod:`tap_klaviyo.concurrency`).

For a stream that reads in parallel, ``ParallelPages.pages(context)`` plans the
context's windows as passes of a :class:`~tap_klaviyo.concurrency.ParallelReader`
and hands its pages over in order, each with its window. Workers fetch a slice's
pages with the stream's own :meth:`~tap_klaviyo.stream.KlaviyoStream.fetch_page`,
given the slice's window explicitly: the same requests, decoded the same way, as
when the stream reads one page at a time.

For a partitioned stream (one partition per list or segment) the plan runs on to the
partitions after this one, so their pages are fetched while this one is read.

A child stream (flow messages per flow action, coupon codes per coupon) is read one page
at a time, but the first pages of its next contexts are fetched ahead (:class:`ChildPrefetch`).
"""

from __future__ import annotations

import threading
import typing as t
from concurrent.futures import Future, ThreadPoolExecutor

from klaviyo_core import dates, endpoints
from tap_klaviyo.concurrency import Page, ParallelReader, Slice
from tap_klaviyo.windows import Window, context_key

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

    from tap_klaviyo.stream import KlaviyoStream

#: A pass of the parallel reader: (context key, index of the window in that context).
PassId = tuple[str, int]
#: ``fetch(context, window, next_url)``: one page (KlaviyoStream.fetch_page).
FetchPage = t.Callable[["Context | None", Window, "str | None"], Page]
#: The windows a sync of a context reads (KlaviyoStream.windows, or as planned ahead).
WindowsOf = t.Callable[["Context | None"], list[Window]]


class ParallelPages:
    """One reader at a time for a stream, planned from the context being read (and those after it)."""

    def __init__(self, stream: KlaviyoStream) -> None:
        self.stream = stream
        self._reader: ParallelReader | None = None
        self._passes: dict[PassId, tuple[Context | None, Window]] = {}
        self._lock = threading.Lock()  # the SDK's thread, and the prefetch's that starts a reader ahead
        #: A reader started ahead: its own budgets, given back when the SDK comes to read it.
        self._budgets_ahead: tuple[int, int, int] | None = None

    @property
    def buffered_pages(self) -> int | None:
        return self._reader.buffered_pages if self._reader is not None else None

    def pages(
        self, context: Context | None, *, heartbeat: t.Callable[[], None] | None = None
    ) -> t.Iterator[tuple[Window, Page]]:
        """The context's pages in key order, window by window."""
        with self._lock:
            reader = self._reader_for(context)
        finished = False
        try:
            for pass_id, (_, window) in self._passes_of(context_key(context)):
                for page in reader.pages(pass_id, heartbeat=heartbeat):
                    yield window, page
            finished = True
        finally:
            if not finished or not reader.pending_passes():
                self.close()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def start_ahead(self, context: Context | None, max_bytes: int, windows: WindowsOf) -> None:
        """Start reading the context (and the partitions after it) before the SDK comes to it.

        For :mod:`tap_klaviyo.prefetch`, from its thread, while the streams before this one
        sync; ``windows`` are the ones it planned (the stream's own would write the state).
        The reader is the one the stream would start in its turn, the same requests, but
        holds at most ``max_bytes`` of pages (however many pages or slices that is) until
        the SDK reads it; then it gets its usual budgets back, if its windows are the sync's.
        """
        with self._lock:
            if self._reader is not None and not self._reader.closed:
                return
            reader = self._new_reader(context, windows)
            self._budgets_ahead = (reader.max_buffered_pages, reader.max_buffered_bytes, reader.max_slices_ahead)
            reader.max_buffered_bytes = max_bytes
            reader.max_buffered_pages = reader.max_slices_ahead = 1 << 30  # only the bytes bound it

    def _reader_for(self, context: Context | None) -> ParallelReader:
        """The reader whose next pass is this context's, else a new one planned from it."""
        key = context_key(context)
        reader = self._reader
        if reader is not None and not reader.closed:
            pending = reader.pending_passes()
            if pending and t.cast("PassId", pending[0])[0] == key and self._read_ahead_fits(key, context):
                if self._budgets_ahead is not None:  # started ahead: the SDK reads it now
                    reader.max_buffered_pages, reader.max_buffered_bytes, reader.max_slices_ahead = self._budgets_ahead
                    self._budgets_ahead = None
                return reader
            self.close()
        return self._new_reader(context, self.stream.windows)

    def _read_ahead_fits(self, key: str, context: Context | None) -> bool:
        """A reader started ahead is used only if the windows it planned are this sync's."""
        if self._budgets_ahead is None:
            return True
        return [window for _, (_, window) in self._passes_of(key)] == self.stream.windows(context)

    def _new_reader(self, context: Context | None, windows: WindowsOf) -> ParallelReader:
        """A reader planned from this context (and the partitions after it); the current one."""
        self._budgets_ahead = None
        stream = self.stream
        reader = ParallelReader(
            self._fetch,
            stream.sort_key_seconds,
            workers=stream.max_concurrency,
            page_size=endpoints.page_size_max(stream.operation_id) or 1,
            horizon=self._slice_horizon(context),
            name=f"{stream.name}-fetch",
            logger=stream.logger,
        )
        self._passes = {}
        for each in self._contexts_from(context):
            previous = None
            for index, window in enumerate(windows(each)):
                pass_id = (context_key(each), index)
                self._passes[pass_id] = (each, window)
                # A tail pass starts when its main pass is fetched (as when reading one page at a time).
                reader.add_pass(pass_id, dates.epoch(window.lower), dates.epoch(window.upper), after=previous)
                previous = pass_id
        self._reader = reader
        return reader

    def _contexts_from(self, context: Context | None) -> list[Context | None]:
        """This context, then the partitions after it that this run reads."""
        partitions = self.stream.partitions if context is not None else None
        if not partitions or context not in partitions:
            return [context]
        later = partitions[partitions.index(t.cast("dict", context)) + 1 :]
        return [context, *(each for each in later if not self.stream.skips_partition(each))]

    def _passes_of(self, key: str) -> list[tuple[PassId, tuple[Context | None, Window]]]:
        return [(pass_id, planned) for pass_id, planned in self._passes.items() if pass_id[0] == key]

    def _slice_horizon(self, context: Context | None) -> float:
        """Unbounded slices are split up to the run's start; past it, one chain reads on."""
        if self.stream.replication_key:
            return self.stream.run_started_at(context).timestamp()
        return self.stream.klaviyo_tap.initialized_at / 1000.0

    def _fetch(self, piece: Slice, next_url: str | None) -> Page:
        """One page of a slice (in a worker thread): its first request is bounded by the slice."""
        context, window = self._passes[t.cast("PassId", piece.pass_id)]
        if next_url is None:
            window = _slice_window(window, piece)
        return self.stream.fetch_page(context, window, next_url)


def _slice_window(window: Window, piece: Slice) -> Window:
    """The slice's bounds as a window, keeping the pass's own bounds exactly where the slice does."""
    lower = window.lower if piece.lower == dates.epoch(window.lower) else dates.from_epoch(piece.lower)
    upper = window.upper if piece.upper == dates.epoch(window.upper) else dates.from_epoch(piece.upper)
    return Window(lower, upper)


class ChildPrefetch:
    """First pages of a child stream's contexts, fetched ahead while the SDK syncs contexts one by one.

    The SDK syncs a parent's child contexts one after another (flow messages: one
    request per flow action), so a child stream waited a round trip per parent. The
    parent announces the contexts of the records it is about to hand over
    (:meth:`expect`, from its own thread, in the order they will be synced); their
    first pages are fetched by up to ``workers`` threads within the endpoint's limits,
    and :meth:`first_page` gives one back when the SDK syncs that context. Records,
    their order and the bookmarks per context are those of the sequential read: only
    when the request goes out changes. A page not taken (a run stopped early) is dropped.
    """

    def __init__(self, stream: KlaviyoStream, workers: int, fetch: FetchPage) -> None:
        self.stream = stream
        self._fetch = fetch  # the stream's own request for a page (not the one that asks here)
        self.workers = max(1, workers)
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: dict[str, tuple[Window, Future[Page]]] = {}

    def expect(self, context: Context, window: Window) -> None:
        """Start fetching the first page of ``context``'s ``window`` (SDK thread).

        ``window`` is the first one the sync of the context will read; when it is not
        (:meth:`first_page` compares), that sync makes its own request as usual.
        """
        key = context_key(context)
        if key in self._ahead:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix=f"{self.stream.name}-ahead")
        self._ahead[key] = (window, self._pool.submit(self._fetch, context, window, None))

    def first_page(self, context: Context | None, window: Window) -> Page | None:
        """The page fetched ahead for this context and window, if any (waits for it)."""
        entry = self._ahead.pop(context_key(context), None)
        if entry is None:
            return None
        planned, future = entry
        if planned != window:
            future.cancel()
            return None
        return future.result()

    def close(self) -> None:
        """Drop what was not taken: queued requests are cancelled, running ones not waited for."""
        self._ahead.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
