"""Pages of the streams the SDK syncs next, fetched while it writes the streams before them.

singer-sdk's ``sync_all`` syncs the streams one after another, so each stream paid its
own round trips before its first record, and a stream of a few pages paid them in a
row. :class:`StreamPrefetch` requests the pages of the upcoming streams in the
background, through the tap's one connection (the same limiters, retries and error
handling), and a stream takes an answer when it comes to make that very request
(:meth:`~tap_klaviyo.stream.KlaviyoStream.fetch_page`). What this keeps:

* Output: a stream still builds every request itself and uses a prefetched answer only
  when its request (method, URL, body) is the one that was prefetched; records are
  decoded, written and bookmarked by the stream, in its turn, in order. A request that
  was not prefetched (a window planned otherwise, a page not reached) is made as before,
  and the prefetch then leaves that chain of pages to the stream: no request is made twice.
* State: planning only reads it (the SDK's own getters add entries, which would show in
  the STATE messages); bookmarks move only as the stream writes records. A kill drops
  whatever was fetched ahead: the next run resumes from the last STATE, as before.
* Memory: answers stay raw JSON until read (:mod:`tap_klaviyo.records`); at most
  ``max_bytes`` of them are buffered or expected in flight, the nearest streams first,
  and a stream's leftovers are dropped when the SDK moves past it.
* Requests: only those the streams would make. A stream that may stop reading early
  (``reads_on``) or reads in parallel (its slices are cut from its first page) gets only
  each window's first page fetched ahead; reports (a daily budget), POST requests, child
  streams (their parent's :class:`~tap_klaviyo.parallel.ChildPrefetch`) and streams whose
  contexts take requests to find (list and segment members) are never prefetched here.
  A prefetched request that failed for good (after the connection's retries) raises its
  error when the stream comes to make it, as the stream's own request would have.

Off at ``max_concurrency`` 1 (one request at a time, as that setting says).
"""

from __future__ import annotations

import logging
import threading
import typing as t

from klaviyo_core import dates, endpoints
from tap_klaviyo.concurrency import WorkerThreads
from tap_klaviyo.windows import WHOLE_RANGE, Window

if t.TYPE_CHECKING:
    import datetime as dt

    import requests
    from singer_sdk.helpers.types import Context

    from tap_klaviyo.concurrency import Page
    from tap_klaviyo.stream import KlaviyoStream

#: Answers buffered ahead (plus those expected in flight), in bytes of their JSON.
PREFETCH_BYTES = 16 * 1024 * 1024
#: What the parallel reader of a stream started ahead may hold until the SDK reads it...
READER_AHEAD_BYTES = 8 * 1024 * 1024
#: ...for this many streams at most (events, profiles, list and segment members, ``list_<name>``...).
READERS_AHEAD = 3

#: A request as the prefetch and the stream both see it: stream, method, URL, body.
RequestKey = tuple[str, str, str, t.Any]


def request_key(stream: KlaviyoStream, request: requests.PreparedRequest) -> RequestKey:
    return (stream.name, request.method or "GET", request.url or "", request.body)


class _Chain:
    """One window of one context of a stream: a ``links.next`` chain, fetched page after page."""

    __slots__ = ("context", "done", "key", "max_pages", "operation", "order", "pages", "request", "stream", "window")

    def __init__(self, stream: KlaviyoStream, order: int, context: Context | None, window: Window) -> None:
        self.stream = stream
        self.operation = stream.operation_id
        self.order = order  # the stream's place in the sync
        self.context = context
        self.window = window
        self.max_pages = _pages_ahead(stream, window)
        self.pages = 0  # requested so far
        self.done = False  # nothing more to fetch: the end, the stream took over, or dropped
        self.request: requests.PreparedRequest | None = None  # the next one, while not claimed
        self.key: RequestKey | None = None


class _Answer:
    """A prefetched request: in flight until ``ready``; then its page, or the error it failed with."""

    __slots__ = ("chain", "counted", "error", "page", "ready")

    def __init__(self, chain: _Chain) -> None:
        self.chain = chain
        self.ready = False
        self.page: Page | None = None
        self.error: Exception | None = None
        self.counted = False  # its bytes are in the buffer's total


