"""The connection works out the environment's proxies once per origin, and still honours them.

``requests.Session.send`` reads the whole environment on every request to find them (a sixth
of a request's CPU): ``KlaviyoConnection`` resolves them with requests' own function once per
scheme and host, and passes them to ``send``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import requests
from requests.utils import resolve_proxies

from klaviyo_core.client import KlaviyoConnection, new_session

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture
def clean_proxy_env(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


class _Proxy(BaseHTTPRequestHandler):
    """A forward proxy that answers every request itself, keeping the request line it got."""

    seen: list[str]

    def do_GET(self) -> None:
        self.seen.append(self.requestline)
        body = json.dumps({"data": [{"id": "acct", "type": "account"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.api+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy_server():
    seen: list[str] = []
    handler = type("Handler", (_Proxy,), {"seen": seen})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()
    server.server_close()


def test_a_request_goes_through_the_proxy_the_environment_names(clean_proxy_env, proxy_server):
    proxy_url, seen = proxy_server
    clean_proxy_env.setenv("HTTP_PROXY", proxy_url)
    connection = KlaviyoConnection({"api_key": "pk_test", "base_url": "http://klaviyo.invalid"}, max_tries=1)
    assert connection.get("/api/accounts")["data"][0]["id"] == "acct"
    assert connection.get("/api/accounts")["data"][0]["id"] == "acct"
    assert seen == ["GET http://klaviyo.invalid/api/accounts HTTP/1.1"] * 2  # the proxy's absolute form


def test_proxies_are_requests_own_and_resolved_once_per_origin(clean_proxy_env):
    clean_proxy_env.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    clean_proxy_env.setenv("NO_PROXY", "direct.example")
    connection = KlaviyoConnection({"api_key": "pk_test"})
    session = new_session()
    for url in ("https://a.klaviyo.com/api/profiles?page%5Bcursor%5D=x", "https://direct.example/api/profiles"):
        expected = resolve_proxies(requests.Request("GET", url), {}, True)
        assert connection._proxies_for(session, url) == expected
    assert connection._proxies_for(session, "https://a.klaviyo.com/x") == {"https": "http://proxy.invalid:3128"}
    assert connection._proxies_for(session, "https://direct.example/y") == {}
    clean_proxy_env.delenv("HTTPS_PROXY")  # read once per origin: a run's environment does not change
    assert connection._proxies_for(session, "https://a.klaviyo.com/z") == {"https": "http://proxy.invalid:3128"}
    assert connection._proxies_for(session, "https://other.klaviyo.com/z") == {}


def test_no_proxy_in_the_environment_means_a_direct_connection(clean_proxy_env):
    connection = KlaviyoConnection({"api_key": "pk_test"})
    assert connection._proxies_for(new_session(), "https://a.klaviyo.com/api/events") == {}
