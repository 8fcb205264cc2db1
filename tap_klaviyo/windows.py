"""Which range of the replication key a sync reads, and where its bookmark may go.

A sync of a context is one or more *windows* ``[lower, upper)`` of the replication key:

* ``lower`` is the bookmark (or ``start_date``), never past the run's start, and
  moved back by the stream's lookback when an earlier run left a bookmark;
* the main window ends at the run's start (or ``end_date``); records dated after
  the run started (future-dated ones exist in Klaviyo) come in a *tail* window whose
  values never advance the bookmark past the run's start.

The window is an explicit argument of everything that depends on it (filter,
request, record check): no state of the stream says which window a request is for.
"""

from __future__ import annotations

import datetime as dt
import json
import typing as t

from typing_extensions import override

from klaviyo_core import dates
from tap_klaviyo.sdk_compat import CompatStream

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

ONE_SECOND = dt.timedelta(seconds=1)


class Window(t.NamedTuple):
    """A replication-key range one pass of requests covers: [lower, upper); None is unbounded."""

    lower: dt.datetime | None
    upper: dt.datetime | None

    def holds(self, first: float | None, last: float | None) -> bool:
        """Whether a sorted page whose keys run from ``first`` to ``last`` (epoch seconds) lies inside."""
        if first is None or last is None:
            return False
        lower, upper = dates.epoch(self.lower), dates.epoch(self.upper)
        return (lower is None or first >= lower) and (upper is None or last < upper)


WHOLE_RANGE = Window(None, None)


def context_key(context: Context | None) -> str:
    """A context as a hashable key (for per-context bookkeeping)."""
    return json.dumps(context, sort_keys=True, default=str) if context else ""


class WindowedStream(CompatStream):
    """The windows, bookmarks and lookback of a stream (see the module docstring)."""

    #: The key slices are cut on: the replication key, else this (full-table streams).
    slice_key: t.ClassVar[str | None] = None
    #: Whether the endpoint can filter ``less-than`` on the replication key.
    bounded_above: t.ClassVar[bool] = True

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        # Per context: the bookmark a run with a lookback resumes from (see advances_bookmark).
        self._resumed_from: dict[str, dt.datetime] = {}
        super().__init__(*args, **kwargs)

    @property
    def range_key(self) -> str | None:
        """The key windows and slices bound: the replication key, else ``slice_key``."""
        return self.replication_key or self.slice_key

    @property
    def end_date(self) -> dt.datetime | None:
        """Where every window ends (the ``end_date`` setting); None: the run's start."""
        return None

    @property
    def lookback(self) -> dt.timedelta:
        """How far before its bookmark an incremental run starts reading (none by default)."""
        return dt.timedelta(0)

    def run_started_at(self, context: Context | None) -> dt.datetime:
        # frozen when the stream starts; a timestamp for these replication keys (the SDK types it loosely)
        return t.cast("dt.datetime", self.get_replication_key_signpost(context))

    @override
    def get_starting_timestamp(self, context: Context | None) -> dt.datetime | None:
        start = super().get_starting_timestamp(context)
        # A bookmark past the run's start can only come from a run killed while it
        # emitted future-dated records (complete runs cap it); everything before
        # that bookmark was emitted, so resuming at the run's start loses nothing.
        now = self.run_started_at(context)
        return min(start, now) if start else start

    def windows(self, context: Context | None) -> list[Window]:
        """The passes one sync of the context makes over the replication key.

        The main pass stops at the run's start (or ``end_date``); a tail pass reads
        what is dated later (see the module docstring).
        """
        if not self.replication_key:
            return [WHOLE_RANGE]
        return self.windows_from(self.lower_bound(context), context)

    def windows_from(self, start: dt.datetime | None, context: Context | None) -> list[Window]:
        """The windows of an incremental sync of the context that starts reading at ``start``."""
        if self.end_date:
            return [Window(start, self.end_date)]
        if not (self.is_sorted and self.bounded_above):
            return [Window(start, None)]  # the SDK caps unsorted bookmarks at the run start
        now = self.run_started_at(context)
        return [Window(start, now), Window(now, None)]

    def lower_bound(self, context: Context | None) -> dt.datetime | None:
        """Where the run starts reading: the bookmark (or start_date), minus the lookback.

        The lookback applies only to a bookmark of an earlier run and never reaches
        before ``start_date``. What it re-reads is emitted again (the warehouse keeps
        one row per ``id``) but never moves the bookmark back.
        """
        start = self.get_starting_timestamp(context)
        if not (start and self.lookback and self.get_context_state(context).get("replication_key_value")):
            return start  # no lookback, or a first run (from start_date)
        self._resumed_from[context_key(context)] = start
        lower = start - self.lookback
        start_date = dates.parse(self.config.get("start_date"))
        return max(lower, start_date) if start_date else lower

    @override
    def advances_bookmark(self, record: dict, context: Context | None) -> bool:
        """All records but those a lookback re-read from before the bookmark.

        The bookmark already covers them: skipping them keeps it from moving back (and
        a sorted stream from failing its sort check). Records come in order, so the
        check stops at the first record at or after the bookmark.
        """
        if not self._resumed_from:
            return True  # no lookback pending (the usual case: nothing to work out per record)
        key = context_key(context)
        resumed_from = self._resumed_from.get(key)
        if resumed_from is not None:
            value = dates.parse(record.get(self.replication_key))
            if value is not None and value < resumed_from:
                return False
            del self._resumed_from[key]
        return True

    def in_window(self, record: dict, window: Window) -> bool:
        """Drop what a lookback or an unbounded endpoint returned outside the window."""
        if not self.replication_key:
            return True
        value = dates.parse(record.get(self.replication_key))
        if value is None:
            return window.lower is None
        if window.lower and value < window.lower:
            return False
        return not (window.upper and value >= window.upper)

    def cap_bookmark_at_run_start(self, context: Context | None) -> None:
        """A tail pass may have moved the bookmark past the run's start: bring it back."""
        if not (self.replication_key and self.is_sorted):
            return
        self.flush_bookmark()  # the bookmark of the last record emitted, then capped
        state = self.get_context_state(context)
        bookmark = dates.parse(state.get("replication_key_value"))
        cap = self.end_date or self.run_started_at(context)
        if bookmark and bookmark > cap:
            state["replication_key_value"] = cap.isoformat()
