"""The catalog a sync reads: deselected list and segment streams cut to what says so.

With ``list_and_segment_streams`` a catalog holds a full profile schema per list and
segment: 9.4 MB for 370 of them, over 100 MB once parsed into dicts and the SDK's schema
objects, although a sync builds only the streams it syncs (see
``TapKlaviyo._builds``). Here the file is split with msgspec, each entry's values kept as
raw JSON, and the entry of a list or segment the catalog deselects keeps its other keys,
its schema's description and the stream's own metadata (which deselects it and names the
list), but not its properties. Every other entry (the selected ones, and the built-in
streams, whose parents sync their selected children) passes through as given.

A file that is not a catalog of that shape passes through unchanged: the SDK's loading
then says what is wrong, as without this step.
"""

from __future__ import annotations

import msgspec
from singer_sdk.singerlib.catalog import MetadataMapping

from tap_klaviyo.groups import group_named_by
from tap_klaviyo.sdk_compat import stream_selected

_Values = dict[str, msgspec.Raw]


class _Item(msgspec.Struct):
    """One metadata entry; its metadata left raw until it is the stream's own."""

    breadcrumb: list[str | int]
    metadata: msgspec.Raw = msgspec.Raw(b"{}")


class _Described(msgspec.Struct):
    description: str | None = None


def for_sync(text: str) -> str:
    """``text``, a catalog, with the entries of deselected lists and segments cut (see above)."""
    try:
        document = msgspec.json.decode(text, type=_Values)
        entries = msgspec.json.decode(document["streams"], type=list[_Values])
        cut = [_cut(entry) for entry in entries]
    except (KeyError, msgspec.DecodeError, msgspec.ValidationError):
        return text
    if all(new is old for new, old in zip(cut, entries, strict=True)):
        return text
    return msgspec.json.encode({**document, "streams": cut}).decode()


def _cut(entry: _Values) -> _Values:
    """``entry`` itself, or without its properties when it is a list or segment stream deselected."""
    items = msgspec.json.decode(entry.get("metadata", b"[]"), type=list[_Item])
    root = next((item for item in items if item.breadcrumb == []), None)
    if root is None:
        return entry
    metadata = msgspec.json.decode(root.metadata, type=dict)
    if group_named_by(metadata) is None:
        return entry
    if stream_selected(MetadataMapping.from_iterable([{"breadcrumb": [], "metadata": metadata}])):
        return entry
    schema: dict = {"type": "object", "properties": {}}
    description = msgspec.json.decode(entry.get("schema", b"{}"), type=_Described).description
    if description is not None:
        schema["description"] = description
    return {**entry, "schema": _raw(schema), "metadata": _raw([root])}


def _raw(value: object) -> msgspec.Raw:
    return msgspec.Raw(msgspec.json.encode(value))
