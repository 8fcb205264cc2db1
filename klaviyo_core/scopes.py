"""Which scopes the credentials hold, learned before a run reads or changes anything.

Klaviyo has no endpoint that lists a private key's scopes, so each scope is probed
with the cheapest request that needs it and nothing else: a one-item page for read
scopes, and for write scopes a request whose body is deliberately incomplete, so
Klaviyo answers 403 when the scope is missing and 400 (having changed nothing) when
it is granted. Klaviyo checks permissions before it validates a body; should an
answer ever be a 400 despite a missing scope, the write itself still fails with the
403 message naming the scope, as it did before these checks.
"""

from __future__ import annotations

import typing as t
from concurrent.futures import ThreadPoolExecutor

from klaviyo_core import endpoints
from klaviyo_core.errors import KlaviyoAPIError, KlaviyoError

if t.TYPE_CHECKING:
    from klaviyo_core.client import KlaviyoConnection

#: scope -> (method, path, params, body): a request needing that scope only. Every read
#: probe asks for one item (``page[size]=1``, or a sparse fieldset where there are no pages).
_READ_PROBES: dict[str, tuple[str, str, dict[str, t.Any], t.Any]] = {
    "accounts:read": ("GET", "/api/accounts", {}, None),
    "campaigns:read": ("GET", "/api/campaigns", {"filter": "equals(messages.channel,'email')", "page[size]": 1}, None),
    "events:read": ("GET", "/api/events", {"page[size]": 1}, None),
    "flows:read": ("GET", "/api/flows", {"page[size]": 1}, None),
    "lists:read": ("GET", "/api/lists", {"page[size]": 1}, None),
    "metrics:read": ("GET", "/api/metrics", {"fields[metric]": "name"}, None),  # takes no page[size]
    "profiles:read": ("GET", "/api/profiles", {"page[size]": 1}, None),
    "reviews:read": ("GET", "/api/reviews", {"page[size]": 1}, None),
    "segments:read": ("GET", "/api/segments", {"page[size]": 1}, None),
    # the content streams' scopes: each probed like the core ones, so that a key without
    # one leaves its streams out of discovery instead of failing them mid-sync
    "catalogs:read": ("GET", "/api/catalog-categories", {"page[size]": 1}, None),
    # Klaviyo requires a coupon filter here; a coupon that does not exist gives an empty page
    "coupon-codes:read": (
        "GET",
        "/api/coupon-codes",
        {"filter": "equals(coupon.id,'scope-probe')", "page[size]": 1},
        None,
    ),
    "coupons:read": ("GET", "/api/coupons", {"page[size]": 1}, None),
    "forms:read": ("GET", "/api/forms", {"page[size]": 1}, None),
    "images:read": ("GET", "/api/images", {"page[size]": 1}, None),
    "tags:read": ("GET", "/api/tags", {"page[size]": 1}, None),
    "templates:read": ("GET", "/api/templates", {"page[size]": 1}, None),
}
#: Write probes: incomplete bodies (no name, no profiles) that Klaviyo refuses with 400.
_WRITE_PROBES: dict[str, tuple[str, str, dict[str, t.Any], t.Any]] = {
    "lists:write": ("POST", "/api/lists", {}, {"data": {"type": "list", "attributes": {}}}),
    # needs lists:write too: lists:write is probed first and known by then
    "profiles:write": (
        "POST",
        "/api/profile-bulk-import-jobs",
        {},
        {"data": {"type": "profile-bulk-import-job", "attributes": {"profiles": {"data": []}}}},
    ),
}
_PROBE_OPERATIONS = {"lists:write": "create_list", "profiles:write": "bulk_import_profiles"}


def scopes_of(operation_ids: t.Iterable[str]) -> list[str]:
    """The scopes these operations need, in a stable order."""
    return sorted({scope for op in operation_ids for scope in endpoints.endpoint(op).scopes})


#: Probes sent at once: each is one request to a different endpoint (own limiters).
PROBE_WORKERS = 8


def probe_scopes(connection: KlaviyoConnection, scopes: t.Iterable[str]) -> dict[str, bool | None]:
    """``{scope: granted}`` for each scope, reads before writes.

    None: could not be told (its probe also needs a scope found missing). Scopes
    without a probe are assumed granted. The probes are sent concurrently (they do not
    depend on one another); their answers are read in order, as a 403 of a probe needing
    two scopes is blamed on this one only when the other one is granted.
    """
    wanted = sorted(set(scopes), key=lambda scope: (scope.endswith(":write"), scope))
    probes = {scope: probe for scope in wanted if (probe := _READ_PROBES.get(scope) or _WRITE_PROBES.get(scope))}
    sent = list(probes)
    with ThreadPoolExecutor(max(1, min(PROBE_WORKERS, len(sent))), thread_name_prefix="scope-probe") as pool:
        refused = dict(zip(sent, pool.map(lambda scope: _refused(connection, probes[scope]), sent)))
    found: dict[str, bool | None] = {}
    for scope in wanted:
        if not refused.get(scope):
            found[scope] = True
        else:
            # A probe needing two scopes: blame this one only when the other is granted.
            others = [other for other in _needs(scope) if other != scope]
            found[scope] = False if all(found.get(other, True) for other in others) else None
    return found


def _refused(connection: KlaviyoConnection, probe: tuple[str, str, dict[str, t.Any], t.Any]) -> bool:
    """Whether Klaviyo answered the probe 403 (any other error is raised)."""
    method, path, params, body = probe
    try:
        connection.request(method, path, params=params or None, json=body)
    except KlaviyoAPIError as exc:
        if exc.status == 403:
            return True
        if exc.status in (400, 404, 405, 409, 422):
            return False  # refused for its content: the scope itself is granted
        raise
    return False


def _needs(scope: str) -> tuple[str, ...]:
    operation = _PROBE_OPERATIONS.get(scope)
    return endpoints.endpoint(operation).scopes if operation else (scope,)


def missing_scopes_error(missing: t.Mapping[str, t.Sequence[str]], fix: str) -> KlaviyoError:
    """One line naming every missing scope and what needs it.

    ``missing`` maps each missing scope to the streams (or operations) that need it.
    """
    parts = [f"{scope} (for {', '.join(users)})" for scope, users in sorted(missing.items())]
    count = f"{len(missing)} scope{'s' if len(missing) != 1 else ''}"
    return KlaviyoError(
        f"The credentials lack {count}: {'; '.join(parts)}. Grant {'them' if len(missing) > 1 else 'it'} "
        f"to the private key (or OAuth app){fix}."
    )
