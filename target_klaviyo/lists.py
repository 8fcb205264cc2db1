"""Find the Klaviyo list the run writes to: by id, or by exact name (created when missing).

Only ``operation: add`` creates a missing list: removing profiles from a list that
does not exist has nothing to do, and creating an empty list to do it would leave
a stray list behind (and hide a misspelt name).

Klaviyo list names are not unique and ``create_list`` is not idempotent, so a name
is always looked up first, a create is followed by a second lookup, and a create
whose answer was lost in transit is never blindly sent again.

Runs that start together with the same new name must still end with one list:

* On one machine, finding and creating happen under a lock file (one per account
  and name, in the system's temporary folder), so the second run finds the list
  the first one created.
* Across machines (no shared lock), each run that created a list looks the name up
  again; when several lists have it, every run converges on the oldest (earliest
  ``created``, then lowest id: the same choice everywhere) and deletes the list it
  created itself if that is not the one, before any member is added to it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
import typing as t
from pathlib import Path

from klaviyo_core import endpoints
from klaviyo_core.client import KlaviyoConnection
from klaviyo_core.errors import KlaviyoAPIError, KlaviyoError, json_document
from klaviyo_core.filters import condition
from klaviyo_core.scopes import missing_scopes_error, probe_scopes
from target_klaviyo.operations import OPERATIONS

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no same-machine lock, the cross-machine rule still holds
    fcntl = None  # type: ignore[assignment]

if t.TYPE_CHECKING:
    import logging

_CREATE_ATTEMPTS = 4
#: Seconds between creating a list and looking for lists of the same name made elsewhere
#: (more than the one-second resolution of ``created``).
CONVERGE_DELAY = 2.0


#: What the target's requests need, and which of them (for the message).
_NEEDS = {
    "lists:read": "finding the list and following import jobs",
    "lists:write": "creating the list and changing its members",
    "profiles:read": "following import jobs and looking up emails to remove",
    "profiles:write": "importing profiles and changing list members",
}


def write_scopes_for(operation: str) -> dict[str, str]:
    """``{scope: what needs it}`` for a target operation: list membership needs the four above;
    the others need the scopes the spec gives their Klaviyo operation (probed where a probe exists)."""
    if operation in ("add", "remove"):
        return _NEEDS
    operation_id = OPERATIONS[operation].operation_id if operation in OPERATIONS else "bulk_import_profiles"
    return dict.fromkeys(endpoints.endpoint(operation_id).scopes, f"operation {operation}")


def check_write_scopes(connection: KlaviyoConnection, needs: t.Mapping[str, str] = _NEEDS) -> None:
    """Raise one line naming every scope the run needs and lacks, before anything changes."""
    granted = probe_scopes(connection, needs)
    missing = {scope: [needs[scope]] for scope, ok in granted.items() if ok is False}
    if missing:
        for scope, ok in granted.items():  # probed through a write that also needs a missing scope
            if ok is None:
                missing[scope] = [needs[scope] + "; could not be checked while the others are missing"]
        raise missing_scopes_error(missing, "; nothing was changed")


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
        with _name_lock(connection, config, name):
            found = find_lists_by_name(connection, name)  # another run may have created it meanwhile
            if not found:
                found = _create_list(connection, config, name, logger)
    return _single(found, name, logger)


@contextlib.contextmanager
def _name_lock(connection: KlaviyoConnection, config: t.Mapping[str, t.Any], name: str) -> t.Iterator[None]:
    """Hold an exclusive lock, per account and list name, among the runs on this machine.

    The file's name is a hash: neither the credential nor the list name can be read from it.
    """
    if fcntl is None:
        yield
        return
    account = str(config.get("api_key") or config.get("client_id") or "")
    digest = hashlib.sha256(f"{connection.base_url}\n{account}\n{name}".encode()).hexdigest()[:32]
    folder = Path(tempfile.gettempdir()) / "klaviyo-singer-locks"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        descriptor = os.open(folder / f"list-{digest}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:  # e.g. the folder belongs to another user: the cross-machine rule still holds
        yield
        return
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)  # released by the OS if the run is killed
        yield
    finally:
        os.close(descriptor)


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
    once = KlaviyoConnection(
        config, logger=connection.logger, auth=connection.auth, max_tries=1, limiters=connection.limiters
    )  # the run's limiters: list creation counts against the same account limit
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
    return _converge(connection, name, created, logger)


def _converge(connection: KlaviyoConnection, name: str, created: dict, logger: logging.Logger) -> list[dict]:
    """After creating: if another run (elsewhere) created a list with this name too, keep the oldest.

    Every run makes the same choice, and each deletes only the list it created itself
    (still empty: no member has been added yet), so together they leave one list. The
    look-up waits ``CONVERGE_DELAY`` first: ``created`` has whole seconds, so a list
    created later than that can only be newer than this one, and its own run will see
    this one and delete its own.
    """
    time.sleep(CONVERGE_DELAY)
    found = find_lists_by_name(connection, name) or [created]
    if len(found) < 2 or not any(item["id"] == created["id"] for item in found):
        return found
    keep = min(found, key=_age)
    if keep["id"] == created["id"]:
        return [keep]  # the others delete theirs; the lists this run did not create are not its to delete
    logger.warning(
        "Another run created a list named %r at the same time (%s); using it and deleting the one this run "
        "created (%s)",
        name,
        keep["id"],
        created["id"],
    )
    connection.request("DELETE", f"/api/lists/{created['id']}")
    return [keep]


def _age(item: dict) -> tuple[str, str]:
    """Sort key: earliest ``created`` (Klaviyo's RFC 3339 text in UTC sorts as time), then id."""
    return (str((item.get("attributes") or {}).get("created") or "~"), item["id"])


def _retry_wait(exc: KlaviyoError, attempt: int) -> float:
    """Klaviyo's Retry-After when the failure was a 429, else 2, 4, 8 s."""
    retry_after = getattr(exc.__cause__, "retry_after", None)
    return float(retry_after) if retry_after is not None else float(2**attempt)
