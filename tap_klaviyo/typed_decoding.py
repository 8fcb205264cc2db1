"""Custom fields typed while a resource is decoded: the fast path of the Conformer.

Fitting a record's custom-field object to its schema key by key in Python
(:class:`~tap_klaviyo.inference.Conformer`) was a third of an event's CPU and half of a
realistic profile's. Here the run's schema becomes msgspec struct types, and msgspec checks
every value while it decodes the resource, in C: a record whose values all fit comes out of
the decoder conformed. Any other record (a key the schema lacks, a value that does not fit,
an attribute the catalog lacks) makes msgspec raise, and is made by the usual path
(``fallback``: decoded to dicts, flattened, conformed by the Conformer). Both paths give the
same record: tests/tap/test_typed_decoding.py compares them value by value.

The struct types follow the Conformer's rules: every field optional (missing stays
missing), ``integer`` an int (never a bool or 3.0), ``number`` an int or a float as sent,
``date``/``date-time`` text matching RFC 3339 (a 29th of February or year 0 is left to the
Conformer's calendar check), objects closed to unknown keys, arrays all or nothing.

Text fields whose values are sometimes numbers, booleans or objects (Shopify's
``ProductID``, ``Zip``, ``Tags``) are common, and the Conformer writes such values as text.
A field typed ``str`` would send every such record down the slow path, so the decoder
learns: when a record fails because a text field, or the items of an array of text, held
another type, that field becomes loose (any JSON value, turned into the Conformer's text by
its struct's ``__post_init__``) and the types are rebuilt. Each field is loosened at most
once, so a stream rebuilds them a bounded number of times. The field is read from
msgspec's error message (``... - at `$.attributes.event_properties.Items[0].ProductID```);
a message of another form only means the record takes the slow path.
"""

from __future__ import annotations

import itertools
import re
import threading
import typing as t

import msgspec
from msgspec import UNSET, Meta, UnsetType

from tap_klaviyo.inference import stringify
from tap_klaviyo.records import add_relationship

