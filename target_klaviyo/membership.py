"""List membership by profile id: look ids up by email, remove ids from a list.

Removal is Klaviyo's list relationship endpoint, which changes membership only:
consent and subscriptions stay as they are (an unsubscribe job would unsubscribe
people globally, which is never what "take them off this list" means).
"""

from __future__ import annotations

import typing as t
from concurrent.futures import Executor

from klaviyo_core.errors import KlaviyoAPIError, KlaviyoError
from klaviyo_core.filters import condition
from target_klaviyo.privacy import redact

if t.TYPE_CHECKING:
    import logging

    from klaviyo_core.client import KlaviyoConnection

#: ``any(email,[...])`` with 100 values fills exactly one page of ``get_profiles``.
EMAILS_PER_LOOKUP = 100
#: ``remove_profiles_from_list`` accepts at most 1,000 profiles a call.
IDS_PER_REMOVAL = 1_000


def find_profile_ids(
    connection: KlaviyoConnection, emails: t.Sequence[str], executor: Executor | None = None
) -> dict[str, list[str]]:
    """Profile ids by lower-cased email, for the emails that have a profile.

    Emails are compared case-insensitively: ``Ann@Example.com`` in the warehouse is
    the same person as ``ann@example.com`` in Klaviyo. With an ``executor`` the look-ups
    (100 emails each) run concurrently, paced by the connection's limiter for get_profiles.
    """
    distinct = list(dict.fromkeys(emails))
    chunks = [distinct[start : start + EMAILS_PER_LOOKUP] for start in range(0, len(distinct), EMAILS_PER_LOOKUP)]
    found: dict[str, list[str]] = {}
    mapped = executor.map if executor is not None and len(chunks) > 1 else map
    for profiles in mapped(lambda chunk: _look_up(connection, chunk), chunks):  # answers in the emails' order
        for profile in profiles:
            email = (profile.get("attributes") or {}).get("email")
            if isinstance(email, str):
                ids = found.setdefault(email.strip().lower(), [])
                if profile["id"] not in ids:
                    ids.append(profile["id"])
    return found


def _look_up(connection: KlaviyoConnection, emails: list[str]) -> list[dict]:
    params = {"filter": condition("any", "email", emails), "fields[profile]": "email", "page[size]": EMAILS_PER_LOOKUP}
    try:
        return list(connection.paginate("/api/profiles", params))
    except KlaviyoError as exc:  # its text may quote the URL, and so the emails
        raise KlaviyoError(redact(str(exc))) from None


def remove_from_list(
    connection: KlaviyoConnection,
    list_id: str,
    profile_ids: t.Iterable[str],
    logger: logging.Logger,
    executor: Executor | None = None,
) -> dict[str, str]:
    """Remove the profiles from the list, 1,000 a request; returns the ids Klaviyo refused, with why.

    With an ``executor`` the requests run concurrently, paced by the connection's limiter
    for remove_profiles_from_list (removal is idempotent: the order between them is free).
    All of them have been answered when this returns.
    """
    distinct = list(dict.fromkeys(profile_ids))
    path = f"/api/lists/{list_id}/relationships/profiles"
    chunks = [distinct[start : start + IDS_PER_REMOVAL] for start in range(0, len(distinct), IDS_PER_REMOVAL)]
    refused: dict[str, str] = {}
    mapped = executor.map if executor is not None and len(chunks) > 1 else map
    for refused_in_chunk in mapped(lambda chunk: _removed(connection, path, chunk, logger), chunks):
        refused.update(refused_in_chunk)
    if distinct:
        logger.info("Removed %d profiles from Klaviyo list %s", len(distinct) - len(refused), list_id)
    return refused


def _removed(connection: KlaviyoConnection, path: str, ids: list[str], logger: logging.Logger) -> dict[str, str]:
    """One chunk's removal; the ids Klaviyo refused, with why."""
    refused: dict[str, str] = {}
    _remove(connection, path, ids, refused, logger)
    return refused


def _remove(
    connection: KlaviyoConnection, path: str, ids: list[str], refused: dict[str, str], logger: logging.Logger
) -> None:
    """One removal call; on a 400, halve the ids until the refused ones are found.

    Klaviyo refuses the whole call when one id is unknown (a deleted profile, a
    typo in the warehouse) and applies none of it. Halving finds the bad ids in a
    few extra calls, so one stale row is reported instead of failing every rerun.
    """
    body = {"data": [{"type": "profile", "id": pid} for pid in ids]}
    try:
        connection.request("DELETE", path, json=body)
    except KlaviyoAPIError as exc:
        if exc.status != 400:
            raise
        if len(ids) == 1:
            refused[ids[0]] = str(exc)
            return
        logger.warning("Klaviyo refused a removal of %d profiles (400); retrying in halves to find why", len(ids))
        middle = len(ids) // 2
        _remove(connection, path, ids[:middle], refused, logger)
        _remove(connection, path, ids[middle:], refused, logger)
