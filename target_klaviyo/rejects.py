"""Account for every input row: sent to Klaviyo, or rejected with a reason.

Rejected rows go to a JSONL file (``{"stream", "row", "reason"}``) that is created
only when the first row is rejected, so a clean run leaves nothing behind. The log
gets counts per stream and per kind of reason, never the rows themselves: rows hold
email addresses.
"""

from __future__ import annotations

import collections
import datetime as dt
import decimal
import json
import math
import re
import threading
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

if t.TYPE_CHECKING:
    import logging

_SURROGATE = re.compile("[\ud800-\udfff]")


class RowRejected(Exception):
    """A row that must not be sent, with a short ``kind`` for counts and a full reason."""

    def __init__(self, kind: str, reason: str | None = None) -> None:
        super().__init__(reason or kind)
        self.kind = kind
        self.reason = reason or kind


@dataclass
class StreamCounts:
    received: int = 0
    sent: int = 0
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)


class RunReport:
    """Counts and the rejects file, shared by every sink (sinks drain in threads)."""

    def __init__(self, rejects_file: str | Path) -> None:
        self.path = Path(rejects_file).resolve()
        self._streams: dict[str, StreamCounts] = collections.defaultdict(StreamCounts)
        self._lock = threading.Lock()
        self._file: t.TextIO | None = None

    def received(self, stream: str, count: int = 1) -> None:
        with self._lock:
            self._streams[stream].received += count

    def sent(self, stream: str, count: int) -> None:
        """Rows Klaviyo took (an import job, a removal); import errors found later are taken back off."""
        with self._lock:
            self._streams[stream].sent += count

    def reject(self, stream: str, row: t.Any, rejection: RowRejected, *, was_sent: bool = False) -> None:
        """Record one rejected row; ``was_sent`` when it had already been counted as sent."""
        line = json.dumps({"stream": stream, "row": readable(row), "reason": rejection.reason})
        with self._lock:
            counts = self._streams[stream]
            counts.rejected[rejection.kind] += 1
            if was_sent:
                counts.sent -= 1
            if self._file is None:
                self._file = self.path.open("w", encoding="utf-8")
            self._file.write(line + "\n")
            self._file.flush()  # a crash later in the run must not lose reported rows

    @property
    def rejected_total(self) -> int:
        with self._lock:
            return sum(sum(c.rejected.values()) for c in self._streams.values())

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def log_summary(self, logger: logging.Logger) -> None:
        """One line per stream: rows received, sent, rejected by kind."""
        with self._lock:
            streams = sorted(self._streams.items())
        for stream, counts in streams:
            rejected = sum(counts.rejected.values())
            kinds = ", ".join(f"{kind}: {n}" for kind, n in sorted(counts.rejected.items()))
            logger.info(
                "Stream '%s': %d rows received, %d sent, %d rejected%s",
                stream,
                counts.received,
                counts.sent,
                rejected,
                f" ({kinds})" if kinds else "",
            )
        total = self.rejected_total
        if total:
            logger.warning("Rejected rows in all: %d; rows and reasons are in %s", total, self.path)
        elif self.path.exists():
            logger.info("No rows rejected; %s is left from an earlier run", self.path)


def readable(value: t.Any) -> t.Any:
    """A row as plain JSON, as close to how it arrived as JSON allows (no NaN, no Decimal)."""
    if isinstance(value, dict):
        return {printable(str(k)): readable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [readable(v) for v in value]
    if isinstance(value, str):
        return printable(value)  # undecodable input bytes as \xe9, so the file stays valid UTF-8
    if isinstance(value, (bool, int)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal):
        return plain_number(value) if value.is_finite() else str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def printable(text: str) -> str:
    """``text`` with undecodable bytes as ``\\xe9`` and lone surrogates as ``\\udXXX``."""
    if not _SURROGATE.search(text):
        return text
    out = []
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a surrogate escape: the byte that was not UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def plain_number(value: decimal.Decimal) -> int | float:
    """The SDK reads JSON numbers as Decimal; ``12`` stays an int, ``12.5`` or ``12.0`` a float."""
    exponent = value.as_tuple().exponent
    return int(value) if isinstance(exponent, int) and exponent >= 0 else float(value)
