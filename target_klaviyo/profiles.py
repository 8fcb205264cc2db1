"""Turn an input row into a Klaviyo profile, or say exactly why it cannot be one.

A row is a warehouse row: identifiers (``email``, ``phone_number``, ``external_id``, or a
Klaviyo ``profile_id``/``id``) plus whatever columns the query selected.
Klaviyo's standard profile fields become profile attributes, everything else a
custom property. Blank values (None, empty or whitespace-only strings) are not
sent at all, so an empty cell never overwrites what Klaviyo already holds (unless
``null_clears_properties``: then a null unsets that custom property). Nothing
here ever touches consent: a profile carries no ``subscriptions``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import re
import typing as t
from dataclasses import dataclass

from target_klaviyo.rejects import RowRejected, plain_number

#: Klaviyo's per-profile limit for bulk import (100 KB), counted in decimal bytes to stay clear of it.
MAX_PROFILE_BYTES = 100_000

TEXT_ATTRIBUTES = ("first_name", "last_name", "organization", "title", "locale", "image")
LOCATION_FIELDS = (
    "address1",
    "address2",
    "city",
    "country",
    "region",
    "zip",
    "timezone",
    "latitude",
    "longitude",
    "ip",
)
_COORDINATES = ("latitude", "longitude")
#: Profile identifiers Klaviyo matches on, and the columns that hold a Klaviyo profile id.
IDENTIFIERS = ("email", "phone_number", "external_id")
ID_COLUMNS = ("profile_id", "id")
#: Columns with a meaning of their own; every other column is a custom property.
RESERVED_COLUMNS = frozenset({*IDENTIFIERS, *ID_COLUMNS, "location", "properties", *TEXT_ATTRIBUTES, *LOCATION_FIELDS})

_EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
_PHONE_PUNCTUATION = re.compile(r"[\s\-.()]")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


@dataclass
class PreparedProfile:
    """A row that passed every check, ready for a bulk import job."""

    row: dict
    resource: dict
    size: int  # bytes of the resource as it will be encoded in the request

    @property
    def key(self) -> str:
        """What matches Klaviyo's import errors back to this row: its first identifier."""
        return identity_key(self.resource.get("attributes") or {}, self.resource.get("id"))


def identity_key(attributes: t.Mapping[str, t.Any], pid: t.Any = None) -> str:
    """``email:…``, ``phone_number:…``, ``external_id:…`` or ``id:…`` (lower case), or ''."""
    for column in IDENTIFIERS:
        value = attributes.get(column)
        if isinstance(value, str) and value.strip():
            return f"{column}:{value.strip().lower()}"
    return f"id:{pid}" if pid else ""


