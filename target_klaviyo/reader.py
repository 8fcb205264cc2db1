"""Read Singer input so that no single line can stop the run or reach Klaviyo mangled.

Input is read as UTF-8 whatever the locale says, with ``errors="surrogateescape"``:
bytes that are not UTF-8 (a Latin-1 export, say) are kept as lone surrogates, so the
rest of their line still parses and the line's row is rejected with a reason
(:func:`reject_undecodable`) instead of crashing the run (strict decoding) or sending
replacement characters to Klaviyo (``errors="replace"``). The same check catches lone
surrogates that arrive as JSON escapes (``"\\ud83d"``): Klaviyo cannot store them either.

A line that is not JSON (cut short because the tap died, or garbage), and a RECORD
without its ``record``, are rejected as a whole and reading goes on: the rows before and
after are written, and the rejects file says which line it was. Blank lines are skipped.
A stream-level problem stops the run with one line saying what to fix, before any STATE
covers the stream: a SCHEMA message that is not valid, or a RECORD before its SCHEMA.
"""

from __future__ import annotations

import collections
import io
import logging
import re
import sys
import typing as t

from singer_sdk.exceptions import RecordsWithoutSchemaException
from singer_sdk.io_base import SingerMessageType, SingerReader
from singer_sdk.singerlib.exceptions import InvalidInputLine
from singer_sdk.singerlib.json import deserialize_json
from typing_extensions import override

from klaviyo_core.errors import KlaviyoError
from target_klaviyo.rejects import RowRejected, printable

_SURROGATE = re.compile("[\ud800-\udfff]")
_RECORD_OF = re.compile(
    r'"type"\s*:\s*"RECORD".*?"stream"\s*:\s*"([^"\\]{1,200})"|'
    r'"stream"\s*:\s*"([^"\\]{1,200})".*?"type"\s*:\s*"RECORD"'
)
#: The stream name rejects of lines that are not a readable RECORD are counted under.
INPUT_STREAM = "(input)"

BadLine = t.Callable[[int, str, str, str | None], None]


def utf8_input(stream: t.IO[str]) -> t.IO[str]:
    """``stream`` decoding UTF-8 with surrogate escapes (before anything was read from it)."""
    if isinstance(stream, io.TextIOWrapper):
        try:
            stream.reconfigure(encoding="utf-8", errors="surrogateescape")
        except (io.UnsupportedOperation, ValueError):  # already read from: keep it as it is
            pass
    return stream


def undecodable_column(value: t.Any, column: str = "") -> str | None:
    """The first column (dotted path) whose key or text is not valid Unicode, or None."""
    if isinstance(value, str):
        return column if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{column}.{key}" if column else str(key)
            if isinstance(key, str) and _SURROGATE.search(key):
                return printable(path)
            found = undecodable_column(item, path)
            if found is not None:
                return found
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = undecodable_column(item, f"{column}[{index}]")
            if found is not None:
                return found
    return None


def reject_undecodable(record: dict) -> None:
    """Raise RowRejected when any value or column name holds text that is not UTF-8."""
    column = undecodable_column(record)
    if column is not None:
        raise RowRejected(
            "text not UTF-8",
            f"{column} holds text that is not valid UTF-8 (shown as \\x.. or \\ud... in the row); "
            "export the data as UTF-8 and send the row again",
        )


class _StopReading(Exception):
    """Raised by a signal handler into a wait for input: stop reading, then drain."""


class BadSchemaLine(KlaviyoError, InvalidInputLine):
    """A SCHEMA (or other non-RECORD) message the SDK cannot use: the stream cannot work."""


class RecordBeforeSchema(KlaviyoError, RecordsWithoutSchemaException):
    """A RECORD of a stream whose SCHEMA has not arrived: the tap's output is out of order."""


