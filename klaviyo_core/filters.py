"""Build Klaviyo ``filter`` expressions with every value quoted and escaped.

Klaviyo's filter language is ``op(field,value)``, conditions joined by commas
(AND). Strings are quoted and escaped here, once, so an apostrophe in an email
or a quote in a list name can never break a request.
"""

from __future__ import annotations

import datetime as dt
import json
import typing as t

from klaviyo_core import dates

FilterValue = str | int | float | bool | dt.datetime | dt.date | t.Sequence[t.Any] | None


def literal(value: FilterValue) -> str:
    """One value in filter syntax: quoted string, ISO datetime, number, boolean or list."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return dates.as_utc(value).isoformat()  # naive datetimes are taken to be UTC
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # double quotes, backslash escapes
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(literal(v) for v in value) + "]"
    raise TypeError(f"cannot express {type(value).__name__} in a Klaviyo filter")


def condition(operator: str, field: str, value: FilterValue = None) -> str:
    """``operator(field,value)``; operators like ``has`` take no value."""
    if value is None:
        return f"{operator}({field})"
    return f"{operator}({field},{literal(value)})"


def combine(*conditions: str | None) -> str | None:
    """AND the given conditions (None ones are skipped); None when nothing is left."""
    kept = [c for c in conditions if c]
    return ",".join(kept) or None
