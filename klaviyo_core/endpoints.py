"""Klaviyo's operations as the official spec describes them: paths, limits, page sizes.

``endpoints.json`` is generated from the spec by ``scripts/generate_from_spec.py``.
"""

from __future__ import annotations

import json
import re
import typing as t
from dataclasses import dataclass
from functools import cache
from importlib import resources

# Secondary limits the spec states only in operation descriptions: asking for
# predictive analytics moves profile reads to a much smaller quota.
_PREDICTIVE = ("predictive_analytics", 10, 150)
SECONDARY_LIMITS: dict[str, tuple[str, int, int]] = {
    "get_profiles": _PREDICTIVE,
    "get_profiles_for_list": _PREDICTIVE,
    "get_profiles_for_segment": _PREDICTIVE,
    "get_profile": _PREDICTIVE,
}


@dataclass(frozen=True)
class Endpoint:
    operation_id: str
    method: str
    path: str
    burst_per_second: int
    steady_per_minute: int
    daily: int | None = None
    page_size_default: int | None = None
    page_size_max: int | None = None
    scopes: tuple[str, ...] = ()

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(self.path)) + "/?$")

    def limits_for(self, query: str) -> tuple[str, int, int]:
        """(limiter name, burst, steady) for a request with this query string."""
        secondary = SECONDARY_LIMITS.get(self.operation_id)
        if secondary and secondary[0] in query:
            return f"{self.operation_id}+{secondary[0]}", secondary[1], secondary[2]
        return self.operation_id, self.burst_per_second, self.steady_per_minute


@cache
def endpoints() -> dict[str, Endpoint]:
    """Every operation the project uses, keyed by operationId."""
    raw = json.loads(resources.files(__package__).joinpath("endpoints.json").read_text())
    return {
        op: Endpoint(operation_id=op, **{**fields, "scopes": tuple(fields.get("scopes", ()))})
        for op, fields in raw.items()
    }


@cache
def _routes() -> list[tuple[str, re.Pattern[str], Endpoint]]:
    # Literal paths before templated ones, so /api/lists wins over /api/lists/{id}.
    ordered = sorted(endpoints().values(), key=lambda e: (e.path.count("{"), -len(e.path)))
    return [(e.method, e.pattern, e) for e in ordered]


def match(method: str, path: str) -> Endpoint | None:
    """The operation serving ``method path`` (path without query), or None."""
    method = method.upper()
    for route_method, pattern, endpoint in _routes():
        if route_method == method and pattern.match(path):
            return endpoint
    return None


def endpoint(operation_id: str) -> Endpoint:
    return endpoints()[operation_id]


def page_size_max(operation_id: str) -> int | None:
    return endpoint(operation_id).page_size_max


__all__: t.Sequence[str] = ("Endpoint", "endpoint", "endpoints", "match", "page_size_max")
