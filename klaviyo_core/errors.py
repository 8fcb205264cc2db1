"""Map Klaviyo's answers to exceptions with messages a user can act on."""

from __future__ import annotations

import email.utils
import json
import re
import time
import typing as t
from http import HTTPStatus
from urllib.parse import urlsplit

from singer_sdk.exceptions import FatalAPIError, RetriableAPIError

if t.TYPE_CHECKING:
    import requests

#: Statuses worth retrying: rate limited, server errors, Cloudflare's origin timeout.
RETRIABLE_STATUSES = frozenset({429, 500, 502, 503, 504, 524})

_DETAIL_LIMIT = 300


class KlaviyoError(Exception):
    """A failure whose message is complete and fit to show a user as one line."""


class KlaviyoAPIError(KlaviyoError, FatalAPIError):
    """Klaviyo refused a request and retrying will not help."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class KlaviyoQuotaExhausted(KlaviyoError):
    """Klaviyo asked for a wait far longer than a retry should take (a daily cap is spent)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class KlaviyoRetriableError(RetriableAPIError):
    """A transient failure; ``retry_after`` is Klaviyo's own wait hint in seconds."""

    def __init__(self, message: str, response: requests.Response | None = None) -> None:
        super().__init__(message, response)
        self.retry_after = retry_after_seconds(response) if response is not None else None


def endpoint_label(response: requests.Response) -> str:
    """``GET /api/lists/X/profiles``: method and path, never the query (it may hold emails)."""
    request = response.request
    method = request.method if request is not None else "GET"
    return f"{method} {urlsplit(response.url or '').path}"


def retry_after_seconds(response: requests.Response) -> float | None:
    """Read ``Retry-After`` as seconds (integer seconds or an HTTP date), or None."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_detail(response: requests.Response) -> str:
    """Klaviyo's own words from a JSON:API error body, else a short, tag-free body excerpt."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        parts = [_describe_error_item(item) for item in body["errors"] if isinstance(item, dict)]
        if parts:
            return "; ".join(parts)[:_DETAIL_LIMIT]
    if isinstance(body, dict) and "error" in body:  # OAuth endpoints answer RFC 6749 style
        return " ".join(str(body[k]) for k in ("error", "error_description") if body.get(k))
    text = re.sub(r"<[^>]+>", " ", response.text or "")
    text = " ".join(text.split())
    return text[:_DETAIL_LIMIT] or (response.reason or "no detail given")


def _describe_error_item(item: dict) -> str:
    detail = item.get("detail") or item.get("title") or ""
    code = item.get("code")
    source = item.get("source") or {}
    where = source.get("parameter") or source.get("pointer") if isinstance(source, dict) else None
    text = f"{code}: {detail}" if code else str(detail)
    return f"{text} (at {where})" if where else text


def _auth_hint(status: int, required_scopes: t.Sequence[str]) -> str:
    if status == HTTPStatus.UNAUTHORIZED:
        return " Check the api_key setting (a private key starting with pk_, not revoked), or re-authorise OAuth."
    scopes = " ".join(required_scopes) if required_scopes else "the scope this endpoint needs"
    return f" The credentials lack a scope: grant {scopes} to the key or OAuth app."


def raise_for_response(
    response: requests.Response,
    *,
    required_scopes: t.Sequence[str] = (),
) -> None:
    """Raise the exception that fits a non-2xx response; return quietly on success."""
    status = response.status_code
    if status < HTTPStatus.BAD_REQUEST:
        return
    label = endpoint_label(response)
    detail = error_detail(response)
    if status in RETRIABLE_STATUSES:
        raise KlaviyoRetriableError(f"{label} answered {status}: {detail}", response)
    message = f"{label} failed with {status} {response.reason or ''}".rstrip() + f": {detail}."
    if status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
        message += _auth_hint(status, required_scopes)
    raise KlaviyoAPIError(message, status=status, code=_first_code(response))


def _first_code(response: requests.Response) -> str | None:
    try:
        errors = response.json().get("errors") or [{}]
    except (ValueError, AttributeError):
        return None
    return errors[0].get("code") if isinstance(errors[0], dict) else None


def json_document(response: requests.Response) -> dict:
    """The response's JSON:API document, parsed once and cached on the response.

    A 2xx answer that is not JSON (an HTML page from a proxy, a truncated body)
    is transient in practice, so it is raised as retriable.
    """
    cached = response.__dict__.get("_klaviyo_document")
    if cached is not None:
        return cached
    try:
        document = json.loads(response.content) if response.content else {}
    except ValueError as exc:
        raise _not_a_document(response, exc.__class__.__name__) from exc
    if not isinstance(document, dict):
        raise _not_a_document(response, f"a JSON {type(document).__name__}")
    response.__dict__["_klaviyo_document"] = document
    return document


def _not_a_document(response: requests.Response, what: str) -> KlaviyoRetriableError:
    return KlaviyoRetriableError(
        f"{endpoint_label(response)} answered {response.status_code} with a body that is "
        f"not a JSON:API document ({what})",
        response,
    )
