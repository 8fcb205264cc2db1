"""One stream per Klaviyo list (``list_<name>``) and per segment (``segment_<name>``).

With ``list_and_segment_streams`` on, each list and segment becomes a stream of
its current members as full profiles (``GET /api/lists/{id}/profiles`` with
``additional-fields[profile]=subscriptions``, plus ``predictive_analytics`` with
``include_predictive_analytics`` as for ``profiles``; 100 per page) plus
``joined_group_at``: the list and segment views of Klaviyo's own interface.
Full table, primary key ``id``. They carry the same typed custom ``properties``
as the profiles stream (see :mod:`tap_klaviyo.custom_fields`).

Stream names
    ``list_`` / ``segment_`` + the name lowercased, transliterated to ASCII
    (accents stripped, ``ß`` -> ``ss``...; emoji and other scripts dropped),
    every run of other characters turned into ``_``, trimmed, cut at
    :data:`MAX_SLUG` characters. A name with nothing left uses the Klaviyo id.
    Names that collide (``VIP`` and ``vip!``, two lists both called ``Sale``,
    or a name equal to a built-in stream such as ``list_members``) all get
    ``_<id, lowercased>`` appended; should two names still meet, the later in id
    order gets ``_2``, ``_3``... The same lists give the same names on every run
    (a new clashing list does rename the stream of the list it clashes with).

Catalog
    The stream's root metadata carries ``klaviyo-group-type`` (list/segment),
    ``klaviyo-group-id`` and ``klaviyo-group-name``, and its schema's
    description names the list and its id. With ``--catalog`` the streams are
    rebuilt from those entries (the id is read from the metadata, else from the
    description): no list is looked up, a renamed list keeps its stream, and a
    list deleted since discovery logs a warning and yields no records.
"""

from __future__ import annotations

import re
import typing as t
import unicodedata
from collections import Counter
from dataclasses import dataclass, fields
from urllib.parse import quote

from singer_sdk.singerlib.catalog import StreamMetadata
from typing_extensions import override

from klaviyo_core.errors import KlaviyoAPIError
from tap_klaviyo.custom_fields import PROFILE_FIELDS, CustomFieldsMixin
from tap_klaviyo.stream import KlaviyoStream, profile_fields_params

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context
    from singer_sdk.singerlib import Catalog, MetadataMapping

    from klaviyo_core.client import KlaviyoConnection

GROUP_KINDS = ("list", "segment")
MAX_SLUG = 40
_TRANSLITERATIONS = str.maketrans({
    "ß": "ss", "ẞ": "SS", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O",
    "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "ł": "l", "Ł": "L", "þ": "th", "Þ": "TH", "ı": "i",
})  # fmt: skip
_DESCRIPTION_ID = re.compile(r"\((list|segment) id ([^()\s]+)\)")


@dataclass(frozen=True)
class Group:
    kind: str  # "list" or "segment"
    id: str
    name: str
    stream_name: str = ""

    @property
    def description(self) -> str:
        return (
            f"Current members of the Klaviyo {self.kind} '{self.name}' ({self.kind} id {self.id}): "
            "full profiles with joined_group_at. Full table."
        )


def slug(text: str) -> str:
    """``text`` as lowercase ASCII letters, digits and single underscores ('' if none)."""
    ascii_text = unicodedata.normalize("NFKD", text.translate(_TRANSLITERATIONS))
    ascii_text = ascii_text.encode("ascii", "ignore").decode("ascii").lower()
    return re.sub(r"[^a-z0-9]+", "_", ascii_text).strip("_")[:MAX_SLUG].rstrip("_")


def name_streams(groups: t.Iterable[Group], reserved: t.Collection[str] = ()) -> list[Group]:
    """The groups with unique, stable stream names (see the module docstring), by name."""
    groups = sorted(groups, key=lambda g: (g.kind, g.id))
    bases = {(g.kind, g.id): f"{g.kind}_{slug(g.name) or slug(g.id) or 'unnamed'}" for g in groups}
    counts = Counter(bases.values())
    wanted = {}
    for g in groups:
        base = bases[(g.kind, g.id)]
        clash = counts[base] > 1 or base in reserved
        wanted[(g.kind, g.id)] = f"{base}_{slug(g.id) or 'x'}" if clash else base
    planned = Counter(wanted.values())
    used = set(reserved)
    named = []
    for g in groups:
        name = wanted[(g.kind, g.id)]
        if name in used:  # only when ids differ in case only, or a name looks like name_<id>
            n = 2
            while f"{name}_{n}" in used or f"{name}_{n}" in planned:
                n += 1
            name = f"{name}_{n}"
        used.add(name)
        named.append(Group(g.kind, g.id, g.name, name))
    return sorted(named, key=lambda g: g.stream_name)


