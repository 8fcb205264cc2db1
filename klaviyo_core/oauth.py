"""Klaviyo's OAuth protocol: the token endpoint, PKCE, the authorize URL and its redirect.

Token requests are ``POST token_url`` with HTTP Basic client credentials and a form
body; network trouble and 5xx answers are retried, a 4xx is final and reported with
the OAuth ``error``/``error_description``. Nothing here ever puts a token, code or
client secret into a message: known secrets are scrubbed from what the server says.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
import time
import typing as t
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import requests
from typing_extensions import override

from klaviyo_core.defaults import DEFAULT_AUTHORIZE_URL, DEFAULT_BASE_URL, DEFAULT_REVISION, DEFAULT_TOKEN_URL
from klaviyo_core.errors import KlaviyoError

#: Refresh this long before expiry (or at half the lifetime of shorter-lived tokens).
EARLY_REFRESH_SECONDS = 300.0
#: Version 2 binds the tokens to an app, token endpoint, API host, account and seed refresh tokens.
TOKEN_FILE_FORMAT = "klaviyo-singer-oauth/2"
LOGGER = logging.getLogger("klaviyo.oauth")


class OAuthError(KlaviyoError):
    """The token endpoint refused a request; ``error`` is the RFC 6749 code."""

    def __init__(self, message: str, *, error: str = "") -> None:
        super().__init__(message)
        self.error = error


@dataclass(repr=False)
class Tokens:
    """A token pair and what is known of its lifetime (``repr`` hides the tokens)."""

    refresh_token: str
    access_token: str | None = None
    expires_at: float | None = None  # epoch seconds; None: use until a 401
    expires_in: float | None = None
    scope: str | None = None
    account_id: str | None = None  # the Klaviyo account the grant belongs to, once known

    def refresh_due(self, now: float) -> bool:
        if not self.access_token:
            return True
        if self.expires_at is None:
            return False
        early = min(EARLY_REFRESH_SECONDS, (self.expires_in or 2 * EARLY_REFRESH_SECONDS) / 2)
        return now >= self.expires_at - early

    @override
    def __repr__(self) -> str:
        return f"Tokens(expires_at={self.expires_at}, scope={self.scope!r})"


def seed_fingerprint(refresh_token: str) -> str:
    """A one-way fingerprint of a refresh token: names its lineage without revealing it."""
    return hashlib.sha256(f"klaviyo-singer-seed\0{refresh_token}".encode()).hexdigest()[:32]


def same_url(first: str | None, second: str | None) -> bool:
    return (first or "").strip().rstrip("/") == (second or "").strip().rstrip("/")


def default_token_path(
    client_id: str,
    refresh_token: str,
    *,
    token_url: str = DEFAULT_TOKEN_URL,
    base_url: str = DEFAULT_BASE_URL,
) -> Path:
    """``$XDG_CONFIG_HOME/klaviyo-singer/oauth-<hash>.json``: one file per app, endpoint, host and seed.

    Keyed by the refresh token the config gives (its fingerprint, never the token): one
    OAuth app installed in several Klaviyo accounts has one refresh token per account,
    so each account's pipeline gets its own file, and a sandbox or proxy never shares
    production's.
    """
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".config"
    key = "\0".join(
        (client_id, token_url.strip().rstrip("/"), base_url.strip().rstrip("/"), seed_fingerprint(refresh_token))
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return base / "klaviyo-singer" / f"oauth-{digest}.json"


def revoke_url(token_url: str) -> str:
    """Klaviyo revokes at ``/oauth/revoke`` next to ``/oauth/token``."""
    head, _, tail = token_url.rstrip("/").rpartition("/")
    if tail != "token":
        raise KlaviyoError(f"Cannot tell the revoke URL from token_url {token_url}: it should end in /oauth/token.")
    return f"{head}/revoke"


def account_of(base_url: str, access_token: str, *, timeout: float = 30.0) -> dict | None:
    """The account an access token opens (``GET /api/accounts``), or None when it cannot be told.

    Used to bind saved tokens to their account; a failure only leaves the binding for later.
    """
    try:
        response = requests.get(
            f"{base_url.rstrip('/')}/api/accounts",
            headers={
                "Authorization": f"Bearer {access_token}",
                "revision": DEFAULT_REVISION,
                "Accept": "application/vnd.api+json",
            },
            timeout=(10.0, timeout),
        )
        data = response.json().get("data") if response.status_code == 200 else None
    except (requests.RequestException, ValueError, AttributeError):
        return None
    account = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else None
    return account if account and account.get("id") else None


def account_name(account: dict | None) -> str:
    """``ID (organization)`` for messages; the id alone when there is no name."""
    if not account:
        return "(unknown account)"
    info = (account.get("attributes") or {}).get("contact_information") or {}
    name = info.get("organization_name") or info.get("default_sender_name")
    return f"{account['id']} ({name})" if name else str(account["id"])


class TokenEndpoint:
    """``POST token_url`` with HTTP Basic client credentials and a form body."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        max_tries: int = 4,
        timeout: tuple[float, float] = (10.0, 30.0),
        sleep: t.Callable[[float], None] = time.sleep,
    ) -> None:
        self.token_url, self.client_id = token_url, client_id
        self._client_secret = client_secret
        self.max_tries, self.timeout, self._sleep = max_tries, timeout, sleep

    def refresh(self, refresh_token: str, now: float) -> Tokens:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return self._tokens(self._post(form), now, previous_refresh_token=refresh_token)

    def exchange(self, code: str, verifier: str, redirect_uri: str, now: float) -> Tokens:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": redirect_uri,
        }
        tokens = self._tokens(self._post(form), now, previous_refresh_token="")
        if not tokens.refresh_token:
            raise KlaviyoError(f"The OAuth token endpoint {self.token_url} answered without a refresh_token.")
        return tokens

    def revoke(self, token: str, hint: str) -> None:
        """``POST /oauth/revoke`` (RFC 7009): an unknown or already revoked token is success too."""
        self._post({"token": token, "token_type_hint": hint}, url=revoke_url(self.token_url), expect_json=False)

    def _post(self, form: dict[str, str], *, url: str = "", expect_json: bool = True) -> dict:
        """Retry network trouble and 5xx/429 with short backoff; a 4xx is final."""
        url = url or self.token_url
        secrets_ = [self._client_secret, *form.values()]
        failure = ""
        for attempt in range(1, self.max_tries + 1):
            try:
                response = requests.post(
                    url,
                    data=form,
                    auth=(self.client_id, self._client_secret),
                    headers={"Accept": "application/json"},
                    timeout=self.timeout,
                )
            except requests.RequestException as exc:  # no answer at all: worth another try
                failure = scrub(f"{type(exc).__name__}: {exc}", secrets_)
            else:
                if response.status_code < 400:
                    return _json_body(response, url) if expect_json else {}
                if response.status_code != 429 and response.status_code < 500:
                    raise _refusal(response, secrets_)
                failure = f"HTTP {response.status_code}"
            if attempt < self.max_tries:
                self._sleep(min(8.0, 0.5 * 2 ** (attempt - 1)))
        raise KlaviyoError(
            f"Could not get an answer from {url} after {self.max_tries} tries "
            f"({failure[:200]}). Check the network and the token_url setting."
        )

    def _tokens(self, body: dict, now: float, previous_refresh_token: str) -> Tokens:
        if not body.get("access_token"):
            raise KlaviyoError(f"The OAuth token endpoint {self.token_url} answered without an access_token.")
        try:
            expires_in: float | None = float(body["expires_in"])
        except (KeyError, TypeError, ValueError):
            expires_in = None  # unknown lifetime: used until a 401
        return Tokens(
            refresh_token=str(body.get("refresh_token") or previous_refresh_token),
            access_token=str(body["access_token"]),
            expires_at=now + expires_in if expires_in is not None else None,
            expires_in=expires_in,
            scope=body.get("scope"),
        )

    @override
    def __repr__(self) -> str:
        return f"TokenEndpoint({self.token_url!r}, client_id={self.client_id!r})"


