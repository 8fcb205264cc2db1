"""Infer JSON Schemas for free-form custom fields and conform records to them.

Klaviyo profiles carry a free-form ``properties`` object and events a free-form
``event_properties`` object.  :class:`SchemaInferrer` scans those objects and
builds a Singer (JSON Schema draft 7) schema; :class:`Conformer` then fits each
record's values to that schema at sync time.

Type lattice (every field is nullable, so ``null`` is the bottom)::

    null < boolean | integer < number | date | date-time | object | array < string

Two observations of a field join to their least upper bound: equal kinds stay
(objects merge key-wise, arrays merge their item types), ``integer`` and
``number`` give ``number``, and any other pair gives ``string`` (objects and
arrays then travel JSON-encoded).  So ``date`` + ``date-time`` -> string,
``boolean`` + ``integer`` -> string.  ``bool`` is never an integer, a float is
always ``number`` (even ``3.0``), a ``Decimal`` is ``integer`` when it has no
fractional digits (``Decimal('3')``, not ``Decimal('3.0')``, which is what
singer-sdk makes of the JSON literal ``3.0``).  Non-finite numbers are strings.
The join is commutative and associative, so record order never changes the
schema.  A field seen only as null, and the items of an array only ever seen
empty, get ``{"type": ["string", "null"]}`` - the top type, which can hold any
value seen later.  Properties are emitted sorted by name.

Unmapped contract: :meth:`Conformer.__call__` returns ``(typed, unmapped)``.
``typed`` holds every value that fits its discovered type, coerced only
losslessly (int into number; any scalar into a string field as its string
form; objects/arrays JSON-encoded into string fields; integral Decimals into
integer fields as ``int``).  ``unmapped`` holds, under the original key (a
dotted path such as ``prefs.colour`` for nested keys), the untouched original
of every value whose field is unknown or whose value does not fit.  Arrays are
all-or-nothing: one misfitting element sends the whole array to ``unmapped``.
Nothing is dropped: if a dotted path collides with an existing unmapped key
(a key that itself contains dots), ``#2``, ``#3``... is appended.

Limits (protect loaders): see :data:`MAX_DEPTH` and :data:`MAX_FIELDS_PER_OBJECT`.
"""

from __future__ import annotations

import datetime
import functools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, cast

from typing_extensions import override

__all__ = [
    "MAX_DEPTH",
    "MAX_FIELDS_PER_OBJECT",
    "Conformer",
    "SchemaInferrer",
    "conform",
    "infer",
]

#: Nesting levels typed below the custom-field object (its own fields are
#: level 1).  An object or array sitting at this level would open a deeper one,
#: so it is typed ``string`` and conformed as JSON text.
MAX_DEPTH = 5

#: Fields kept per object (at every level).  When more names are seen, the
#: lexicographically smallest ones are kept (deterministic whatever the record
#: order); values of the others end up in ``unmapped`` at sync time.
MAX_FIELDS_PER_OBJECT = 1000

# Kinds of the lattice.
NULL, BOOLEAN, INTEGER, NUMBER = "null", "boolean", "integer", "number"
DATE, DATETIME, STRING, OBJECT, ARRAY = "date", "date-time", "string", "object", "array"

# The ranges of months, days, hours, minutes, seconds and offsets are in the patterns: only a
# day from the 29th on (and year 0) needs the calendar (a sync checks date-times by the
# thousand, a tenth of a profiles sync's CPU before).
_DATE_RE = re.compile(r"(\d{4})-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])\Z", re.ASCII)
# RFC 3339 only (``T``, seconds and an offset), the form JSON Schema's ``date-time``
# means: loaders validate typed columns strictly, so looser text stays a string.
_DATETIME_RE = re.compile(
    r"(\d{4})-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):[0-5]\d:(?:[0-5]\d|60)(?:\.\d+)?"
    r"(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)\Z",
    re.ASCII,
)


# --------------------------------------------------------------------------
# Classification of single values
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=8192)  # a sync checks the same days over and over
def _valid_date(y: str, m: str, d: str) -> bool:
    try:
        datetime.date(int(y), int(m), int(d))
    except ValueError:
        return False
    return True


def _real_day(m: re.Match) -> bool:
    """Whether a match's year, month and day (groups 1-3, in range already) name a calendar day."""
    y, mo, d = m.group(1, 2, 3)
    if d < "29" and y != "0000":
        return True
    return _valid_date(y, mo, d)


