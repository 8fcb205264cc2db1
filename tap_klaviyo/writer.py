"""Singer messages to stdout, encoded with msgspec (the SDK's own ``msgspec`` extra).

The SDK's default writer encodes each message with simplejson (about 12 µs for an
event record) and flushes stdout after every message. This one encodes with
msgspec as the SDK's ``singer_sdk.contrib.msgspec`` writer does (about 0.7 µs),
appends records to a buffer of its own and writes it to stdout's bytes in chunks
of :data:`CHUNK_BYTES` (one system call per chunk instead of one per 8 KB: while
worker threads fetch pages, each system call can cost the writing thread a wait
for the GIL), and writes and flushes at once every other message: a STATE message,
and every record before it, reaches the target at once. Records not yet written
when the process dies are covered by no STATE, so resuming loses nothing; they are
written at a normal exit.

Without msgspec installed the SDK's default writer is used.

A signal handler that writes (the tap's final STATE on SIGINT/SIGTERM) must not cut into a
message being written: :meth:`KlaviyoMessageWriter.when_idle` runs it at once, or right after
the message in progress.
"""

from __future__ import annotations

import atexit
import datetime as dt
import sys
import typing as t
import weakref

from singer_sdk.singerlib.encoding.simple import Message, RecordMessage, SimpleSingerWriter, StateMessage
from typing_extensions import override

from tap_klaviyo.typed_decoding import plain_record

try:
    import msgspec
    from singer_sdk.contrib.msgspec import enc_hook
except ImportError:  # pragma: no cover
    msgspec = None  # type: ignore[assignment]


#: Records are written to stdout in chunks of about this size.
CHUNK_BYTES = 1 << 20


