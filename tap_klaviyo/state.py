"""Check a ``--state`` document before the SDK loads it.

A state file is written by the previous run, but it passes through orchestrators,
object stores and sometimes a human editor. A bookmark the tap cannot read would
otherwise surface mid-sync as a traceback (``Invalid isoformat string``, ``'>=' not
supported between 'str' and 'int'``); this says which stream and what to do instead.
"""

from __future__ import annotations

import typing as t

from klaviyo_core import dates
from klaviyo_core.errors import KlaviyoError

_FIX = "fix the state file, or delete that stream's bookmark to sync the stream again from start_date"
_FIX_ALL = "fix the state file, or leave out --state to sync everything again"


def check_state(state: t.Any) -> None:
    """Raise a one-line KlaviyoError when the state's shape or a bookmark is unusable."""
    if not isinstance(state, dict):
        raise KlaviyoError(f"The state must be a JSON object, not a {type(state).__name__}: {_FIX_ALL}.")
    bookmarks = state.get("bookmarks", {})
    if bookmarks is None:
        return
    if not isinstance(bookmarks, dict):
        kind = type(bookmarks).__name__
        raise KlaviyoError(f"The state's bookmarks must be an object of streams, not a {kind}: {_FIX_ALL}.")
    for stream, stream_state in bookmarks.items():
        if not isinstance(stream_state, dict):
            raise KlaviyoError(f"The state's bookmark of stream {stream!r} is not an object: {_FIX}.")
        partitions = stream_state.get("partitions", [])
        if not isinstance(partitions, list) or not all(isinstance(p, dict) for p in partitions):
            raise KlaviyoError(f"The state's partitions of stream {stream!r} are not a list of objects: {_FIX}.")
        for bookmark in (stream_state, *partitions):
            _check_bookmark(stream, bookmark)


#: Streams that gained partitions, and the partition their old stream-level bookmark belongs to.
BOOKMARKS_MOVED_TO_PARTITION = {"flows": {"archived": False}}


def move_old_bookmarks(state: dict) -> None:
    """Carry a bookmark of an earlier version over to the partition that continues it.

    Flows used to be read in one pass that Klaviyo answered with live flows only, so
    that bookmark is the live pass's; without this the live flows would be read again
    from start_date.
    """
    for stream, context in BOOKMARKS_MOVED_TO_PARTITION.items():
        stream_state = (state.get("bookmarks") or {}).get(stream)
        if not stream_state or stream_state.get("partitions") or not stream_state.get("replication_key_value"):
            continue
        moved = {
            key: stream_state.pop(key) for key in ("replication_key", "replication_key_value") if key in stream_state
        }
        stream_state["partitions"] = [{"context": dict(context), **moved}]


def _check_bookmark(stream: str, bookmark: dict) -> None:
    for key in ("replication_key_value", "starting_replication_value", "next_start"):  # next_start: reports
        value = bookmark.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or dates.parse_or_none(value) is None:
            shown = repr(value)[:60]
            raise KlaviyoError(
                f"The state's {key} of stream {stream!r} is {shown}, not a date-time like "
                f"2024-01-31T00:00:00+00:00: {_FIX}."
            )