def _json_body(response: requests.Response, url: str) -> dict:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise KlaviyoError(f"The OAuth token endpoint {url} answered {response.status_code} without JSON.")
    return body


def _refusal(response: requests.Response, secrets_: t.Sequence[str]) -> OAuthError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    error = str(body.get("error") or f"HTTP {response.status_code}")
    description = scrub(" ".join(str(body.get("error_description") or "").split())[:200], secrets_)
    detail = f"{error}: {description}" if description else error
    hint = " Check client_id and client_secret." if error == "invalid_client" else ""
    return OAuthError(f"Klaviyo's OAuth token endpoint refused the request ({detail}).{hint}", error=error)


def scrub(text: str, secrets_: t.Iterable[str | None]) -> str:
    """``text`` with every known secret replaced by ``***`` (defence in depth)."""
    for secret in secrets_:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def reauthorize_command(
    client_id: str,
    token_file: Path | str | None,
    *,
    token_url: str = DEFAULT_TOKEN_URL,
    authorize_url: str = DEFAULT_AUTHORIZE_URL,
    base_url: str = DEFAULT_BASE_URL,
    scope: str | None = None,
) -> str:
    """The exact ``klaviyo-oauth authorize`` call that stores fresh tokens where this config reads them."""
    parts = ["klaviyo-oauth authorize", f"--client-id {client_id}"]
    if token_file:
        parts.append(f"--token-file {token_file}")
    if token_url != DEFAULT_TOKEN_URL:
        parts.append(f"--token-url {token_url}")
    if authorize_url != DEFAULT_AUTHORIZE_URL:
        parts.append(f"--authorize-url {authorize_url}")
    if not same_url(base_url, DEFAULT_BASE_URL):
        parts.append(f"--base-url {base_url}")
    if scope:
        parts.append(f"--scopes '{scope}'")
    return " ".join(parts)


