"""The stream's side of the parallel reader (:mod:`tap_klaviyo.concurrency`).

For a stream that reads in parallel, ``ParallelPages.pages(context)`` plans the
context's windows as passes of a :class:`~tap_klaviyo.concurrency.ParallelReader`
and hands its pages over in order, each with its window. Workers fetch a slice's
pages with the stream's own :meth:`~tap_klaviyo.stream.KlaviyoStream.fetch_page`,
given the slice's window explicitly: the same requests, decoded the same way, as
when the stream reads one page at a time.

For a partitioned stream (one partition per list or segment) the plan runs on to the
partitions after this one, so their pages are fetched while this one is read.
"""

from __future__ import annotations

import typing as t

from klaviyo_core import dates, endpoints
from tap_klaviyo.concurrency import Page, ParallelReader, Slice
from tap_klaviyo.windows import Window, context_key

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

    from tap_klaviyo.stream import KlaviyoStream

#: A pass of the parallel reader: (context key, index of the window in that context).
PassId = tuple[str, int]


class ParallelPages:
    """One reader at a time for a stream, planned from the context being read (and those after it)."""

    def __init__(self, stream: KlaviyoStream) -> None:
        self.stream = stream
        self._reader: ParallelReader | None = None
        self._passes: dict[PassId, tuple[Context | None, Window]] = {}

    @property
    def buffered_pages(self) -> int | None:
        return self._reader.buffered_pages if self._reader is not None else None

    def pages(
        self, context: Context | None, *, heartbeat: t.Callable[[], None] | None = None
    ) -> t.Iterator[tuple[Window, Page]]:
        """The context's pages in key order, window by window."""
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

    def _reader_for(self, context: Context | None) -> ParallelReader:
        """The reader whose next pass is this context's, else a new one planned from it."""
        key = context_key(context)
        reader = self._reader
        if reader is not None and not reader.closed:
            pending = reader.pending_passes()
            if pending and t.cast("PassId", pending[0])[0] == key:
                return reader
            self.close()
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
            for index, window in enumerate(stream.windows(each)):
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
