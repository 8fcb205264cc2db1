"""Turn an input row into a Klaviyo profile, or say exactly why it cannot be one.

A row is a warehouse row: ``email`` plus whatever columns the query selected.
Klaviyo's standard profile fields become profile attributes, everything else a
custom property. Blank values (None, empty or whitespace-only strings) are not
sent at all, so an empty cell never overwrites what Klaviyo already holds. Nothing
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
    "address1", "address2", "city", "country", "region", "zip", "timezone", "latitude", "longitude", "ip",
)
_COORDINATES = ("latitude", "longitude")
#: Columns with a meaning of their own; every other column is a custom property.
RESERVED_COLUMNS = frozenset(
    {"email", "phone_number", "external_id", "location", "properties", *TEXT_ATTRIBUTES, *LOCATION_FIELDS}
)

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
    def email(self) -> str:
        return self.resource["attributes"]["email"]


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


def _properties(row: t.Mapping[str, t.Any]) -> dict:
    """Every other column (Singer ``_sdc_*`` metadata dropped); a ``properties`` object is merged in."""
    nested = row.get("properties")
    properties: dict = {}
    if isinstance(nested, dict):
        properties.update({str(k): v for k, v in nested.items()})
    elif not is_blank(nested):
        properties["properties"] = nested
    for column, value in row.items():
        if column not in RESERVED_COLUMNS and not column.startswith("_sdc_"):
            properties[column] = value
    return {k: json_safe(v, k) for k, v in properties.items() if not is_blank(v)}


def profile_attributes(row: t.Mapping[str, t.Any]) -> dict:
    """The ``attributes`` of a profile upsert for this row."""
    attributes: dict[str, t.Any] = {"email": check_email(row.get("email"))}
    if not is_blank(row.get("phone_number")):
        attributes["phone_number"] = normalise_phone(row["phone_number"])
    if not is_blank(row.get("external_id")):
        attributes["external_id"] = _text(row["external_id"], "external_id")
    for column in TEXT_ATTRIBUTES:
        if not is_blank(row.get(column)):
            attributes[column] = _text(row[column], column)
    location = _location(row)
    if location:
        attributes["location"] = location
    properties = _properties(row)
    if properties:
        attributes["properties"] = properties
    return attributes


def prepare_profile(row: dict) -> PreparedProfile:
    """Check a row and build its profile resource; raises RowRejected with the reason."""
    resource = {"type": "profile", "attributes": profile_attributes(row)}
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