class TolerantSingerReader(SingerReader):
    """The SDK's reader, but a bad line is handed to ``on_bad_line`` instead of ending the run."""

    def __init__(self) -> None:
        super().__init__()
        self.on_bad_line: BadLine | None = None
        self._stop_requested = False
        self._waiting_for_input = False
        self._unknown_types: set[str] = set()

    @override
    def process_lines(
        self,
        file_input: t.IO[str] | None,
        callbacks: dict[str, t.Callable[[dict], None]],
    ) -> collections.Counter[str]:
        stats: dict[str, int] = collections.defaultdict(int)
        try:
            self._read_lines(utf8_input(file_input or sys.stdin), callbacks, stats)
        except _StopReading:  # a signal came while waiting for a line: like the end of the input
            pass
        return collections.Counter(**stats)

    def stop_reading(self) -> None:
        """Read no further line (called by a signal handler); what was read is still processed.

        Waiting for input, the wait is cut short; in the middle of a line, that line is finished
        first. Either way the target then drains as at the end of its input.
        """
        self._stop_requested = True
        if self._waiting_for_input:
            raise _StopReading

    def _read_lines(
        self,
        lines: t.IO[str],
        callbacks: dict[str, t.Callable[[dict], None]],
        stats: dict[str, int],
    ) -> None:
        number = 0
        while not self._stop_requested:
            self._waiting_for_input = True  # only here may stop_reading() interrupt: no line is half done
            line = lines.readline()
            self._waiting_for_input = False
            if not line:
                return
            number += 1
            if not line.strip():
                continue
            try:
                message = deserialize_json(line)
            except ValueError as exc:  # json.JSONDecodeError; the SDK would log the line and stop
                detail = getattr(exc, "msg", None) or type(exc).__name__
                self._bad_line(number, line, f"line {number} is not valid JSON ({detail}): it was cut short or garbled")
                continue
            if not isinstance(message, dict) or "type" not in message:
                self._bad_line(number, line, f"line {number} is not a Singer message (a JSON object with a type)")
                continue
            record_type = message["type"]
            callback = callbacks.get(record_type)
            if callback is None:
                self._skip_unknown_type(number, record_type)
                continue
            try:
                callback(message)
            except RecordsWithoutSchemaException:
                raise RecordBeforeSchema(
                    f"Input line {number}: a RECORD of stream {message.get('stream')!r} came before the stream's "
                    "SCHEMA message. Fix the order of the tap's output (or the stream_maps that rename the stream)."
                ) from None
            except InvalidInputLine as exc:
                if record_type != SingerMessageType.RECORD:
                    raise BadSchemaLine(
                        f"Input line {number}: a {record_type} message the target cannot use "
                        f"({_first_line(exc)[:200]}). Fix the tap's output for stream {message.get('stream')!r}."
                    ) from None
                self._bad_line(number, line, f"line {number}: {_first_line(exc)}", message)
                continue
            stats[record_type] += 1

    def _skip_unknown_type(self, number: int, record_type: t.Any) -> None:
        """A message type this target does not know (a newer Singer spec, a tap's own): log it and go on.

        Logged once per type (with its first line number): a tap may send thousands.
        """
        shown = str(record_type)[:40]
        if shown in self._unknown_types:
            return
        self._unknown_types.add(shown)
        logging.getLogger("target-klaviyo").warning(
            "Input line %d: Singer message type %r is unknown to this target; such messages are skipped.",
            number,
            shown,
        )

    def _bad_line(self, number: int, line: str, reason: str, message: t.Any = None) -> None:
        if self.on_bad_line is None:
            raise InvalidInputLine(reason)
        stream = None
        if isinstance(message, dict) and message.get("type") == SingerMessageType.RECORD:
            stream = message.get("stream") if isinstance(message.get("stream"), str) else None
        elif message is None:
            found = _RECORD_OF.search(line)
            stream = (found.group(1) or found.group(2)) if found else None
        self.on_bad_line(number, line.rstrip("\r\n"), reason, stream)


def _first_line(exc: Exception) -> str:
    text = str(exc).split("\n", 1)[0]
    return text[:300]
