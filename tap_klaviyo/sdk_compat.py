"""Every private singer-sdk internal the tap relies on, and nothing else.

Written against singer-sdk 0.54.9 (requirements/lock.txt). singer-sdk offers no public
hook for these; tests/tap/test_sdk_compat.py checks each one (it still exists, with
the signature and the behaviour relied on), so an SDK upgrade that changes one fails
there, by name, rather than somewhere in a sync. One line per use:

* ``Stream._generate_record_messages(record)``: skip the SDK's deselected-property walk
  and conforming, both no-ops for this tap (a fifth of its CPU per record).
* ``Stream._stream_version``: the ``version`` the SDK puts in RECORD messages.
* ``Stream._increment_stream_state(record, *, context)``: records a lookback re-read must not
  move the bookmark (the SDK has no public "emit but do not bookmark"); and the bookmark moves
  once per STATE rather than once per record (see :meth:`CompatStream.flush_bookmark`).
* ``Stream._write_state_message()``: where the SDK writes a STATE (the deferred bookmark moves first).
* ``Stream._write_record_message(record)``: a record without stream maps to apply goes to the
  writer's ``write_record`` without a ``RecordMessage`` object (same line, less work per record).
* ``Stream._tap``: the stream's tap, whose ``message_writer`` gets the records and whose signal
  handler moves the stream's bookmark.
* ``Stream._sync_records(context, write_messages=...)``: the per-record loop, replaced by a
  shorter one (:meth:`CompatStream._sync_records`) for the streams whose records go straight
  to the writer; it calls the SDK's own ``_get_state_partition_context``,
  ``_write_starting_replication_value``, ``get_context_state``, ``_finalize_state`` and
  ``_write_state_message`` where the SDK's loop does (the test pins that loop's source).
* ``PluginBase._handle_termination(signum, frame)``: the SIGINT/SIGTERM handler the SDK
  installs in ``__init__``; overriding it is the only way to exit non-zero after the STATE.
* ``MetadataMapping._breadcrumb_is_selected(())``: whether a catalog entry selects its stream,
  without resolving every property's selection (``resolve_selection``): a sync from a catalog
  builds only the streams it syncs (``TapKlaviyo._builds``, ``tap_klaviyo.sync_catalog``).
"""

from __future__ import annotations

import typing as t
import weakref
from functools import cached_property

from singer_sdk import RESTStream, Tap
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.singerlib import RecordMessage
from typing_extensions import override

from klaviyo_core import dates

if t.TYPE_CHECKING:
    import datetime as dt

    from singer_sdk.helpers.types import Context
    from singer_sdk.singerlib.catalog import MetadataMapping

#: The singer-sdk release this module was written and tested against.
SDK_VERSION = "0.54.9"


