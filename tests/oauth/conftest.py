"""Fixtures: a loopback OAuth server, a controllable clock, an isolated config home, a leak check."""

from __future__ import annotations

import http.client
import logging
from urllib.parse import urlsplit

import pytest

from tests.oauth.fake_klaviyo import FakeKlaviyo

CANARY = "canary-"


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
def fake():
    server = FakeKlaviyo().start()
    yield server
    server.stop()


@pytest.fixture
def fake_on_clock(clock):
    """The server judges expiry by the same fake clock as the client."""
    server = FakeKlaviyo(clock=clock).start()
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
