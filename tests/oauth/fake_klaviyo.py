"""A loopback OAuth server and a tiny Klaviyo-like API, strict where Klaviyo is.

The token endpoint checks HTTP Basic client credentials, the form encoding and the
PKCE S256 verifier; it issues short-lived access tokens and rotates refresh tokens.
``/api/*`` answers 401 to an unknown or expired bearer token. Every token value
starts with ``canary-`` so tests can scan output for leaks.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
import time
import typing as t
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

CLIENT_ID = "test-client-id"
CLIENT_SECRET = "canary-secret-XYZ"
FIRST_REFRESH_TOKEN = "canary-refresh-XYZ"


class FakeKlaviyo:
    """State and knobs; ``url`` is the server root once started."""

    def __init__(self, *, lifetime: float = 3600, rotate: bool = True, clock: t.Callable[[], float] = time.time):
        self.lifetime, self.rotate, self.clock = lifetime, rotate, clock
        self.lock = threading.Lock()
        self.refresh_tokens = {FIRST_REFRESH_TOKEN}
        self.access_tokens: dict[str, float] = {}
        self.codes: dict[str, tuple[str, str, str]] = {}  # code -> (challenge, redirect_uri, scope)
        self.counter = itertools.count(1)
        self.refresh_calls = self.exchange_calls = self.token_posts = 0
        self.api_ok = self.api_unauthorized = 0
        self.bearer_tokens_seen: list[str] = []
        self.refuse_refresh_with: str | None = None  # e.g. "invalid_grant"
        self.token_failures = 0  # answer 503 this many times first
        self.deny = False  # the consent page answers error=access_denied
        self.unauthorized_gate: threading.Barrier | None = None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.fake = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeKlaviyo:
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def expire_access_tokens(self) -> None:
        """Klaviyo forgets every access token (as when one expires early)."""
        with self.lock:
            self.access_tokens.clear()

    def issue(self, *, with_refresh: bool) -> dict:
        n = next(self.counter)
        access = f"canary-access-{n}-XYZ"
        self.access_tokens[access] = self.clock() + self.lifetime
        body = {"access_token": access, "token_type": "Bearer", "expires_in": self.lifetime, "scope": "accounts:read"}
        if with_refresh:
            refresh = f"canary-refresh-{n}-XYZ"
            self.refresh_tokens.add(refresh)
            body["refresh_token"] = refresh
        return body

    def config(self, tmp_path: t.Any, **extra: t.Any) -> dict:
        """A plugin config pointing at this server, with a token file under ``tmp_path``."""
        return {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "refresh_token": FIRST_REFRESH_TOKEN,
            "token_url": f"{self.url}/oauth/token",
            "authorize_url": f"{self.url}/oauth/authorize",
            "base_url": self.url,
            "token_file": str(tmp_path / "tokens.json"),
            **extra,
        }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes

    @property
    def fake(self) -> FakeKlaviyo:
        return self.server.fake  # type: ignore[attr-defined]

    def log_message(self, *args: t.Any) -> None:
        pass

    def _send(self, status: int, body: dict | None = None, headers: dict | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/oauth/authorize":
            self._authorize({k: v[0] for k, v in parse_qs(parts.query).items()})
        elif parts.path.startswith("/api/"):
            self._api()
        else:
            self._send(404, {"error": "not_found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        if urlsplit(self.path).path != "/oauth/token":
            self._send(404, {"error": "not_found"})
            return
        with self.fake.lock:
            self.fake.token_posts += 1
            status, body = self._token(raw)
        self._send(status, body)

    # -- consent page: redirects straight back, as if the user clicked Allow ---------

    def _authorize(self, q: dict[str, str]) -> None:
        fake = self.fake
        if q.get("client_id") != CLIENT_ID or q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            self._send(400, {"error": "invalid_request"})
            return
        if fake.deny:
            answer = {"error": "access_denied", "state": q.get("state", "")}
        else:
            code = f"canary-code-{next(fake.counter)}-XYZ"
            fake.codes[code] = (q["code_challenge"], q["redirect_uri"], q.get("scope", ""))
            answer = {"code": code, "state": q.get("state", "")}
        self._send(302, None, {"Location": f"{q['redirect_uri']}?{urlencode(answer)}"})

    # -- token endpoint ----------------------------------------------------------------

    def _token(self, raw: str) -> tuple[int, dict]:
        fake = self.fake
        if fake.token_failures > 0:
            fake.token_failures -= 1
            return 503, {"error": "temporarily_unavailable"}
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            return 401, {"error": "invalid_client", "error_description": "Client authentication failed"}
        if not (self.headers.get("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
            return 400, {"error": "invalid_request", "error_description": "body must be form-encoded"}
        form = {k: v[0] for k, v in parse_qs(raw).items()}
        if form.get("grant_type") == "refresh_token":
            return self._refresh(form)
        if form.get("grant_type") == "authorization_code":
            return self._exchange(form)
        return 400, {"error": "unsupported_grant_type"}

    def _refresh(self, form: dict[str, str]) -> tuple[int, dict]:
        fake = self.fake
        token = form.get("refresh_token", "")
        if fake.refuse_refresh_with:
            return 400, {"error": fake.refuse_refresh_with, "error_description": "Refresh token is invalid"}
        if token not in fake.refresh_tokens:
            return 400, {"error": "invalid_grant", "error_description": "Refresh token is invalid"}
        fake.refresh_calls += 1
        if fake.rotate:
            fake.refresh_tokens.discard(token)
        return 200, fake.issue(with_refresh=fake.rotate)

    def _exchange(self, form: dict[str, str]) -> tuple[int, dict]:
        fake = self.fake
        grant = fake.codes.pop(form.get("code", ""), None)  # single use
        if grant is None:
            return 400, {"error": "invalid_grant", "error_description": "Unknown or used code"}
        challenge, redirect_uri, _scope = grant
        digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != challenge:
            return 400, {"error": "invalid_grant", "error_description": "Invalid code_verifier"}
        if form.get("redirect_uri") != redirect_uri:
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri mismatch"}
        fake.exchange_calls += 1
        return 200, fake.issue(with_refresh=True)

    # -- the API -----------------------------------------------------------------------

    def _api(self) -> None:
        fake = self.fake
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        with fake.lock:
            fake.bearer_tokens_seen.append(token)
            expires_at = fake.access_tokens.get(token)
            valid = expires_at is not None and fake.clock() < expires_at
            fake.api_ok += valid
            fake.api_unauthorized += not valid
        if valid:
            account = {"type": "account", "id": "ACC123", "attributes": {"contact_information": {}}}
            self._send(200, {"data": [account], "links": {}}, {"Content-Type": "application/vnd.api+json"})
            return
        if fake.unauthorized_gate is not None:
            fake.unauthorized_gate.wait(timeout=5)
        error = {
            "id": "e1",
            "status": 401,
            "code": "not_authenticated",
            "title": "Not authenticated",
            "detail": "Authentication credentials were not provided or are expired.",
        }
        self._send(401, {"errors": [error]}, {"Content-Type": "application/vnd.api+json"})