class StreamPrefetch:
    """The pages of the streams after the one being synced, fetched by up to ``workers`` threads.

    The SDK's thread calls :meth:`reached` as each top-level stream starts reading (planning the
    rest at the first call) and :meth:`close` when the sync ends; any thread calls
    :meth:`take` with the request it is about to send.
    """

    def __init__(
        self,
        streams: t.Sequence[KlaviyoStream],
        *,
        workers: int,
        max_bytes: int = PREFETCH_BYTES,
        logger: logging.Logger | None = None,
    ) -> None:
        self.streams = list(streams)  # in the order the SDK syncs them
        self.workers = max(1, workers)
        self.max_bytes = max_bytes
        self.logger = logger or logging.getLogger(__name__)
        self._order = {stream.name: index for index, stream in enumerate(self.streams)}
        # One lock, two conditions: an answer wakes the threads waiting to take one; a request
        # to send wakes one idle worker (WorkerThreads).
        self._lock = threading.RLock()  # reentrant, as the Condition it replaced: a caller may hold it across calls
        self._answer_ready = threading.Condition(self._lock)
        self._workers = WorkerThreads(
            self._lock, self._work, self.workers, "prefetch", find=self._next_chain, closed=lambda: self._closed
        )
        self._planned = False
        self._position = -1  # the stream being synced
        self._closed = False
        self._chains: list[_Chain] = []  # not done, in sync order
        self._next: dict[RequestKey, _Chain] = {}  # each chain's next request, not yet sent
        self._answers: dict[RequestKey, _Answer] = {}  # sent, not yet taken
        self._bytes = 0  # answers buffered
        self._page_bytes = 0  # the largest answer seen: what one in flight is expected to hold
        self._in_flight = 0
        self._flying: dict[str, int] = {}  # requests in flight per endpoint
        self._readers_ahead: list[KlaviyoStream] = []  # streams whose own reader was started ahead
        # Counters for logs and tests.
        self.requests = 0
        self.taken = 0
        self.dropped = 0
        self.peak_bytes = 0
        self.readers_started = 0

    # -- the SDK's thread ---------------------------------------------------------------

    def reached(self, stream: KlaviyoStream) -> None:
        """A top-level stream starts: drop what is left of the streams before it; plan, the first time."""
        position = self._order.get(stream.name)
        if position is None or position <= self._position:
            return  # another context of the stream being synced
        with self._lock:
            self._position = position
        if not self._planned:
            self._planned = True
            # Not this stream's: it is already reading them.
            chains = [chain for later in self.streams[position + 1 :] for chain in self._plan(later)]
        else:
            chains = []
        with self._lock:
            for key, answer in list(self._answers.items()):
                if answer.chain.order < position:
                    self._drop(key, answer)
            for chain in self._chains:
                if chain.order < position:
                    chain.done = True
                    self._next.pop(chain.key, None)  # type: ignore[arg-type]  # set while not claimed
            for chain in chains:
                if chain.key is not None and chain.key not in self._next:
                    self._chains.append(chain)
                    self._next[chain.key] = chain
            self._chains = [chain for chain in self._chains if not chain.done]
            self._workers.wake_or_spawn()
        self._start_readers_ahead(position)

    def close(self) -> None:
        """Stop: queued requests are not sent, answers are dropped, requests in flight not waited for."""
        with self._lock:
            self._closed = True
            self._chains.clear()
            self._next.clear()
            self._answers.clear()
            self._bytes = 0
            self._workers.wake_all()
            self._answer_ready.notify_all()
            readers, self._readers_ahead = self._readers_ahead, []
        for stream in readers:  # read by now, or never to be
            stream.stop_reading()
        if self.requests:
            self.logger.info(
                "Prefetch: %d requests made ahead, %d answers used, %d dropped, peak %.1f MB buffered; "
                "%d parallel readers started ahead",
                self.requests,
                self.taken,
                self.dropped,
                self.peak_bytes / 1e6,
                self.readers_started,
            )

    # -- any thread -------------------------------------------------------------------------

    def take(self, stream: KlaviyoStream, request: requests.PreparedRequest) -> Page | None:
        """The prefetched answer to this request as a page (waits for one in flight), else None.

        None also tells the prefetch that the stream makes this request itself: a chain whose
        next request it is goes no further (the stream reads on from there). A request that
        failed for good (after the connection's retries) raises its error here, in the
        stream's turn, as the stream's own request would have.
        """
        if not (self._answers or self._next):
            return None
        key = request_key(stream, request)
        with self._lock:
            answer = self._answers.pop(key, None)
            if answer is None:
                chain = self._next.pop(key, None)
                if chain is not None:
                    chain.done = True
                return None
            while not answer.ready and not self._closed:
                self._answer_ready.wait()
            if answer.counted:
                self._bytes -= answer.page.size if answer.page is not None else 0
                answer.counted = False
            self._workers.wake_or_spawn()  # room for more
            if answer.error is not None:
                raise answer.error
            if answer.page is not None:
                self.taken += 1
            return answer.page

    # -- planning (the SDK's thread) -----------------------------------------------------

    def _plan(self, stream: KlaviyoStream) -> list[_Chain]:
        if not prefetchable(stream):
            return []
        contexts = [each or None for each in (stream.partitions or [{}])]
        return self._chains_of(stream, self._order[stream.name], contexts)

    def _chains_of(self, stream: KlaviyoStream, order: int, contexts: t.Iterable[Context | None]) -> list[_Chain]:
        """A chain per window of each context, its first request built."""
        chains = []
        for context in contexts:
            for window in planned_windows(stream, context) or ():
                chain = _Chain(stream, order, context, window)
                try:  # the stream builds it again in its turn, and fails there if it must
                    chain.request = stream.build_request(context, window, None)
                except Exception:
                    self.logger.debug("Prefetch: no request planned for %s", stream.name, exc_info=True)
                    continue
                chain.key = request_key(stream, chain.request)
                chains.append(chain)
        return chains

    def _plan_children(self, chain: _Chain, page: Page) -> None:
        """With the lock held: chains for the child contexts of a parent's page (flow actions' messages).

        The SDK syncs them right after the parent's records, in this order; they go
        before the chains of later streams.
        """
        parent = chain.stream
        children = [t.cast("KlaviyoStream", child) for child in parent.child_streams]
        children = [child for child in children if _prefetchable_child(child)]
        if not children:
            return
        contexts = [c for record in page.records for c in parent.generate_child_contexts(record, chain.context) if c]
        planned = [each for child in children for each in self._chains_of(child, chain.order, contexts)]
        planned = [each for each in planned if each.key not in self._next and each.key not in self._answers]
        position = next((i for i, other in enumerate(self._chains) if other.order > chain.order), len(self._chains))
        self._chains[position:position] = planned
        for each in planned:
            self._next[t.cast("RequestKey", each.key)] = each

    # -- streams that read ahead themselves -------------------------------------------------

    def _start_readers_ahead(self, position: int) -> None:
        """Start the parallel readers of the next streams that read in parallel (their own budgets)."""
        upcoming = [stream for stream in self.streams[position + 1 :] if starts_reader_ahead(stream)]
        for stream in upcoming[:READERS_AHEAD]:
            if stream not in self._readers_ahead:
                self._readers_ahead.append(stream)
                name = f"prefetch-{stream.name}"
                threading.Thread(target=self._start_reader, args=(stream,), name=name, daemon=True).start()

    def _start_reader(self, stream: KlaviyoStream) -> None:
        """(Its own thread.) Find the stream's contexts, then start its reader on the first it reads."""
        try:  # the stream's partitions (groups: requests), found once for the run; the SDK uses the same list
            partitions = stream.partitions
            contexts = [None] if partitions is None else [c for c in partitions if not stream.skips_partition(c)]
            if not contexts or planned_windows(stream, contexts[0]) is None:
                return
        except Exception as exc:  # noqa: BLE001 - the SDK asks again in the stream's turn, and fails there
            self.logger.debug("Prefetch: %s could not be planned ahead (%s)", stream.name, exc)
            return
        with self._lock:
            if not self._closed and self._position < self._order[stream.name]:

                def planned(context: Context | None) -> list[Window]:
                    return planned_windows(stream, context) or []  # none: the SDK's read starts its own reader

                stream.start_reading_ahead(contexts[0], READER_AHEAD_BYTES, planned)
                self.readers_started += 1

    # -- workers ------------------------------------------------------------------------------

    def _next_chain(self) -> _Chain | None:
        """With the lock held: the nearest chain with a request to send, if the budget has room."""
        for chain in self._chains:
            if chain.done or chain.request is None:
                continue
            if self._flying.get(chain.operation, 0) >= _in_flight_cap(chain.operation):
                continue  # more would only wait on the endpoint's limiter, holding a worker
            expected = self._bytes + (self._in_flight + 1) * self._page_bytes
            return chain if expected <= self.max_bytes else None
        return None

    def _work(self) -> None:
        while True:
            with self._lock:
                chain = self._workers.next_work()
                if chain is None:
                    return
                request, key = t.cast("requests.PreparedRequest", chain.request), t.cast("RequestKey", chain.key)
                chain.request = chain.key = None
                self._next.pop(key, None)
                answer = self._answers[key] = _Answer(chain)
                chain.pages += 1
                self._in_flight += 1
                self._flying[chain.operation] = self._flying.get(chain.operation, 0) + 1
                self.requests += 1
                self._workers.wake_or_spawn()
            page, error = None, None
            try:
                page = chain.stream.send_for_page(request)
            except Exception as exc:  # noqa: BLE001 - raised in the stream's turn (take)
                error = exc
            with self._lock:
                self._in_flight -= 1
                self._flying[chain.operation] -= 1
                answer.error = error
                self._arrived(chain, answer, key, page)
                self._answer_ready.notify_all()  # the stream (or a reader started ahead) taking it

    def _arrived(self, chain: _Chain, answer: _Answer, key: RequestKey, page: Page | None) -> None:
        """With the lock held: keep the answer until taken, and plan the chain's next request."""
        answer.ready = True
        answer.page = page
        if self._closed:
            return
        if page is None:
            chain.done = True  # it failed: nothing after it is fetched
        elif self._answers.get(key) is answer:  # not taken yet, nor dropped
            answer.counted = True
            self._bytes += page.size
            self.peak_bytes = max(self.peak_bytes, self._bytes)
        if page is not None:
            self._page_bytes = max(self._page_bytes, page.size)
            if chain.stream.child_streams and chain.order >= self._position:
                self._plan_children(chain, page)
        more = page is not None and page.next_url and (chain.max_pages is None or chain.pages < chain.max_pages)
        if chain.done or not more:
            chain.done = True
            return
        chain.request = chain.stream.build_request(chain.context, chain.window, page.next_url)  # type: ignore[union-attr]
        chain.key = request_key(chain.stream, chain.request)
        self._next[chain.key] = chain

    def _drop(self, key: RequestKey, answer: _Answer) -> None:
        """With the lock held: forget an answer the stream did not take."""
        del self._answers[key]
        if answer.counted:
            self._bytes -= answer.page.size if answer.page is not None else 0
            answer.counted = False
        self.dropped += 1