TAP_SCOPES = (
    "accounts:read campaigns:read events:read flows:read lists:read metrics:read "
    "profiles:read reviews:read segments:read"
)
TARGET_SCOPES = "accounts:read lists:read lists:write profiles:read profiles:write"


@dataclass(frozen=True, repr=False)
class PKCE:
    """A code verifier, its S256 challenge, and the state that ties the redirect to us.

    Hex, not base64url: a value starting with "-" would be taken for an option when
    pasted after ``--verifier`` or ``--state``. 64 hex digits carry 256 bits.
    """

    verifier: str = field(default_factory=lambda: secrets.token_hex(32))
    state: str = field(default_factory=lambda: secrets.token_hex(16))

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def scopes_for(which: str) -> str:
    """Default scopes: read for the tap, list/profile writes for the target, or the union."""
    chosen = {"tap": TAP_SCOPES, "target": TARGET_SCOPES}.get(which, f"{TAP_SCOPES} {TARGET_SCOPES}")
    return " ".join(dict.fromkeys(chosen.split()))


def authorize_link(settings: dict, redirect_uri: str, scopes: str, pkce: PKCE) -> str:
    query = {
        "response_type": "code",
        "client_id": settings["client_id"],
        "redirect_uri": redirect_uri,
        "scope": scopes,
        "state": pkce.state,
        "code_challenge_method": "S256",
        "code_challenge": pkce.challenge,
    }
    base = settings.get("authorize_url") or DEFAULT_AUTHORIZE_URL
    return f"{base}{'&' if '?' in base else '?'}{urlencode(query, quote_via=quote)}"


def is_redirect(pasted: str) -> bool:
    """Whether the user pasted a redirect URL (or its query) rather than a bare code."""
    return any(marker in pasted for marker in ("://", "code=", "state=", "error="))


def parse_redirect(pasted: str) -> dict[str, str]:
    """Query parameters of a pasted redirect URL; a bare code becomes ``{"code": ...}``."""
    pasted = pasted.strip()
    if not is_redirect(pasted):
        return {"code": pasted} if pasted else {}
    query = urlsplit(pasted).query if "?" in pasted else pasted
    return {key: values[0] for key, values in parse_qs(query).items()}


def code_from(params: dict[str, str], expected_state: str | None) -> str:
    """The authorization code, after the redirect's error and state are checked.

    ``expected_state`` None skips the state check: only for a bare pasted code,
    which carries no state to compare.
    """
    error = params.get("error")
    if error == "access_denied":
        raise KlaviyoError("Access was denied in the browser (access_denied): run again and choose Allow.")
    if error:
        detail = " ".join(params.get("error_description", "").split())[:200]
        raise KlaviyoError(f"Klaviyo refused the authorisation ({error}{': ' + detail if detail else ''}).")
    if expected_state is not None and params.get("state") != expected_state:
        raise KlaviyoError(
            "The redirect's state does not match this request (a stale tab, or a forged redirect): "
            "nothing was stored. Start the authorisation again."
        )
    if not params.get("code"):
        raise KlaviyoError("The redirect carries no authorization code: paste the whole redirect URL.")
    return params["code"]
