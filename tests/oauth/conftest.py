"""Fixtures: the sandbox as OAuth server and API, a controllable clock, an isolated config home, a leak check."""

from __future__ import annotations

import http.client
import itertools
import logging
import threading
import typing as t
from urllib.parse import urlencode, urlsplit

import pytest

from klaviyo_sandbox import Sandbox
from klaviyo_sandbox.script import Recorded
from tests.klaviyo import sandbox_config

CANARY = "canary-"  # every secret the tests hand out or the sandbox issues starts with it
CLIENT_ID = "test-client-id"
CLIENT_SECRET = "canary-secret-XYZ"
FIRST_REFRESH_TOKEN = "canary-refresh-XYZ"


class OAuthKlaviyo:
    """The sandbox as the OAuth tests read it: tokens issued, token endpoint calls, API answers."""

    def __init__(self, token_seconds: int = 3600, clock: t.Callable[[], float] | None = None) -> None:
        config = sandbox_config(
            client_id=CLIENT_ID, client_secret=CLIENT_SECRET, token_seconds=token_seconds, token_prefix=CANARY
        )
        self.box = Sandbox(config).start()
        self.oauth = self.box.oauth
        if clock is not None:
            self.oauth.clock = clock  # judge expiry by the test's clock, as the client does
        self.url = self.box.base_url
        self.account_id = self.box.store.ds.account_id
        self.handed: set[str] = set()  # access tokens a test gave out itself
        self.give_refresh_token(FIRST_REFRESH_TOKEN)
        #: while set, every refresh is refused with this OAuth error (e.g. "invalid_grant")
        self.refuse_refresh_with: str | None = None
        self.box.script("POST", "/oauth/token", itertools.repeat(self._refusal), when=self._refusing)

    def stop(self) -> None:
        self.box.stop()

    # -- tokens ---------------------------------------------------------------------------

    def give_refresh_token(self, token: str) -> None:
        """A refresh token issued before the test (as by an earlier authorization)."""
        with self.oauth.lock:
            self.oauth.refresh[token] = {"client_id": CLIENT_ID, "scope": "", "account": None, "active": True}

    def give_access_token(self, token: str, seconds: float) -> None:
        """An access token handed out by other means (an orchestrator), valid for ``seconds``."""
        self.handed.add(token)
        with self.oauth.lock:
            self.oauth.access[token] = {"client_id": CLIENT_ID, "scope": "", "expires": self.oauth.clock() + seconds}

    def access_token(self, n: int) -> str:
        """The n-th access token the token endpoint issued (1-based)."""
        return [token for token in self.oauth.access if token not in self.handed][n - 1]

    def refresh_token(self, n: int) -> str:
        """The n-th refresh token the token endpoint issued (1-based)."""
        return [token for token in self.oauth.refresh if token != FIRST_REFRESH_TOKEN][n - 1]

    def live_refresh_tokens(self) -> set[str]:
        return {token for token, info in self.oauth.refresh.items() if info["active"]}

    def expire_access_tokens(self) -> None:
        """Klaviyo forgets every access token (as when one expires early)."""
        with self.oauth.lock:
            for info in self.oauth.access.values():
                info["expires"] = 0

    # -- what the sandbox was asked ------------------------------------------------------

    def _token_posts(self, grant_type: str | None = None, status: int | None = None) -> list[Recorded]:
        return [
            r
            for r in self.box.requests
            if (r.method, r.path) == ("POST", "/oauth/token")
            and (grant_type is None or r.form.get("grant_type") == grant_type)
            and (status is None or r.status == status)
        ]

    @property
    def token_posts(self) -> int:
        return len(self._token_posts())

    @property
    def refresh_calls(self) -> int:
        return len(self._token_posts("refresh_token", 200))

    @property
    def exchange_calls(self) -> int:
        return len(self._token_posts("authorization_code", 200))

    def _api(self) -> list[Recorded]:
        return [r for r in self.box.requests if r.path.startswith("/api/")]

    @property
    def api_ok(self) -> int:
        return sum(r.status == 200 for r in self._api())

    @property
    def api_unauthorized(self) -> int:
        return sum(r.status == 401 for r in self._api())

    @property
    def bearer_tokens_seen(self) -> list[str]:
        return [r.headers.get("Authorization", "").removeprefix("Bearer ") for r in self._api()]

    # -- answers a test scripts ----------------------------------------------------------

    def _refusing(self, request: Recorded) -> bool:
        return self.refuse_refresh_with is not None and request.form.get("grant_type") == "refresh_token"

    def _refusal(self, request: Recorded) -> tuple:
        return 400, {"error": self.refuse_refresh_with, "error_description": "Refresh token is invalid"}

    def fail_token_posts(self, times: int) -> None:
        """The token endpoint answers 503 this many times first."""
        self.box.script("POST", "/oauth/token", [(503, {"error": "temporarily_unavailable"})] * times)

    def deny_consent(self) -> None:
        """The user clicks Deny: the consent page redirects back with error=access_denied."""

        def denied(request: Recorded) -> tuple:
            answer = {"error": "access_denied", "state": request.query.get("state", "")}
            return 302, None, {"Location": f"{request.query['redirect_uri']}?{urlencode(answer)}"}

        self.box.script("GET", "/oauth/authorize", [denied])

    def hold_unauthorized(self, barrier: threading.Barrier) -> None:
        """The next API requests wait for each other at ``barrier`` before they are answered."""

        def wait(request: Recorded) -> None:
            barrier.wait(timeout=5)  # then the sandbox answers as usual

        self.box.script("GET", "/api/.*", [wait] * barrier.parties)

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


class FakeClock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def klaviyo() -> t.Iterator[OAuthKlaviyo]:
    server = OAuthKlaviyo()
    yield server
    server.stop()


@pytest.fixture
def klaviyo_on_clock(clock) -> t.Iterator[OAuthKlaviyo]:
    """The server judges expiry by the same fake clock as the client."""
    server = OAuthKlaviyo(clock=clock)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Default token files land under tmp_path, never in the real ~/.config."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for name in ("KLAVIYO_CLIENT_ID", "KLAVIYO_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def no_secret_in_logs(caplog):
    """Every log record of every test (DEBUG and up, any logger) is free of tokens and secrets."""
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.records:
        text = record.getMessage() + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
        assert CANARY not in text, f"secret leaked into log {record.name}: {text}"


def assert_clean(*texts: str) -> None:
    for text in texts:
        assert CANARY not in text, f"secret leaked: {text}"


def browser_get(url: str) -> tuple[int, str | None]:
    """One GET without following redirects: (status, Location). http.client logs nothing."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        connection.request("GET", f"{parts.path}?{parts.query}" if parts.query else parts.path)
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("Location")
    finally:
        connection.close()