def groups_from_api(connection: KlaviyoConnection) -> list[Group]:
    """Every list and segment of the account (names only)."""
    return [
        Group(kind, resource["id"], str((resource.get("attributes") or {}).get("name") or ""))
        for kind in GROUP_KINDS
        for resource in connection.paginate(f"/api/{kind}s", {f"fields[{kind}]": "name"})
    ]


def groups_from_catalog(catalog: Catalog, raw_catalog: t.Mapping[str, t.Any] | None) -> list[Group]:
    """The list/segment streams an input catalog describes, with their Klaviyo ids."""
    raw_roots = {}
    for entry in (raw_catalog or {}).get("streams") or []:
        for item in entry.get("metadata") or []:
            if item.get("breadcrumb") == []:
                raw_roots[entry.get("tap_stream_id")] = item.get("metadata") or {}
    groups = []
    for entry in catalog.streams:
        root = raw_roots.get(entry.tap_stream_id, {})
        named = group_named_by(root)
        if named is None:
            matches = _DESCRIPTION_ID.findall(entry.schema.description or "")
            if not matches or not entry.tap_stream_id.startswith(f"{matches[-1][0]}_"):
                continue
            named = matches[-1]
        kind, group_id = named
        groups.append(Group(kind, group_id, str(root.get("klaviyo-group-name") or ""), entry.tap_stream_id))
    return groups


def group_named_by(root: t.Mapping[str, t.Any]) -> tuple[str, str] | None:
    """The kind and id of the list or segment a stream's root metadata names, if it names one."""
    kind, group_id = root.get("klaviyo-group-type"), root.get("klaviyo-group-id")
    return (kind, str(group_id)) if kind in GROUP_KINDS and group_id else None


def group_schema(profile_schema: dict, group: Group) -> dict:
    """A profile's schema plus ``joined_group_at``, described as the group's view."""
    properties = {**profile_schema["properties"]}
    properties["joined_group_at"] = {"type": ["string", "null"], "format": "date-time"}
    return {**profile_schema, "description": group.description, "properties": properties}


@dataclass(slots=True)
class GroupStreamMetadata(StreamMetadata):
    """Root metadata naming the Klaviyo list or segment behind a stream."""

    klaviyo_group_type: str | None = None
    klaviyo_group_id: str | None = None
    klaviyo_group_name: str | None = None


class GroupProfilesStream(CustomFieldsMixin, KlaviyoStream):
    """The current members of one list or segment, as full profiles with ``joined_group_at``."""

    custom_source = PROFILE_FIELDS
    attribute_defaults: t.ClassVar[dict[str, t.Any]] = {"joined_group_at": None}
    primary_keys = ("id",)
    replication_key = None
    # As list_members: a big group is read as joined_group_at slices in parallel
    # (tap_klaviyo.parallel), in the same order as one chain.
    parallel = True
    slice_key = "joined_group_at"
    sort = "joined_group_at"

    def __init__(self, tap: t.Any, group: Group, schema: dict) -> None:
        self.group = group
        self.operation_id = f"get_profiles_for_{group.kind}"  # type: ignore[misc]  # per group kind
        super().__init__(tap, schema=schema, name=group.stream_name)

    @override
    @property
    def extra_params(self) -> dict[str, str]:  # type: ignore[override]
        return profile_fields_params(self.config)  # predictive analytics as for profiles

    @override
    def get_url(self, context: Context | None) -> str:
        return f"{self.url_base}/api/{self.group.kind}s/{quote(self.group.id, safe='')}/profiles"

    @override
    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        try:
            yield from super().get_records(context)
        except KlaviyoAPIError as exc:
            if exc.status != 404:
                raise
            self.logger.warning(
                "Klaviyo %s %s (id %s) no longer exists: stream %s has no records. "
                "Run discovery again to drop it from the catalog.",
                self.group.kind, self.group.name or "", self.group.id, self.name,
            )  # fmt: skip

    @override
    @property
    def metadata(self) -> MetadataMapping:
        """The SDK's, its root replaced once by one naming the group (the SDK keeps this mapping)."""
        mapping = super().metadata
        root = mapping.root
        if not isinstance(root, GroupStreamMetadata):
            mapping[()] = GroupStreamMetadata(
                **{f.name: getattr(root, f.name) for f in fields(StreamMetadata)},
                klaviyo_group_type=self.group.kind,
                klaviyo_group_id=self.group.id,
                klaviyo_group_name=self.group.name or None,
            )
        return mapping
