"""A page's records kept as JSON until they are read: what bounds the tap's memory.

The parallel reader buffers pages fetched ahead of the one being written (a few per
worker). Decoded into dicts, a page of 1,000 events held ~3.5 MB of Python objects (and a
page of realistic Shopify orders ~6 MB): the buffer, not the data, made the tap's peak RSS.
Here a worker only splits the page's ``data`` into one raw JSON span per resource (msgspec
checks the whole document is well-formed JSON on the way, so a truncated answer is still
retried), and each record is decoded and flattened when the writing thread reads it: a
buffered page costs its JSON bytes. The CPU is the same: decoding happened under the GIL in
the workers too. A page that waits behind other slices' may also be held LZ4-compressed
(:class:`PackedRecords`, when the reader's byte budget would bind first): a fifth of the bytes
for ~2 ms of CPU a page of 1,000 events.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import mmap
import sys
import typing as t
from collections.abc import Sequence

import lz4.block
import msgspec
from typing_extensions import override

from klaviyo_core.client import decode_document

if t.TYPE_CHECKING:
    import requests


#: glibc's mallopt parameter, and the size from which blocks get their own mapping.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 256 * 1024


def return_large_blocks_to_the_os() -> bool:
    """Give every block of 256 KB or more (answers' bodies, pages) its own mapping, freed at once.

    glibc raises its mapping threshold after a large block is freed, up to 32 MB: the
    answers' bodies (about 1 MB each, in 16 threads' malloc arenas) then came from the
    arenas, whose freed holes the process kept: a third of the tap's peak RSS. A threshold
    set once stays fixed. Nothing to do off glibc (macOS, musl).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):  # not glibc
        return False


return_large_blocks_to_the_os()  # at import: before the first page is read


class _Links(msgspec.Struct):
    next: str | None = None


class _Document(msgspec.Struct):
    """A JSON:API collection answer; its resources left as raw JSON."""

    data: list[msgspec.Raw] = msgspec.field(default_factory=list)
    links: _Links | None = None


_PAGE = msgspec.json.Decoder(_Document)
_decode = msgspec.json.decode
_encode = msgspec.json.encode


class Decoded(t.NamedTuple):
    """An answer msgspec cannot take as raw spans, decoded whole by the stdlib parser instead."""

    data: list[dict]
    links: _Links | None


def decode_page(response: requests.Response) -> _Document | Decoded:
    """The answer's resources as raw JSON (cached on the response), checked to be well-formed."""
    cached = response.__dict__.get("_klaviyo_page")
    if cached is not None:
        return cached
    page: _Document | Decoded
    try:
        page = _PAGE.decode(response.content)
    except (msgspec.DecodeError, msgspec.ValidationError):
        # Not JSON (decode_document raises the usual retriable error); JSON msgspec refuses, such
        # as a lone surrogate escape ("\ud83d") that JSON allows and Klaviyo may send; or another
        # shape (a report's single resource: no records here).
        document = decode_document(response)
        data = document.get("data")
        next_url = (document.get("links") or {}).get("next")
        page = Decoded(data if isinstance(data, list) else [], _Links(next_url))
    response.__dict__["_klaviyo_page"] = page
    return page


def _decode_then(raw: msgspec.Raw, to_record: t.Callable[[dict], dict]) -> dict:
    return to_record(_decode(raw))


class LazyRecords(Sequence[dict]):
    """A page's records, each made when read: ``make(raw, to_record)``, by default
    ``to_record`` of the decoded resource.

    ``source`` is the answer's body when ``raw`` is all of its ``data``, in order: what
    :meth:`packed` compresses, rather than a copy of the spans.
    """

    __slots__ = ("_make", "_raw", "_source", "_to_record")

    def __init__(
        self,
        raw: list[msgspec.Raw],
        to_record: t.Callable[[t.Any], dict],
        make: t.Callable[[msgspec.Raw, t.Callable[[t.Any], dict]], dict] = _decode_then,
        *,
        source: bytes | None = None,
    ) -> None:
        self._raw = raw
        self._to_record = to_record
        self._make = make
        self._source = source

    @override
    def __len__(self) -> int:
        return len(self._raw)

    @override
    def __iter__(self) -> t.Iterator[dict]:
        to_record, make = self._to_record, self._make
        if make is _decode_then:
            for raw in self._raw:
                yield to_record(_decode(raw))
        else:
            for raw in self._raw:
                yield make(raw, to_record)

    @t.overload
    def __getitem__(self, index: int) -> dict: ...
    @t.overload
    def __getitem__(self, index: slice) -> list[dict]: ...
    @override
    def __getitem__(self, index: int | slice) -> dict | list[dict]:
        if isinstance(index, slice):
            return [self._make(raw, self._to_record) for raw in self._raw[index]]
        return self._make(self._raw[index], self._to_record)

    def packed(self) -> tuple[PackedRecords, int]:
        """These records held compressed until read (:class:`PackedRecords`), and its bytes."""
        document = self._source if self._source is not None else _encode(_Document(self._raw))
        packed = PackedRecords(document, len(self._raw), self._to_record, self._make)
        return packed, packed.size


#: LZ4's fast mode: a fifth less CPU than its default for 6% more bytes (a page of events).
LZ4_ACCELERATION = 8