#: ``YYYY-MM-DD`` naming a calendar day, except the 29th of February and year 0 (the
#: Conformer checks those). ASCII digits only, as the Conformer's patterns.
_DAY = (
    r"(?!0000)[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
_DATE = rf"\A{_DAY}\Z"
_DATETIME = (
    rf"\A{_DAY}[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])\Z"
)
_FORMATS = {"date": _DATE, "date-time": _DATETIME}
_SCALARS: dict[str, t.Any] = {"integer": int, "number": int | float, "boolean": bool, "string": str}

#: Where msgspec says a value did not fit: "Expected `str | null`, got `int` - at `$.a.b[0].c`".
_MISFIT = re.compile(r"\AExpected `(?P<expected>[^`]*)`, got `[^`]*` - at `\$(?P<path>.*)`\Z", re.DOTALL)

Path = tuple[str, ...]  # keys from the resource down; "[]" stands for an array's items


class Unsupported(ValueError):
    """A schema the decoder does not type (several types besides null): the Conformer alone then."""


class _Build:
    """Struct types for one schema and set of loose fields, and the text fields that could loosen."""

    def __init__(self, loose: frozenset[Path]) -> None:
        self.loose = loose
        #: Text fields of a struct, and text items of an array in a struct: what a
        #: ``__post_init__`` can fix. By how msgspec spells them (array indices as ``[]``).
        self.text_fields: dict[str, Path] = {}
        self.names = itertools.count()

    def struct(
        self, properties: dict[str, t.Any], path: Path, defaults: dict | None = None, raw_key: str | None = None
    ) -> type:
        """A struct of ``properties`` (typed by their schemas), closed to other keys; with
        ``raw_key``, that key too, kept as raw JSON."""
        fields: list[tuple[str, t.Any, t.Any]] = []
        rename: dict[str, str] = {}
        fixups = []
        if raw_key is not None:
            fields.append(("raw", msgspec.Raw | UnsetType, UNSET))
            rename["raw"] = raw_key
        for key, schema in properties.items():
            name = f"f{next(self.names)}"  # keys need not be identifiers: renamed to them
            rename[name] = key
            kind, fixup = self.field(schema, (*path, key), in_struct=True)
            fields.append((name, kind | UnsetType, (defaults or {}).get(key, UNSET)))
            if fixup is not None:
                fixups.append((name, fixup, _kinds(schema, (*path, key))[1]))
        namespace = {"__post_init__": _fix_fields(fixups)} if fixups else {}
        return msgspec.defstruct("Fields", fields, rename=rename, forbid_unknown_fields=True, namespace=namespace)

    def field(self, schema: t.Any, path: Path, in_struct: bool) -> tuple[t.Any, t.Callable[[t.Any], t.Any] | None]:
        """The field's type, and the function that fixes its decoded value when it is loose."""
        if schema is _RAW:
            return msgspec.Raw, None
        kinds, nullable = _kinds(schema, path)
        if not kinds:
            return t.Any, None
        kind, fixup = self.kind(kinds[0], schema, path, in_struct)
        return (kind | None if nullable else kind), fixup

    def kind(self, kind: str, schema: dict, path: Path, in_struct: bool) -> tuple[t.Any, t.Callable | None]:
        if kind == "object":
            return self.struct(schema.get("properties") or {}, path), None
        if kind == "array":
            items = schema.get("items") or {}
            item_path = (*path, "[]")
            if in_struct and self.learns(items, item_path):
                return list, _text_items(_kinds(items, item_path)[1])
            item, _ = self.field(items, item_path, in_struct=False)  # no fixup out of a struct
            return list[item], None  # type: ignore[valid-type]  # a type built at run time
        if kind == "string" and schema.get("format") in _FORMATS:
            return t.Annotated[str, Meta(pattern=_FORMATS[schema["format"]])], None
        if kind not in _SCALARS:
            raise Unsupported(f"{_spelled(path)} has type {kind!r}")
        if in_struct and self.learns(schema, path):
            return t.Any, _text(_kinds(schema, path)[1])
        return _SCALARS[kind], None

    def learns(self, schema: dict, path: Path) -> bool:
        """Whether ``path`` is a plain text field (noted as one that may loosen) and is loose."""
        if _kinds(schema, path)[0] != ["string"] or schema.get("format") in _FORMATS:
            return False
        self.text_fields[_spelled(path)] = path
        return path in self.loose


def _kinds(schema: t.Any, path: Path) -> tuple[list[str], bool]:
    """A schema's types besides null (none: any value), and whether it admits null."""
    if not isinstance(schema, dict):
        raise Unsupported(f"the schema of {_spelled(path)} is not an object")
    types = schema.get("type")
    if types is None:
        return [], True
    types = [types] if isinstance(types, str) else list(types)
    kinds = [kind for kind in types if kind != "null"]
    if len(kinds) != 1:
        raise Unsupported(f"{_spelled(path)} has types {types}")
    return kinds, "null" in types


def _text(nullable: bool) -> t.Callable[[t.Any], t.Any]:
    """A loose text field's value as the Conformer writes it (a misfit raises: the slow path)."""

    def fix(value: t.Any) -> t.Any:
        if value is None and not nullable:
            raise ValueError("null in a field that is not nullable")
        return value if type(value) is str or value is None else stringify(value)

    return fix


def _text_items(nullable: bool) -> t.Callable[[t.Any], t.Any]:
    fix = _text(nullable)
    return lambda values: [value if type(value) is str else fix(value) for value in values]


def _fix_fields(fixups: list[tuple[str, t.Callable[[t.Any], t.Any], bool]]) -> t.Callable[[t.Any], None]:
    """A struct's ``__post_init__``: its loose fields' values made text (msgspec reports a
    ValueError raised here as a ValidationError of the record)."""

    def post_init(self: t.Any) -> None:
        for name, fix, nullable in fixups:
            value = getattr(self, name)
            if type(value) is not str and value is not UNSET and not (value is None and nullable):
                setattr(self, name, fix(value))

    return post_init


class _Relationship(msgspec.Struct):
    data: t.Any = msgspec.UNSET


class TypedRecords:
    """Makes a stream's flat records from raw resources, custom fields typed while decoding.

    ``attributes`` are the schema's columns (an attribute the schema lacks sends the record
    down the slow path, which leaves it out and warns); ``field`` is the custom-field
    attribute, typed by ``custom`` (its object schema); ``defaults`` are columns set when
    Klaviyo leaves them out.

    ``for_writer``: the records go straight to the tap's writer (no stream maps), so their
    values are left in the forms msgspec writes fastest: each attribute its raw JSON
    (``Raw``, copied to the output as it came) except the ``decoded`` ones the stream reads
    (replication and sort keys), and the custom field the struct instance the typed decoder
    made. Decoding profiles' subscriptions and locations into dicts, and custom fields into
    structs then dicts, only to encode them again was a third of their CPU.
    :func:`plain_record` makes such a record plain.
    """

    def __init__(
        self,
        attributes: t.Iterable[str],
        field: str,
        custom: dict,
        defaults: dict | None = None,
        *,
        for_writer: bool = False,
        decoded: t.Iterable[str] = (),
    ) -> None:
        self.field, self.custom, self.for_writer = field, custom, for_writer
        self.unmapped = f"{field}_unmapped"
        self.loosened: list[Path] = []  # in the order learnt (for the log and tests)
        self.slow = 0  # records made by the slow path
        self._lock = threading.Lock()
        self._columns = [name for name in attributes if name != field]
        self._defaults = defaults or {}
        if for_writer:  # the resource with its attributes raw, then the custom field typed
            kept = {name: {} if name in decoded else _RAW for name in self._columns}
            columns = _Build(frozenset()).struct(kept, ("attributes",), self._defaults, raw_key=field)
            self._resources = _resource_decoder(columns)
        #: Where the typed decoder's error paths start: the resource, or the custom field.
        self._root: Path = ("attributes", field) if for_writer else ()
        self._decoder, self._text_fields = self._compile(frozenset())

    def _compile(self, loose: frozenset[Path]) -> tuple[msgspec.json.Decoder, dict[str, Path]]:
        """The typed decoder (of the custom field, or of the whole resource), and its text fields
        that may loosen."""
        build = _Build(loose)
        if self.for_writer:
            custom, _ = build.field(self.custom, self._root, in_struct=True)
            return msgspec.json.Decoder(custom), build.text_fields
        properties: dict[str, t.Any] = {name: {} for name in self._columns}
        properties[self.field] = self.custom
        return _resource_decoder(build.struct(properties, ("attributes",), self._defaults)), build.text_fields

    def record(self, raw: msgspec.Raw, fallback: t.Callable[[msgspec.Raw], dict]) -> dict:
        """The record of ``raw``: typed while decoded, else made by ``fallback``."""
        try:
            resource = self._resources.decode(raw) if self.for_writer else self._typed(raw)
        except msgspec.ValidationError:
            self.slow += 1
            return fallback(raw)
        record = {"id": resource.id}
        if resource.attributes is not None:
            values = msgspec.to_builtins(resource.attributes, builtin_types=(msgspec.Raw,))
            if self.for_writer and self.field in values:
                try:
                    values[self.field] = self._typed(values[self.field])
                except msgspec.ValidationError:
                    self.slow += 1
                    return fallback(raw)
            record.update(values)
        for name, relationship in (resource.relationships or {}).items():
            if relationship.data is not msgspec.UNSET:
                add_relationship(record, name, relationship.data)
        if self.field in record:
            record[self.unmapped] = None
        return record

    def _typed(self, data: msgspec.Raw) -> t.Any:
        """``data`` decoded by the typed decoder, learning loose fields on the way (or raising)."""
        decoder = self._decoder
        while True:
            try:
                return decoder.decode(data)
            except msgspec.ValidationError as exc:
                learnt = self._learn(decoder, str(exc))
                if learnt is None:
                    raise
                decoder = learnt

    def _learn(self, tried: msgspec.json.Decoder, message: str) -> msgspec.json.Decoder | None:
        """A decoder with the text field the message names made loose; None when none is to learn."""
        with self._lock:
            if self._decoder is not tried:  # another thread learnt meanwhile: try its decoder first
                return self._decoder
            match = _MISFIT.match(message)
            if match is None or "str" not in match["expected"].split(" | "):
                return None
            path = self._text_fields.get(_spelled(self._root) + re.sub(r"\[[0-9]+\]", "[]", match["path"]))
            if path is None or path in self.loosened:
                return None
            self.loosened.append(path)
            self._decoder, self._text_fields = self._compile(frozenset(self.loosened))
            return self._decoder


#: The schema of a column kept as raw JSON (see :meth:`_Build.kind`).
_RAW = {"x-raw": True}


def _resource_decoder(attributes: type) -> msgspec.json.Decoder:
    resource = msgspec.defstruct(
        "Resource",
        [
            ("id", str),
            ("attributes", attributes | None, None),
            ("relationships", dict[str, _Relationship] | None, None),
        ],
    )
    return msgspec.json.Decoder(resource)


def plain_record(record: dict) -> dict:
    """A record made ``for_writer`` with plain values (dicts, lists, text...), as the SDK's writer needs them."""
    if not any(type(value) is msgspec.Raw or isinstance(value, msgspec.Struct) for value in record.values()):
        return record
    return {name: _plain(value) for name, value in record.items()}


def _plain(value: t.Any) -> t.Any:
    if type(value) is msgspec.Raw:
        return msgspec.json.decode(value)
    return msgspec.to_builtins(value) if isinstance(value, msgspec.Struct) else value


def _spelled(path: Path) -> str:
    """A path as msgspec's errors spell it: ``.attributes.event_properties.Items[].ProductID``."""
    return "".join(part if part == "[]" else f".{part}" for part in path)