def _is_date(s: str) -> bool:
    """``YYYY-MM-DD`` naming a real calendar day."""
    m = _DATE_RE.match(s) if len(s) == 10 else None
    return m is not None and _real_day(m)


def _is_datetime(s: str) -> bool:
    """An RFC 3339 timestamp: date, ``T``, time with seconds, and ``Z`` or an offset."""
    if len(s) < 20 or s[4] != "-":
        return False
    m = _DATETIME_RE.match(s)
    return m is not None and _real_day(m)


def _string_kind(s: str) -> str:
    if len(s) == 10 and _is_date(s):
        return DATE
    return DATETIME if _is_datetime(s) else STRING


def _decimal_kind(d: Decimal) -> str:
    if not d.is_finite():
        return STRING
    return INTEGER if cast(int, d.as_tuple().exponent) >= 0 else NUMBER  # an int when finite


def _scalar_kind(value: Any) -> str:
    """Kind of a non-container value."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return INTEGER
    if isinstance(value, float):
        return NUMBER if math.isfinite(value) else STRING
    if isinstance(value, str):
        return _string_kind(value)
    if isinstance(value, Decimal):
        return _decimal_kind(value)
    if isinstance(value, datetime.datetime):
        return DATETIME
    if isinstance(value, datetime.date):
        return DATE
    return STRING


def _join(a: str, b: str) -> str:
    """Least upper bound of two kinds."""
    if a == b or b == NULL:
        return a
    if a == NULL:
        return b
    if {a, b} == {INTEGER, NUMBER}:
        return NUMBER
    return STRING


# --------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------


class _Node:
    """Inferred type of one field: a kind plus children for objects/arrays."""

    __slots__ = ("items", "kind", "max_key", "props")

    def __init__(self) -> None:
        self.kind = NULL
        self.props: dict[str, _Node] | None = None
        self.items: _Node | None = None  # None: no array element seen yet
        self.max_key: str | None = None  # cached largest key when at the cap


class SchemaInferrer:
    """Accumulate observations of custom-field objects; produce a JSON Schema."""

    def __init__(
        self,
        max_depth: int = MAX_DEPTH,
        max_fields: int = MAX_FIELDS_PER_OBJECT,
    ) -> None:
        self.max_depth = max_depth
        self.max_fields = max_fields
        self.records_seen = 0
        self._root = _Node()
        self._root.kind, self._root.props = OBJECT, {}

    def observe(self, obj: Mapping[str, Any] | None) -> None:
        """Record one custom-field object (``None`` counts as a record with no fields)."""
        if obj is not None and not isinstance(obj, Mapping):
            raise TypeError(f"expected a mapping or None, got {type(obj).__name__}")
        self.records_seen += 1
        if obj:
            self._observe_object(self._root, obj, 1)

    def schema(self) -> dict:
        """JSON Schema of everything observed so far (a fresh dict each call)."""
        return _node_schema(self._root)

    # -- internals ---------------------------------------------------------

    def _observe(self, node: _Node, value: Any, depth: int) -> None:
        if isinstance(value, (Mapping, list, tuple)):
            if depth >= self.max_depth:
                node.kind = _join(node.kind, STRING)
            elif isinstance(value, Mapping):
                self._observe_container(node, OBJECT, value, depth)
            else:
                self._observe_container(node, ARRAY, value, depth)
        else:
            node.kind = _join(node.kind, _scalar_kind(value))
        if node.kind == STRING:  # children are meaningless once widened
            node.props = node.items = node.max_key = None

    def _observe_container(self, node: _Node, kind: str, value: Any, depth: int) -> None:
        node.kind = _join(node.kind, kind)
        if node.kind != kind:
            return
        if kind == OBJECT:
            if node.props is None:
                node.props = {}
            self._observe_object(node, value, depth + 1)
            return
        for item in value:
            if node.items is None:
                node.items = _Node()
            self._observe(node.items, item, depth + 1)

    def _observe_object(self, node: _Node, obj: Mapping[str, Any], depth: int) -> None:
        props = cast("dict[str, _Node]", node.props)  # an object node has its dict
        for key, value in obj.items():
            child = props.get(key)
            if child is None:
                child = self._admit(node, key)
                if child is None:
                    continue
            self._observe(child, value, depth)

    def _admit(self, node: _Node, key: str) -> _Node | None:
        """New child for ``key``, keeping only the ``max_fields`` smallest names."""
        props = cast("dict[str, _Node]", node.props)
        if len(props) >= self.max_fields:
            if node.max_key is None:
                node.max_key = max(props) if props else None
            if node.max_key is None or key > node.max_key:
                return None
            del props[node.max_key]
            node.max_key = None
        child = props[key] = _Node()
        return child


_SCALAR_SCHEMAS: dict[str, dict] = {
    NULL: {"type": ["string", "null"]},
    BOOLEAN: {"type": ["boolean", "null"]},
    INTEGER: {"type": ["integer", "null"]},
    NUMBER: {"type": ["number", "null"]},
    DATE: {"type": ["string", "null"], "format": "date"},
    DATETIME: {"type": ["string", "null"], "format": "date-time"},
    STRING: {"type": ["string", "null"]},
}


def _node_schema(node: _Node | None) -> dict:
    if node is None:  # array never seen with elements
        node = _Node()
    if node.kind == OBJECT:
        children = cast("dict[str, _Node]", node.props)
        props = {k: _node_schema(children[k]) for k in sorted(children)}
        return {"type": ["object", "null"], "properties": props}
    if node.kind == ARRAY:
        return {"type": ["array", "null"], "items": _node_schema(node.items)}
    base = _SCALAR_SCHEMAS[node.kind]
    return {**base, "type": list(base["type"])}


def infer(records: Iterable[Mapping[str, Any] | None]) -> dict:
    """Schema of the custom-field objects in ``records``."""
    inferrer = SchemaInferrer()
    for obj in records:
        inferrer.observe(obj)
    return inferrer.schema()


# --------------------------------------------------------------------------
# Conforming
# --------------------------------------------------------------------------


class _Miss:
    @override
    def __repr__(self) -> str:
        return "MISS"


MISS: Any = _Miss()
"""Returned by converters when a value does not fit."""

_NONE = type(None)
_NOTHING: frozenset = frozenset()
# A converter maps (value, path, unmapped) to the typed value or MISS.
_Conv = Callable[[Any, str, dict], Any]
# A compiled field: (types passed through unchanged, converter for the rest).
_Field = tuple[frozenset, _Conv]


def _put(unmapped: dict, path: str, value: Any) -> None:
    """Store ``value`` under ``path`` without ever overwriting an entry."""
    if path in unmapped:
        n = 2
        while f"{path}#{n}" in unmapped:
            n += 1
        path = f"{path}#{n}"
    unmapped[path] = value


def _json_default(o: Any) -> Any:
    if isinstance(o, Decimal) and o.is_finite():
        if cast(int, o.as_tuple().exponent) >= 0:  # an int when finite
            return int(o)
        f = float(o)
        return f if Decimal(repr(f)) == o else str(o)
    if isinstance(o, (datetime.date, datetime.time)):
        return o.isoformat()
    return str(o)


def stringify(v: Any) -> str:
    """String form of a value for a string-typed field."""
    if isinstance(v, str):
        return v
    if type(v) is int:  # the usual misfit: a number in a text field (same text as json.dumps)
        return int.__repr__(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return json.dumps(v)
    if isinstance(v, (Mapping, list, tuple)):
        return json.dumps(v, default=_json_default, ensure_ascii=False)
    if isinstance(v, (datetime.date, datetime.time)):
        return v.isoformat()
    return str(v)


def _to_string(v, path, unmapped):
    return MISS if v is None else stringify(v)


def _to_boolean(v, path, unmapped):
    return v if isinstance(v, bool) else MISS


def _to_integer(v, path, unmapped):
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, Decimal) and _decimal_kind(v) == INTEGER:
        return int(v)
    return MISS


def _to_number(v, path, unmapped):
    if isinstance(v, bool):
        return MISS
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else MISS
    if isinstance(v, Decimal):
        return v if v.is_finite() else MISS
    return MISS


def _to_date(v, path, unmapped):
    if isinstance(v, str):
        return v if _is_date(v) else MISS
    if isinstance(v, datetime.date) and not isinstance(v, datetime.datetime):
        return v.isoformat()
    return MISS


def _to_datetime(v, path, unmapped):
    if isinstance(v, str):
        return v if _is_datetime(v) else MISS
    return v.isoformat() if isinstance(v, datetime.datetime) else MISS


def _to_any(v, path, unmapped):
    return v


class _ObjectConv:
    """Converter for an object schema: fits known keys, reports the rest."""

    __slots__ = ("fields", "passthrough")

    def __init__(self, fields: dict[str, _Field]) -> None:
        self.fields = fields
        #: Per key, the types kept as they are (most values): one look-up per key.
        self.passthrough = {key: field[0] for key, field in fields.items()}

    def run(self, obj: Mapping[str, Any], prefix: str, unmapped: dict) -> dict:
        typed = {}
        passthrough = self.passthrough
        for key, value in obj.items():
            if type(value) in passthrough.get(key, _NOTHING):
                typed[key] = value
                continue
            field = self.fields.get(key)
            out = MISS if field is None else field[1](value, prefix + key, unmapped)
            if out is MISS:
                _put(unmapped, prefix + key, value)
            else:
                typed[key] = out
        return typed

    def __call__(self, v, path, unmapped):
        if type(v) is not dict and not isinstance(v, Mapping):  # JSON objects are dicts: no ABC check
            return MISS
        return self.run(v, path + ".", unmapped)


class _ArrayConv:
    """Converter for an array schema: all elements fit, or the array misses."""

    __slots__ = ("item",)

    def __init__(self, item: _Field) -> None:
        self.item = item

    def __call__(self, v, path, unmapped):
        if not isinstance(v, (list, tuple)):
            return MISS
        passthrough, conv = self.item
        if passthrough:  # an array of scalars that all fit as they are: kept as is (a copy)
            for element in v:
                if type(element) not in passthrough:
                    break
            else:
                return list(v)
        scratch: dict = {}
        out = []
        for element in v:
            if type(element) in passthrough:
                out.append(element)
                continue
            fitted = conv(element, path, scratch)
            if fitted is MISS or scratch:
                return MISS
            out.append(fitted)
        return out


_SCALAR_CONVS: dict[str, tuple[frozenset, _Conv]] = {
    "string": (frozenset({str}), _to_string),
    "boolean": (frozenset({bool}), _to_boolean),
    "integer": (frozenset({int}), _to_integer),
    "number": (frozenset({int}), _to_number),
    "date": (frozenset(), _to_date),
    "date-time": (frozenset(), _to_datetime),
}


def _compile_one(schema: Mapping[str, Any], kind: str) -> tuple[frozenset, _Conv]:
    if kind == "object":
        props = schema.get("properties") or {}
        return frozenset(), _ObjectConv({k: _compile(s) for k, s in props.items()})
    if kind == "array":
        items = schema.get("items")
        return frozenset(), _ArrayConv(_compile(items if items is not None else {}))
    if kind == "string" and schema.get("format") in ("date", "date-time"):
        kind = schema["format"]
    if kind not in _SCALAR_CONVS:
        raise ValueError(f"unsupported schema type {kind!r}")
    return _SCALAR_CONVS[kind]


def _first_fit(convs: list[_Conv]) -> _Conv:
    def conv(v, path, unmapped):
        for c in convs:
            out = c(v, path, unmapped)
            if out is not MISS:
                return out
        return MISS

    return conv


def _compile(schema: Mapping[str, Any]) -> _Field:
    """Compile a (sub)schema into a ``(passthrough types, converter)`` pair."""
    types = schema.get("type")
    if types is None:
        return frozenset(), _to_any
    types = [types] if isinstance(types, str) else list(types)
    kinds = [t for t in types if t != "null"]
    kinds.sort(key=lambda t: t == "string")  # string absorbs all: try it last
    compiled = [_compile_one(schema, t) for t in kinds]
    fast = frozenset({_NONE}) if "null" in types else frozenset()
    if len(compiled) == 1:
        return fast | compiled[0][0], compiled[0][1]
    return fast, _first_fit([c for _, c in compiled])


class Conformer:
    """Precompiled fitter of custom-field objects to an inferred schema.

    ``Conformer(schema)(obj)`` returns ``(typed, unmapped)``; see the module
    docstring for the contract.  Compile once per schema, call per record.
    """

    def __init__(self, schema: Mapping[str, Any]) -> None:
        types = schema.get("type")
        if types != "object" and "object" not in (types or ()):
            raise ValueError("the root schema must be of type object")
        _, root = _compile_one(schema, "object")
        self._root = cast("_ObjectConv", root)

    def __call__(self, obj: Mapping[str, Any] | None) -> tuple[dict | None, dict]:
        if obj is None:
            return None, {}
        unmapped: dict = {}
        return self._root.run(obj, "", unmapped), unmapped


def conform(obj: Mapping[str, Any] | None, schema: Mapping[str, Any]) -> tuple[dict | None, dict]:
    """One-off ``Conformer(schema)(obj)``; build a :class:`Conformer` for many records."""
    return Conformer(schema)(obj)
