"""List membership by profile id: look ids up by email, remove ids from a list.

Removal is Klaviyo's list relationship endpoint, which changes membership only:
consent and subscriptions stay as they are (an unsubscribe job would unsubscribe
people globally, which is never what "take them off this list" means).
"""

from __future__ import annotations

import typing as t

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


def find_profile_ids(connection: KlaviyoConnection, emails: t.Sequence[str]) -> dict[str, list[str]]:
    """Profile ids by lower-cased email, for the emails that have a profile.

    Emails are compared case-insensitively: ``Ann@Example.com`` in the warehouse is
    the same person as ``ann@example.com`` in Klaviyo.
    """
    distinct = list(dict.fromkeys(emails))
    found: dict[str, list[str]] = {}
    for start in range(0, len(distinct), EMAILS_PER_LOOKUP):
        batch = distinct[start : start + EMAILS_PER_LOOKUP]
        params = {
            "filter": condition("any", "email", batch),
            "fields[profile]": "email",
            "page[size]": EMAILS_PER_LOOKUP,
        }
        try:
            profiles = list(connection.paginate("/api/profiles", params))
        except KlaviyoError as exc:  # its text may quote the URL, and so the emails
            raise KlaviyoError(redact(str(exc))) from None
        for profile in profiles:
            email = (profile.get("attributes") or {}).get("email")
            if isinstance(email, str):
                ids = found.setdefault(email.strip().lower(), [])
                if profile["id"] not in ids:
                    ids.append(profile["id"])
    return found


def remove_from_list(
    connection: KlaviyoConnection, list_id: str, profile_ids: t.Iterable[str], logger: logging.Logger
) -> dict[str, str]:
    """Remove the profiles from the list, 1,000 a request; returns the ids Klaviyo refused, with why."""
    distinct = list(dict.fromkeys(profile_ids))
    path = f"/api/lists/{list_id}/relationships/profiles"
    refused: dict[str, str] = {}
    for start in range(0, len(distinct), IDS_PER_REMOVAL):
        _remove(connection, path, distinct[start : start + IDS_PER_REMOVAL], refused, logger)
    if distinct:
        logger.info("Removed %d profiles from Klaviyo list %s", len(distinct) - len(refused), list_id)
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
