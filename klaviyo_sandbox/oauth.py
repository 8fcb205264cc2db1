"""OAuth 2.0 authorization-code flow with PKCE (S256) and rotating refresh tokens.

Mirrors Klaviyo's app flow closely enough for connector tests: /oauth/authorize
auto-approves and redirects back with `code` and `state`; /oauth/token takes HTTP Basic
client credentials and a form-encoded body; errors are RFC 6749 JSON
(`invalid_client` 401, `invalid_grant`/`invalid_request`/`unsupported_grant_type` 400).

One app may be installed in several accounts behind the one token endpoint, as on Klaviyo:
the consent page approves for the account the browser is signed in to (`sign_in`), and every
token a grant issues (codes, access tokens, rotated refresh tokens) stays bound to that account.
`/oauth/revoke` follows RFC 7009 (which Klaviyo's docs point to): revoking a refresh token ends
its whole grant, access tokens included; an unknown token is not an error.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import secrets
import threading
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

CODE_TTL = 600  # seconds an authorization code stays valid
DEFAULT_SCOPE = "accounts:read lists:read lists:write profiles:read profiles:write"


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class OAuthServer:
    def __init__(
        self,
        client_id: str,
        client_secret: str,
        token_seconds: int,
        clock=time.monotonic,
        accounts: list | None = None,
        token_prefix: str = "",
    ):
        self.clients = {client_id: client_secret}
        self.accounts = list(accounts or [None])
        self.signed_in = self.accounts[0]  # the account the (simulated) browser approves for
        self.grants = itertools.count(1)
        self.token_seconds = token_seconds
        self.clock = clock  # a test may set its own (epoch seconds that move when it says)
        self.token_prefix = token_prefix  # starts every code and token, for tests that scan output for leaks
        self.lock = threading.Lock()
        self.codes: dict = {}
        self.access: dict = {}  # token -> {client_id, scope, expires}
        self.refresh: dict = {}  # token -> {client_id, scope, active}

    def sign_in(self, account: str):
        """The browser signs in to `account` (an id this sandbox serves); the consent page approves for it."""
        if account not in self.accounts:
            raise ValueError(f"unknown account {account!r}; this sandbox serves {self.accounts}")
        self.signed_in = account
        return account

    # ------------------------------------------------------------ authorize
    def authorize(self, params: dict):
        """Returns (status, headers, body). Auto-approves: no consent screen."""
        client_id, redirect = params.get("client_id"), params.get("redirect_uri")
        if client_id not in self.clients:
            return self._json(400, "invalid_client", "Unknown client_id.")
        if not redirect or not urlsplit(redirect).scheme:
            return self._json(400, "invalid_request", "A valid redirect_uri is required.")
        state = params.get("state")
        problem = None
        if params.get("response_type") != "code":
            problem = ("unsupported_response_type", "response_type must be 'code'.")
        elif params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            problem = ("invalid_request", "PKCE is required: code_challenge with code_challenge_method=S256.")
        if problem:
            query = {"error": problem[0], "error_description": problem[1]}
        else:
            code = self.token_prefix + secrets.token_urlsafe(24)
            with self.lock:
                self.codes[code] = {
                    "client_id": client_id,
                    "redirect_uri": redirect,
                    "challenge": params["code_challenge"],
                    "scope": params.get("scope") or DEFAULT_SCOPE,
                    "expires": self.clock() + CODE_TTL,
                    "used": False,
                    "issued": [],
                    "account": self.signed_in,
                }
            query = {"code": code}
        if state is not None:
            query["state"] = state
        return 302, {"Location": _add_query(redirect, query)}, b""

    # ------------------------------------------------------------ token
    def token(self, headers, body: bytes):
        client_id = self._client(headers.get("Authorization", ""))
        if client_id is None:
            return self._json(
                401,
                "invalid_client",
                "Client authentication failed (HTTP Basic required).",
                {"WWW-Authenticate": 'Basic realm="oauth"'},
            )
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return self._json(400, "invalid_request", "The body must be application/x-www-form-urlencoded.")
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        grant = form.get("grant_type")
        if grant == "authorization_code":
            return self._code_grant(client_id, form)
        if grant == "refresh_token":
            return self._refresh_grant(client_id, form)
        return self._json(400, "unsupported_grant_type", f"Unsupported grant_type {grant!r}.")

    def _client(self, auth: str) -> str | None:
        if not auth.lower().startswith("basic "):
            return None
        try:
            raw = base64.b64decode(auth[6:].strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        cid, _, secret = raw.partition(":")
        ok = cid in self.clients and secrets.compare_digest(self.clients[cid], secret)
        return cid if ok else None

    def _code_grant(self, client_id: str, form: dict):
        with self.lock:
            grant = self.codes.get(form.get("code", ""))
            if grant is None or grant["client_id"] != client_id or grant["expires"] < self.clock():
                return self._json(400, "invalid_grant", "The authorization code is invalid or expired.")
            if grant["used"]:  # replay: revoke everything issued from this code (RFC 6749 4.1.2)
                for tok in grant["issued"]:
                    self.refresh.get(tok, {})["active"] = False
                return self._json(400, "invalid_grant", "The authorization code was already used.")
            if form.get("redirect_uri") and form["redirect_uri"] != grant["redirect_uri"]:
                return self._json(400, "invalid_grant", "redirect_uri does not match the authorization request.")
            verifier = form.get("code_verifier") or ""
            if not verifier or pkce_challenge(verifier) != grant["challenge"]:
                return self._json(400, "invalid_grant", "Invalid code_verifier.")
            grant["used"] = True
            status, headers, body = self._issue(client_id, grant["scope"], grant["account"], next(self.grants))
            grant["issued"].append(json.loads(body)["refresh_token"])
            return status, headers, body

    def _refresh_grant(self, client_id: str, form: dict):
        with self.lock:
            old = self.refresh.get(form.get("refresh_token", ""))
            if old is None or not old["active"] or old["client_id"] != client_id:
                return self._json(400, "invalid_grant", "The refresh token is invalid, expired or revoked.")
            old["active"] = False  # rotation: each refresh token works once
            return self._issue(client_id, old["scope"], self.account_of(old), old.get("grant"))

    def account_of(self, info: dict):
        """The account a token opens (tokens seeded by hand without one open the first account)."""
        return info.get("account") or self.accounts[0]

    def _issue(self, client_id: str, scope: str, account, grant):
        access, refresh = (self.token_prefix + secrets.token_urlsafe(32) for _ in range(2))
        self.access[access] = {
            "client_id": client_id,
            "scope": scope,
            "account": account,
            "grant": grant,
            "expires": self.clock() + self.token_seconds,
        }
        self.refresh[refresh] = {
            "client_id": client_id,
            "scope": scope,
            "account": account,
            "grant": grant,
            "active": True,
        }
        body = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.token_seconds,
            "refresh_token": refresh,
            "scope": scope,
        }
        return 200, {"Cache-Control": "no-store", "Pragma": "no-cache"}, json.dumps(body).encode()

    def revoke(self, headers, body: bytes):
        if self._client(headers.get("Authorization", "")) is None:
            return self._json(401, "invalid_client", "Client authentication failed.")
        client_id = self._client(headers.get("Authorization", ""))
        token = dict(parse_qsl(body.decode("utf-8", "replace"))).get("token", "")
        with self.lock:
            info = self.access.get(token) or self.refresh.get(token)
            if info is None or info["client_id"] != client_id:
                return 200, {}, b""  # RFC 7009: an unknown token is not an error
            self.access.pop(token, None)
            if token in self.refresh:  # a refresh token ends its whole grant
                self.refresh[token]["active"] = False
                grant = self.refresh[token].get("grant")
                if grant is not None:
                    for other in self.refresh.values():
                        if other.get("grant") == grant:
                            other["active"] = False
                    for access in [k for k, v in self.access.items() if v.get("grant") == grant]:
                        del self.access[access]
        return 200, {}, b""

    # ------------------------------------------------------------ resource access
    def check_access(self, token: str) -> dict | None:
        """Token info when valid and unexpired, else None (the API answers 401)."""
        info = self.access.get(token)
        if info is None or info["expires"] < self.clock():
            return None
        return info

    @staticmethod
    def _json(status: int, error: str, description: str, headers: dict | None = None):
        body = json.dumps({"error": error, "error_description": description}).encode()
        return status, {"Cache-Control": "no-store", **(headers or {})}, body


def _add_query(url: str, params: dict) -> str:
    parts = urlsplit(url)
    query = parts.query + ("&" if parts.query else "") + urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