class KlaviyoMessageWriter(SimpleSingerWriter):
    """Like the SDK's writer (same messages, one JSON document per line), faster."""

    def __init__(self) -> None:
        super().__init__()
        self._busy = False  # a message is being encoded or written
        self._after_write: t.Callable[[], None] | None = None
        if msgspec is not None:
            self._encoder = msgspec.json.Encoder(enc_hook=enc_hook, decimal_format="number")
            self._pending = bytearray()
            self._raw: t.Any = None  # the byte stream the pending records go to
            self._record_key: tuple | None = None  # stream, version, time extracted of _record_ends
            self._record_ends = (b"", b"")
            atexit.register(_flush_at_exit, weakref.ref(self))

    @override
    def serialize_message(self, message: Message) -> str:
        if msgspec is None:  # pragma: no cover
            return super().serialize_message(message)
        try:
            return self._encoder.encode(message.to_dict()).decode()
        except UnicodeEncodeError:  # a lone surrogate: the SDK's encoder escapes it
            return super().serialize_message(message)

    def when_idle(self, action: t.Callable[[], None]) -> None:
        """Run ``action`` now, or once the message being written is whole (for signal handlers).

        A handler runs between two bytecodes of the main thread, possibly in the middle of
        a record (encoded but without its newline) or of a chunk half sent to the pipe:
        writing there would garble the output.
        """
        if self._busy:
            self._after_write = action
        else:
            action()

    @override
    def write_message(self, message: Message) -> None:
        self._busy = True
        try:
            self._write_message(message)
        finally:
            self._busy = False
        if self._after_write is not None:
            action, self._after_write = self._after_write, None
            action()

    def write_record(self, stream: str, record: dict, version: int | None, time_extracted: dt.datetime) -> None:
        """The RECORD message of these parts: the line ``write_message(RecordMessage(...))`` writes.

        Without a message object to build, check and convert per record (see
        ``CompatStream._write_record_message``); one is made only when msgspec cannot write it.
        Only the record is encoded per record: what comes before and after it in the line is
        encoded once per stream, version and time extracted (a page's records share them).
        """
        if time_extracted.tzinfo is not dt.timezone.utc:
            time_extracted = time_extracted.astimezone(dt.timezone.utc)  # what RecordMessage does
        self._busy = True
        try:
            if not self._append_record(stream, record, version, time_extracted):
                document: dict[str, t.Any] = {"type": "RECORD", "stream": stream, "record": record}
                if version is not None:
                    document["version"] = version
                document["time_extracted"] = time_extracted
                self._write_message(_Unbuilt(document))
        finally:
            self._busy = False
        if self._after_write is not None:
            action, self._after_write = self._after_write, None
            action()

    def _append_record(self, stream: str, record: dict, version: int | None, time_extracted: dt.datetime) -> bool:
        """Append the record's line to the pending bytes; False where :meth:`_write_message` must."""
        raw = self._raw
        if msgspec is None or raw is None or getattr(sys.stdout, "buffer", None) is not raw:
            return False  # the first message, or stdout replaced
        key = (stream, version, time_extracted)
        if key != self._record_key:
            self._record_key, self._record_ends = key, self._line_ends(stream, version, time_extracted)
        head, tail = self._record_ends
        pending = self._pending
        size = len(pending)
        pending += head
        try:
            self._encoder.encode_into(record, pending, -1)
        except UnicodeEncodeError:  # a lone surrogate: _write_message writes it as the SDK would
            del pending[size:]
            return False
        pending += tail
        if len(pending) >= CHUNK_BYTES:
            _write_all(raw, pending)
            pending.clear()
        return True

    def _line_ends(self, stream: str, version: int | None, time_extracted: dt.datetime) -> tuple[bytes, bytes]:
        """The bytes of a RECORD line before and after its record, as the encoder writes them."""
        document: dict[str, t.Any] = {"type": "RECORD", "stream": stream, "record": None}
        if version is not None:
            document["version"] = version
        document["time_extracted"] = time_extracted
        line = self._encoder.encode(document)
        head, _, tail = line.partition(b'"record":null')
        return head + b'"record":', tail + b"\n"

    def _write_message(self, message: Message | _Unbuilt) -> None:
        out = sys.stdout
        raw: t.Any = getattr(out, "buffer", None)
        if msgspec is None or raw is None:  # e.g. stdout captured into a StringIO
            built = message.built() if isinstance(message, _Unbuilt) else message
            out.write(self.format_message(built) + "\n")
            if not isinstance(built, RecordMessage):
                out.flush()
            return
        if raw is not self._raw:  # stdout was replaced: what is pending belongs to the old one
            self._flush()
            self._raw = raw
        pending = self._pending
        size = len(pending)
        try:
            self._encoder.encode_into(_document(message), pending, -1)
        except UnicodeEncodeError:  # a lone surrogate ("\ud83d") in Klaviyo's text: msgspec refuses it
            del pending[size:]  # and leaves half-encoded bytes behind
            built = message.built() if isinstance(message, _Unbuilt) else message
            pending.extend(super().serialize_message(built).encode("ascii"))  # escapes it, as JSON allows
        pending.extend(b"\n")
        if isinstance(message, (RecordMessage, _Unbuilt)):
            if len(pending) >= CHUNK_BYTES:
                _write_all(raw, pending)
                pending.clear()
            return
        out.flush()  # anything written as text first stays first
        self._flush()

    def flush(self) -> None:
        """Write pending records (and flush) now."""
        self._busy = True
        try:
            self._flush()
        finally:
            self._busy = False

    def _flush(self) -> None:
        if msgspec is None or self._raw is None:
            return
        if self._pending:
            _write_all(self._raw, self._pending)
            self._pending.clear()
        self._raw.flush()


def _document(message: Message | _Unbuilt) -> dict:
    """``message.to_dict()``; a STATE's without the deep copy of its value the SDK's makes
    (``dataclasses.asdict``: ~0.13 ms a STATE under cProfile, and a STATE goes out every page)."""
    if type(message) is StateMessage:
        return {"type": message.type, "value": message.value}
    return message.to_dict()


class _Unbuilt:
    """A RECORD message still in its ``to_dict()`` form; built only for the SDK's encoder."""

    __slots__ = ("document",)

    def __init__(self, document: dict) -> None:
        self.document = document

    def to_dict(self) -> dict:
        return self.document

    def built(self) -> RecordMessage:
        d = self.document
        return RecordMessage(d["stream"], plain_record(d["record"]), d.get("version"), d["time_extracted"])


def _write_all(raw: t.Any, data: bytearray) -> None:
    """Write all of ``data``: a signal arriving while a pipe is full makes ``write`` return
    having written only part of it (seen with a 1 MB chunk and SIGINT), and the rest was lost."""
    view = memoryview(data)
    try:
        while view:
            written = raw.write(view)
            view = view[written if written is not None else 0 :]
    finally:
        view.release()  # data is cleared next: a live view would forbid resizing it


def _flush_at_exit(writer: weakref.ref[KlaviyoMessageWriter]) -> None:
    alive = writer()
    if alive is not None:
        try:
            alive.flush()
        except (OSError, ValueError):  # stdout already closed
            pass