# -- what is prefetched ------------------------------------------------------------------------


def sync_order(streams: t.Iterable[KlaviyoStream]) -> list[KlaviyoStream]:
    """The streams ``Tap.sync_all`` syncs, in its order (selected, or with selected children; no child)."""
    return [
        stream
        for stream in streams
        if (stream.selected or stream.has_selected_descendents) and not stream.parent_stream_type
    ]


def prefetchable(stream: KlaviyoStream) -> bool:
    """Streams whose requests are known ahead and cost no daily budget."""
    if stream.parent_stream_type or not stream.prefetch_ahead or stream.http_method != "GET":
        return False
    return endpoints.endpoint(stream.operation_id).daily is None


def starts_reader_ahead(stream: KlaviyoStream) -> bool:
    """A stream read in parallel whose own reader may be started ahead (events, profiles, members...).

    Not an incremental stream of several partitions: only its first context's windows are
    checked against the sync's when the SDK comes to read it.
    """
    if not stream.reads_in_parallel or stream.http_method != "GET" or stream.parent_stream_type:
        return False
    if stream.replication_key and stream.partitions:
        return False
    return endpoints.endpoint(stream.operation_id).daily is None


def _prefetchable_child(child: KlaviyoStream) -> bool:
    """A child stream the SDK syncs (selected, or a parent of selected ones) and whose pages may be prefetched."""
    if not (child.selected or child.has_selected_descendents) or not child.prefetch_ahead:
        return False
    return child.http_method == "GET" and endpoints.endpoint(child.operation_id).daily is None