class PackedRecords(Sequence[dict]):
    """A page's records held LZ4-compressed while they wait, made as the page's when read.

    The parallel reader buffers the pages of the slices after the one being read until their
    turn: with 16 workers, ~30 answers of ~1 MB of events, a third of the tap's peak RSS.
    Packed, a page of events holds a fifth of its bytes. What is compressed is the answer's
    body itself (``document``, a JSON:API document whose ``data`` are the ``count`` records):
    copying the spans into one array first cost a transient copy of the page per worker
    packing (16 workers, 200,000 events: 77.3 MB of peak RSS with that copy, 71.5 without;
    stop 35), and splitting the body again when the page is read costs what building and
    cutting that array did. It costs ~2 ms of CPU a page of 1,000 events (0.75 to compress,
    0.75 to decompress, 0.6 to split), ~4 ms a page of realistic orders (1.8 MB); zlib's
    fastest level took 6 ms for the events (docs/operations.md, stops 34 and 35).
    """

    __slots__ = ("_count", "_make", "_packed", "_to_record")

    def __init__(
        self,
        document: bytes,
        count: int,
        to_record: t.Callable[[t.Any], dict],
        make: t.Callable[[msgspec.Raw, t.Callable[[t.Any], dict]], dict],
    ) -> None:
        self._packed = _own_mapping(lz4.block.compress(document, mode="fast", acceleration=LZ4_ACCELERATION))
        self._count = count
        self._to_record = to_record
        self._make = make

    @property
    def size(self) -> int:
        """Bytes held."""
        return len(self._packed)

    def unpacked(self) -> LazyRecords:
        """The records as the page held them: the document split into its resources' spans again."""
        return LazyRecords(_PAGE.decode(lz4.block.decompress(self._packed)).data, self._to_record, self._make)

    @override
    def __len__(self) -> int:
        return self._count

    @override
    def __iter__(self) -> t.Iterator[dict]:
        return iter(self.unpacked())

    @t.overload
    def __getitem__(self, index: int) -> dict: ...
    @t.overload
    def __getitem__(self, index: slice) -> list[dict]: ...
    @override
    def __getitem__(self, index: int | slice) -> dict | list[dict]:
        return self.unpacked()[index]


def _own_mapping(data: bytes) -> mmap.mmap:
    """``data`` in a mapping of its own, returned to the system when the page is read.

    A packed page of events (~210 KB, less for a slice's last page) is below glibc's mapping
    threshold (:data:`MMAP_THRESHOLD_BYTES`): held in the workers' malloc arenas while they
    waited, the packed pages left holes there (82.8 against 79.6 MB of peak RSS, 16 workers,
    2,000,000 events). A 64 KB threshold for every block gave 75.6 MB, but mapped every
    profiles answer (~250 KB) too, in fresh pages: 8-20% more CPU a profile
    (docs/operations.md, stop 34).
    """
    mapping = mmap.mmap(-1, max(1, len(data)))
    mapping.write(data)
    return mapping


def lazy_records(
    page: _Document | Decoded, to_record: t.Callable[[dict], dict], source: bytes | None = None
) -> t.Sequence[dict]:
    """A decoded page's resources as records, each made when read (``source``: the page's body)."""
    if isinstance(page, Decoded):
        return [to_record(resource) for resource in page.data]
    return LazyRecords(page.data, to_record, source=source)


class _Relationship(msgspec.Struct):
    data: t.Any = msgspec.UNSET


class _Resource(msgspec.Struct):
    """What a flat record takes from a resource: ``type`` and ``links`` are skipped unread."""

    id: str
    attributes: dict | None = None
    relationships: dict[str, _Relationship] | None = None


_RESOURCE = msgspec.json.Decoder(_Resource)


def flat_records(
    page: _Document | Decoded, flatten: t.Callable[[dict], dict], source: bytes | None = None
) -> t.Sequence[dict]:
    """Like ``lazy_records(page, flatten, source)`` with the base ``flatten``, decoded in one pass.

    Decoding the resource into a struct builds no dict for the resource, its ``links`` and
    its relationships' ``links`` (a tenth of the decoding). A resource of another shape
    (an id that is not text, a relationship that is not an object) goes through ``flatten``.
    """
    if isinstance(page, Decoded):
        return lazy_records(page, flatten)
    return LazyRecords(page.data, flatten, _flat_record, source=source)


def _flat_record(raw: msgspec.Raw, flatten: t.Callable[[dict], dict]) -> dict:
    try:
        resource = _RESOURCE.decode(raw)
    except msgspec.ValidationError:
        return flatten(_decode(raw))
    record = {"id": resource.id, **(resource.attributes or {})}
    for name, relationship in (resource.relationships or {}).items():
        if relationship.data is not msgspec.UNSET:
            add_relationship(record, name, relationship.data)
    return record


def add_relationship(record: dict, name: str, data: t.Any) -> None:
    """A relationship's ids as a column: ``<name>_id``, or ``<name without s>_ids`` for a list."""
    if type(data) is list:
        record[_many_column(name)] = [item["id"] for item in data]
    else:
        record[_one_column(name)] = data["id"] if data else None


@functools.cache  # a stream has a few relationships, and each record carries them all
def _one_column(name: str) -> str:
    return name.replace("-", "_") + "_id"


@functools.cache
def _many_column(name: str) -> str:
    return name.replace("-", "_").removesuffix("s") + "_ids"
