"""Every private singer-sdk internal the tap relies on, and nothing else.

Written against singer-sdk 0.54.9 (requirements/lock.txt). singer-sdk offers no public
hook for these; tests/tap/test_sdk_compat.py checks each one (it still exists, with
the signature and the behaviour relied on), so an SDK upgrade that changes one fails
there, by name, rather than somewhere in a sync. One line per use:

* ``Stream._generate_record_messages(record)``: skip the SDK's deselected-property walk
  and conforming, both no-ops for this tap (a fifth of its CPU per record).
* ``Stream._stream_version``: the ``version`` the SDK puts in RECORD messages.
* ``Stream._increment_stream_state(record, *, context)``: records a lookback re-read must not
  move the bookmark (the SDK has no public "emit but do not bookmark").
* ``PluginBase._handle_termination(signum, frame)``: the SIGINT/SIGTERM handler the SDK
  installs in ``__init__``; overriding it is the only way to exit non-zero after the STATE.
"""

from __future__ import annotations

import typing as t
from functools import cached_property

from singer_sdk import RESTStream, Tap
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.singerlib import RecordMessage
from typing_extensions import override

from klaviyo_core import dates

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

#: The singer-sdk release this module was written and tested against.
SDK_VERSION = "0.54.9"


class CompatStream(RESTStream):
    """The stream side: two private methods, routed to public methods of this tap."""

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
                    time_extracted=dates.utc_now(),
                )

    @cached_property
    def nothing_to_prune(self) -> bool:
        """No property deselected, and no conforming to do."""
        if self.TYPE_CONFORMANCE_LEVEL != TypeConformanceLevel.NONE:
            return False
        return all(selected for breadcrumb, selected in self.mask.items() if breadcrumb)

    @override
    def _increment_stream_state(self, latest_record: dict, *, context: Context | None = None) -> None:
        if self.advances_bookmark(latest_record, context):
            super()._increment_stream_state(latest_record, context=context)

    def advances_bookmark(self, record: dict, context: Context | None) -> bool:
        """Whether an emitted record may move the bookmark (all do, unless a subclass says not)."""
        return True


class CompatTap(Tap):
    """The tap side: the signal handler the SDK installs, routed to ``on_termination_signal``."""

    @override
    def _handle_termination(self, signum: int, frame: t.Any) -> None:
        self.on_termination_signal(signum)

    def on_termination_signal(self, signum: int) -> None:
        """SIGINT/SIGTERM (the SDK's handler by default: write the STATE, exit 0)."""
        super()._handle_termination(signum, None)