class CompatStream(RESTStream):
    """The stream side: private methods of the SDK's per-record loop, routed to public methods of this tap."""

    #: When the records being emitted were read (a page's); None: the time each is written.
    time_extracted: dt.datetime | None = None

    # The bookmark's next value: (record, context) of the last record emitted and not yet in
    # the state (see flush_bookmark).
    _pending_bookmark: tuple[dict, Context | None] | None = None

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        _STREAMS.add(self)  # for the signal handler, which must not build the tap's streams

    @override
    def _generate_record_messages(self, record: dict) -> t.Generator[RecordMessage, None, None]:
        """The SDK's (0.54), minus two walks through every record that change nothing here.

        When the catalog deselects no property, the SDK's search of each record for
        deselected properties (a fifth of the tap's CPU per event) finds none; and
        with ``TYPE_CONFORMANCE_LEVEL`` NONE its conforming returns the record as is.
        Stream maps (including flattening) still transform every record.
        """
        if not self.nothing_to_prune:
            yield from super()._generate_record_messages(record)
            return
        for stream_map in self.stream_maps:
            mapped = stream_map.transform(record)
            if mapped is not None:
                yield RecordMessage(
                    stream=stream_map.stream_alias,
                    record=mapped,
                    version=self._stream_version,
                    time_extracted=self.time_extracted or dates.utc_now(),
                )

    @override
    def _sync_records(
        self, context: Context | None = None, *, write_messages: bool = True
    ) -> t.Generator[dict, t.Any, t.Any]:
        """The SDK's loop (0.54.9), minus per-record work none of these streams needs.

        For a stream with no child streams, records going straight to the writer and no dry
        run limit, each record is post-processed, written and noted for the bookmark, and
        the record counter counts them per STATE; the SDK's loop also called, per record, a
        sort check, a child-context hook, a partition walk and a metrics check (a tenth of
        an event's CPU). Any other stream runs the SDK's loop.
        """
        if not (write_messages and self.selected and self.writes_records_directly and not self.child_streams):
            yield from super()._sync_records(context, write_messages=write_messages)
            return
        if self.ABORT_AT_RECORD_COUNT is not None:  # a dry run (--test): the SDK's loop stops it
            yield from super()._sync_records(context, write_messages=write_messages)
            return
        write = self._tap.message_writer.write_record  # type: ignore[attr-defined]
        record_counter, timer = self.get_record_counter(), self.get_sync_timer()
        frequency, written = self.STATE_MSG_FREQUENCY, 0
        with record_counter, timer:
            for partition in [context] if context is not None else (self.partitions or [{}]):
                record_counter.with_context(partition)
                timer.with_context(partition)
                current = partition or None
                state_partition = self._get_state_partition_context(current)
                self._write_starting_replication_value(current)
                for row in self.get_records(current):
                    record = self.post_process(row, current)
                    if record is None:
                        continue
                    for key, value in (state_partition or {}).items():
                        record.setdefault(key, value)  # the SDK adds the state's partition keys
                    write(self.name, record, self._stream_version, self.time_extracted or dates.utc_now())
                    self.state_manager.is_flushed = False
                    self._increment_stream_state(record, context=current)
                    written += 1
                    if written % frequency == 0:
                        self._write_state_message()
                        record_counter.increment(frequency)
                    yield record
                if current == state_partition:  # finalized per partition only when 1:1 with the context
                    self._finalize_state(self.get_context_state(current))
            record_counter.increment(written % frequency)
        if not context:
            self._finalize_state(self.stream_state)
        self._write_state_message()

    @override
    def _write_record_message(self, record: dict) -> None:
        """The record as the SDK would write it; without message objects when nothing maps it.

        The writer builds the line ``RecordMessage.to_dict`` would give (tests/perf/test_output.py
        compares both): a tenth of the CPU per record went to building, checking and converting
        one message object per record.
        """
        if not self.writes_records_directly:
            super()._write_record_message(record)
            return
        self._tap.message_writer.write_record(  # type: ignore[attr-defined]  # see writes_records_directly
            self.name, record, self._stream_version, self.time_extracted or dates.utc_now()
        )
        self.state_manager.is_flushed = False

    @cached_property
    def writes_records_directly(self) -> bool:
        """Records go to the tap's writer as they are, by its ``write_record`` (see above)."""
        return hasattr(self._tap.message_writer, "write_record") and self.writes_records_unmapped

    @cached_property
    def nothing_to_prune(self) -> bool:
        """No property deselected, and no conforming to do."""
        if self.TYPE_CONFORMANCE_LEVEL != TypeConformanceLevel.NONE:
            return False
        return all(selected for breadcrumb, selected in self.mask.items() if breadcrumb)

    @cached_property
    def writes_records_unmapped(self) -> bool:
        """Records reach the output as they are: nothing to prune, the SDK's one default map,
        no alias, no flattening."""
        maps = self.stream_maps
        if not (self.nothing_to_prune and len(maps) == 1 and type(maps[0]) is SameRecordTransform):
            return False
        default = maps[0]
        return default.stream_alias == self.name and not (default.flattening_options and default.flattening_enabled)

    @override
    def _increment_stream_state(self, latest_record: dict, *, context: Context | None = None) -> None:
        """Note the record; the bookmark moves to it at the next STATE (:meth:`flush_bookmark`).

        A sorted stream's records come in order, so moving the bookmark to each in turn ends
        where moving it once to the last one does: the SDK's per-record work (the state looked
        up, both values made JSON-compatible and compared) was a tenth of the CPU per record.
        The sort check still compares each STATE's bookmark with the one before. An unsorted
        stream keeps the largest value seen: each record still goes through the SDK.
        """
        if not self.is_sorted:
            if self.advances_bookmark(latest_record, context):
                super()._increment_stream_state(latest_record, context=context)
            return
        pending = self._pending_bookmark
        if pending is not None and pending[1] is not context and pending[1] != context:
            self.flush_bookmark()  # another partition: its own state
        self._pending_bookmark = (latest_record, context)

    def belongs_to(self, tap: Tap) -> bool:
        return self._tap is tap

    def flush_bookmark(self) -> None:
        """Move the bookmark to the last record emitted, if any is pending (before any STATE)."""
        pending = self._pending_bookmark
        if pending is None:
            return
        self._pending_bookmark = None
        record, context = pending
        if self.advances_bookmark(record, context):
            super()._increment_stream_state(record, context=context)

    @override
    def _write_state_message(self) -> None:
        self.flush_bookmark()
        super()._write_state_message()

    @override
    def _finalize_state(self, state: dict | None = None) -> None:
        self.flush_bookmark()  # the state dict is the one flush_bookmark moves (changed in place)
        super()._finalize_state(state)

    def advances_bookmark(self, record: dict, context: Context | None) -> bool:
        """Whether an emitted record may move the bookmark (all do, unless a subclass says not)."""
        return True


#: Every stream built, while it lives (weakly held).
_STREAMS: weakref.WeakSet[CompatStream] = weakref.WeakSet()


class CompatTap(Tap):
    """The tap side: the signal handler the SDK installs, routed to ``on_termination_signal``."""

    @override
    def _handle_termination(self, signum: int, frame: t.Any) -> None:
        for stream in list(_STREAMS):  # the STATE written next covers every record emitted
            if stream.belongs_to(self):
                stream.flush_bookmark()
        self.on_termination_signal(signum)

    def on_termination_signal(self, signum: int) -> None:
        """SIGINT/SIGTERM (the SDK's handler by default: write the STATE, exit 0)."""
        super()._handle_termination(signum, None)


def stream_selected(metadata: MetadataMapping) -> bool:
    """Whether a catalog entry's ``metadata`` selects its stream, by the SDK's rule for the stream itself."""
    return metadata._breadcrumb_is_selected(())  # noqa: SLF001 - see the module's docstring