def _in_flight_cap(operation: str) -> int:
    """Requests of one endpoint in flight at once: a second's worth of its burst limit."""
    return max(1, endpoints.endpoint(operation).burst_per_second)


def _pages_ahead(stream: KlaviyoStream, window: Window) -> int | None:
    """How many pages of a window's chain to fetch ahead (None: all).

    A parallel reader takes a pass's first page and its ``links.next``, then cuts slices of
    its own (other requests); a stream that may stop early takes only what it surely reads.
    """
    if stream.reads_in_parallel:
        return 2
    return None if stream.reads_whole_chain(window) else 1


def planned_windows(stream: KlaviyoStream, context: Context | None) -> list[Window] | None:
    """The windows the stream's sync of the context will read, worked out without writing the state.

    None when that cannot be known here (a lookback re-reads from a bookmark). A window
    planned otherwise than the stream's only costs a wasted request: the stream's request
    then differs, and it makes its own.
    """
    if not stream.replication_key:
        return [WHOLE_RANGE]
    state = _context_state(stream, context)
    value = None
    bookmark = state.get("replication_key_value")
    if bookmark and state.get("replication_key") == stream.replication_key:
        if stream.lookback:
            return None
        value = bookmark
    # As the SDK's write_starting_replication_value: start_date when later, or when no bookmark.
    start_date = stream.config.get("start_date")
    if start_date:
        value = stream.compare_start_date(value, start_date) if value else start_date
    start: dt.datetime | None = dates.parse(value)
    if start is not None:
        start = min(start, stream.run_started_at(context))  # as WindowedStream.get_starting_timestamp
    return stream.windows_from(start, context)


def _context_state(stream: KlaviyoStream, context: Context | None) -> t.Mapping[str, t.Any]:
    """The context's state as ``Stream.get_context_state`` finds it, without adding an entry."""
    stream_state = ((stream.tap_state or {}).get("bookmarks") or {}).get(stream.name) or {}
    keys = stream.state_partitioning_keys
    partition = context if context is None or keys is None else {k: v for k, v in context.items() if k in keys}
    if not partition:
        return stream_state
    for entry in stream_state.get("partitions") or ():
        if entry.get("context") == partition:
            return entry
    return {}
