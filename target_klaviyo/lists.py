"""Find the Klaviyo list the run writes to: by id, or by exact name (created when missing).

Only ``operation: add`` creates a missing list: removing profiles from a list that
does not exist has nothing to do, and creating an empty list to do it would leave
a stray list behind (and hide a misspelt name).

Klaviyo list names are not unique and ``create_list`` is not idempotent, so a name
is always looked up first, a create is followed by a second lookup, and a create
whose answer was lost in transit is never blindly sent again.
"""

from __future__ import annotations

import time
import typing as t

from klaviyo_core.client import KlaviyoConnection
from klaviyo_core.errors import KlaviyoAPIError, KlaviyoError, json_document
from klaviyo_core.filters import condition

if t.TYPE_CHECKING:
    import logging

_CREATE_ATTEMPTS = 4


def resolve_list(connection: KlaviyoConnection, config: t.Mapping[str, t.Any], logger: logging.Logger) -> str:
    """The id of the configured list; raises KlaviyoError with the fix when there is none."""
    list_id = str(config.get("list_id") or "").strip()
    if list_id:
        return _check_list_id(connection, list_id, logger)
    name = str(config["list_name"])
    found = find_lists_by_name(connection, name)
    if not found:
        if (config.get("operation") or "add") == "remove":
            raise KlaviyoError(
                f"Setting list_name: no Klaviyo list is named {name!r}, so there is nothing to remove from "
                "(operation remove never creates a list). Fix the name (it must match exactly) or use list_id."
            )
        if not config.get("create_list_if_missing", True):
            raise KlaviyoError(
                f"Setting list_name: no Klaviyo list is named {name!r} and create_list_if_missing is off. "
                "Create the list in Klaviyo, fix the name (it must match exactly), or turn create_list_if_missing on."
            )
        found = _create_list(connection, config, name, logger)
    return _single(found, name, logger)


def _check_list_id(connection: KlaviyoConnection, list_id: str, logger: logging.Logger) -> str:
    try:
        document = connection.get(f"/api/lists/{list_id}", {"fields[list]": "name"})
    except KlaviyoAPIError as exc:
        if exc.status == 404:
            raise KlaviyoError(
                f"Setting list_id: Klaviyo has no list with id {list_id!r} (404). "
                "Copy the id from the list's URL in Klaviyo, or use list_name instead."
            ) from None
        raise
    name = ((document.get("data") or {}).get("attributes") or {}).get("name")
    logger.info("Writing to Klaviyo list %s (%r)", list_id, name)
    return list_id


def find_lists_by_name(connection: KlaviyoConnection, name: str) -> list[dict]:
    """Lists whose name is exactly ``name``, following every page."""
    params = {"filter": condition("equals", "name", [name]), "fields[list]": "name,created"}
    return [
        item for item in connection.paginate("/api/lists", params) if (item.get("attributes") or {}).get("name") == name
    ]


def _single(found: list[dict], name: str, logger: logging.Logger) -> str:
    if len(found) > 1:
        ids = ", ".join(sorted(item["id"] for item in found))
        raise KlaviyoError(
            f"Setting list_name: {len(found)} Klaviyo lists are named {name!r} (ids {ids}). "
            "Set list_id to the one to use, or rename the others."
        )
    logger.info("Writing to Klaviyo list %s (%r)", found[0]["id"], name)
    return found[0]["id"]


def _create_list(
    connection: KlaviyoConnection, config: t.Mapping[str, t.Any], name: str, logger: logging.Logger
) -> list[dict]:
    """Create the list, then look it up again to learn whether another run created one too.

    The POST goes through a connection that never retries by itself: if an answer
    is lost (timeout, 5xx) the list may exist anyway, so the name is looked up
    before the next attempt instead of risking a second list with the same name.
    """
    once = KlaviyoConnection(config, logger=connection.logger, auth=connection.auth, max_tries=1)
    body = {"data": {"type": "list", "attributes": {"name": name}}}
    attempt = 0
    while True:
        attempt += 1
        try:
            created = json_document(once.request("POST", "/api/lists", json=body))["data"]
            break
        except KlaviyoAPIError:
            raise  # Klaviyo answered no: another try would get the same answer
        except KlaviyoError as exc:
            if attempt >= _CREATE_ATTEMPTS:
                raise
            logger.warning("Creating the list failed (%s); checking whether it exists before retrying", exc)
            time.sleep(_retry_wait(exc, attempt))
            found = find_lists_by_name(connection, name)
            if found:
                return found
    logger.info("Created Klaviyo list %s (%r)", created["id"], name)
    return find_lists_by_name(connection, name) or [created]


def _retry_wait(exc: KlaviyoError, attempt: int) -> float:
    """Klaviyo's Retry-After when the failure was a 429, else 2, 4, 8 s."""
    retry_after = getattr(exc.__cause__, "retry_after", None)
    return float(retry_after) if retry_after is not None else float(2**attempt)