def is_blank(value: t.Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def check_email(value: t.Any) -> str:
    """The row's email, trimmed; rejected when missing or not shaped like an address."""
    if is_blank(value):
        raise RowRejected("missing email", "email is empty or missing")
    if not isinstance(value, str):
        raise RowRejected("invalid email", f"email must be text, not {type(value).__name__}")
    email = value.strip()
    if len(email) > 254 or not _EMAIL.match(email):
        raise RowRejected("invalid email", "email is not an email address")
    return email


def normalise_phone(value: t.Any) -> str:
    """E.164 (``+`` country code and number, at most 15 digits) after removing punctuation.

    Only spaces, dashes, dots and parentheses are removed: guessing a missing
    country code would attach the number to the wrong person.
    """
    if not isinstance(value, str):
        raise RowRejected("phone_number not E.164", "phone_number must be text starting with + and the country code")
    phone = _PHONE_PUNCTUATION.sub("", value)
    if not _E164.match(phone):
        raise RowRejected(
            "phone_number not E.164",
            "phone_number is not E.164: + then country code and number, 7 to 15 digits",
        )
    return phone


def json_safe(value: t.Any, column: str) -> t.Any:
    """The value as plain JSON (Decimal to number, dates to ISO text); rejected when impossible."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, (float, decimal.Decimal)):
        finite = math.isfinite(value) if isinstance(value, float) else value.is_finite()
        if not finite:
            raise RowRejected("value not JSON", f"{column} is NaN or infinite, which JSON cannot carry")
        return value if isinstance(value, float) else plain_number(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): json_safe(v, f"{column}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, f"{column}[{i}]") for i, v in enumerate(value)]
    raise RowRejected("value not JSON", f"{column} holds a {type(value).__name__}, which JSON cannot carry")


def _text(value: t.Any, column: str) -> str:
    """Klaviyo's standard fields are strings: numbers become text, objects are refused."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool):
        return str(json_safe(value, column))
    raise RowRejected(f"{column} not text", f"{column} must be text, not {type(value).__name__}")


def _location(row: t.Mapping[str, t.Any]) -> dict:
    """A nested ``location`` object and flat address columns, the flat columns winning."""
    nested = row.get("location")
    if is_blank(nested):
        nested = {}
    if not isinstance(nested, dict):
        fields = ", ".join(LOCATION_FIELDS)
        raise RowRejected("location not an object", f"location must be an object with fields {fields}")
    unknown = sorted(set(nested) - set(LOCATION_FIELDS))
    if unknown:
        raise RowRejected(
            "unknown location field",
            f"location.{unknown[0]} is not a Klaviyo location field ({', '.join(LOCATION_FIELDS)})",
        )
    merged = {**nested, **{k: row[k] for k in LOCATION_FIELDS if k in row}}
    location = {}
    for key, value in merged.items():
        if is_blank(value):
            continue
        coordinate = key in _COORDINATES and not isinstance(value, (str, bool))
        location[key] = json_safe(value, f"location.{key}") if coordinate else _text(value, f"location.{key}")
    return location


@dataclass(frozen=True)
class ColumnRules:
    """Which columns may become custom properties, and what a null in one of them means.

    ``property_columns`` None: every column that is not a Klaviyo attribute or an
    identifier. ``null_clears``:
    a null (not an empty string) in a property column removes that property in Klaviyo
    (``meta.patch_properties.unset``); by default a null leaves it as it is.
    """

    property_columns: frozenset[str] | None = None
    null_clears: bool = False

    def is_property(self, column: str) -> bool:
        if column in RESERVED_COLUMNS or column.startswith("_sdc_"):
            return False
        return self.property_columns is None or column in self.property_columns


DEFAULT_RULES = ColumnRules()


def _properties(row: t.Mapping[str, t.Any], rules: ColumnRules = DEFAULT_RULES) -> dict:
    """Every other column (Singer ``_sdc_*`` metadata dropped); a ``properties`` object is merged in."""
    nested = row.get("properties")
    properties: dict = {}
    if isinstance(nested, dict):
        properties.update({str(k): v for k, v in nested.items()})
    elif not is_blank(nested):
        properties["properties"] = nested
    for column, value in row.items():
        if rules.is_property(column):
            properties[column] = value
    return {k: json_safe(v, k) for k, v in properties.items() if not is_blank(v)}


def cleared_properties(row: t.Mapping[str, t.Any], rules: ColumnRules) -> list[str]:
    """Property columns holding a null, when ``null_clears`` is on: Klaviyo unsets them."""
    if not rules.null_clears:
        return []
    return [column for column, value in row.items() if value is None and rules.is_property(column)]


def profile_id(row: t.Mapping[str, t.Any]) -> str | None:
    """The Klaviyo profile id of a ``profile_id`` (or ``id``) column: identity, never a property."""
    for column in ID_COLUMNS:
        value = row.get(column)
        if not is_blank(value):
            if not isinstance(value, (str, int)) or isinstance(value, bool):
                raise RowRejected(f"invalid {column}", f"{column} must be text, not {type(value).__name__}")
            return str(value).strip()
    return None


def identifiers(row: t.Mapping[str, t.Any], allowed: t.Sequence[str] = IDENTIFIERS) -> dict[str, str]:
    """The row's profile identifiers among ``allowed`` (email, phone_number, external_id), checked.

    A row without any is rejected, naming the identifier columns it could have used.
    """
    found: dict[str, str] = {}
    if "email" in allowed and not is_blank(row.get("email")):
        found["email"] = check_email(row["email"])
    if "phone_number" in allowed and not is_blank(row.get("phone_number")):
        found["phone_number"] = normalise_phone(row["phone_number"])
    if "external_id" in allowed and not is_blank(row.get("external_id")):
        found["external_id"] = _text(row["external_id"], "external_id")
    return found


def missing_identifier(row: t.Mapping[str, t.Any], allowed: t.Sequence[str]) -> RowRejected:
    """Why a row has no identifier, naming the identifier columns the row has (email when none)."""
    present = [column for column in allowed if column in row] or [allowed[0]]
    if len(present) == 1:
        return RowRejected(f"missing {present[0]}", f"{present[0]} is empty or missing")
    return RowRejected("missing identifier", f"{', '.join(present)} are all empty or missing")


def standard_attributes(row: t.Mapping[str, t.Any]) -> dict:
    """Klaviyo's standard text attributes and the location, from columns of those names."""
    attributes: dict[str, t.Any] = {}
    for column in TEXT_ATTRIBUTES:
        if not is_blank(row.get(column)):
            attributes[column] = _text(row[column], column)
    location = _location(row)
    if location:
        attributes["location"] = location
    return attributes


def profile_attributes(row: t.Mapping[str, t.Any], rules: ColumnRules = DEFAULT_RULES) -> dict:
    """The ``attributes`` of a profile upsert for this row (at least one identifier, or a profile id)."""
    attributes: dict[str, t.Any] = identifiers(row)
    if not attributes and profile_id(row) is None:
        raise missing_identifier(row, (*IDENTIFIERS, *ID_COLUMNS))
    attributes.update(standard_attributes(row))
    properties = _properties(row, rules)
    if properties:
        attributes["properties"] = properties
    return attributes


def prepare_profile(row: dict, rules: ColumnRules = DEFAULT_RULES) -> PreparedProfile:
    """Check a row and build its profile resource; raises RowRejected with the reason."""
    resource: dict[str, t.Any] = {"type": "profile", "attributes": profile_attributes(row, rules)}
    pid = profile_id(row)
    if pid is not None:
        resource["id"] = pid
    cleared = cleared_properties(row, rules)
    if cleared:
        resource["meta"] = {"patch_properties": {"unset": cleared}}
    size = encoded_size(resource)
    if size > MAX_PROFILE_BYTES:
        raise RowRejected(
            "profile over 100 KB",
            f"profile is {size} bytes once encoded; Klaviyo accepts at most 100 KB per profile",
        )
    return PreparedProfile(row=row, resource=resource, size=size)


def encoded_size(document: t.Any) -> int:
    """Bytes of ``document`` encoded the way ``requests`` encodes a ``json=`` body."""
    return len(json.dumps(document, allow_nan=False).encode("utf-8"))
