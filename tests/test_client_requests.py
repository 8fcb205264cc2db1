"""What a request costs the tap, and that the cheaper way behaves the same.

* Proxies: ``requests.Session.send`` reads the whole environment on every request to find
  them (a sixth of a request's CPU): ``KlaviyoConnection`` resolves them with requests' own
  function once per scheme and host, and passes them to ``send``.
* Bodies: ``read_body`` reads an answer in one go, holding it once while it is read (reads of
  a fixed size held a page twice: per worker, 1 MB more of peak RSS).
* Pools: the connection's sessions look each origin's connection pool up once
  (``OriginPoolAdapter``), with the same pool, request target and request line as requests' own
  adapter gives.
"""

from __future__ import annotations

import gzip
import json
import threading
import tracemalloc
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer

import pytest
import requests
from requests.adapters import HTTPAdapter
from requests.utils import resolve_proxies

from klaviyo_core.adapter import OriginPoolAdapter
from klaviyo_core.client import KlaviyoConnection, new_session
from klaviyo_core.sdk_compat import read_body
from tap_klaviyo.stream import link_request

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


LINKS = [
    "https://a.klaviyo.com/api/events?filter=greater-or-equal%28datetime%2C2024-01-01%29&page%5Bcursor%5D=b2",
    "https://a.klaviyo.com/api/profiles?page[cursor]=b2&sort=updated&fields[profile]=email,updated",
    "http://127.0.0.1:8080/api/lists/Xy1/relationships/profiles?page%5Bsize%5D=1000#top",
]


@pytest.mark.parametrize("url", LINKS)
def test_a_link_request_is_what_requests_prepares_but_for_the_url_re_encoded(url):
    headers = {"revision": "2026-07-15", "Accept": "application/vnd.api+json", "User-Agent": "klaviyo-singer"}
    ours, theirs = link_request(url, headers), requests.Request("GET", url, headers=headers).prepare()
    assert ours.url == url  # as given; urllib3 encodes what must be when sending (the next test)
    assert (ours.method, ours.body, ours.hooks, dict(ours.headers)) == (
        theirs.method, theirs.body, theirs.hooks, dict(theirs.headers)
    )  # fmt: skip
    assert dict(ours.headers) == headers
    ours.headers["Authorization"] = "Klaviyo-API-Key pk_x"  # as credentials are added when sent
    assert "Authorization" not in headers  # the request's headers are its own copy
    assert ours._cookies is not None and not list(ours._cookies)  # a redirect adds cookies to a jar of its own


@pytest.mark.parametrize("query", ["page[cursor]=a b&filter=equals(email,'é@x.com')", "page%5Bcursor%5D=a%20b"])
def test_a_link_reaches_the_server_as_the_request_requests_prepares(proxy_server, query):
    server, seen = proxy_server
    link = f"{server}/api/profiles?{query}#fragment"
    with requests.Session() as session, new_session() as ours:
        assert session.send(link_request(link, {}), stream=True).status_code == 200
        assert session.send(requests.Request("GET", link).prepare(), stream=True).status_code == 200
        assert ours.send(link_request(link, {}), stream=True).status_code == 200  # OriginPoolAdapter
    assert seen[0] == seen[1] == seen[2]
    assert seen[0].startswith("GET /api/profiles?page%5Bcursor%5D=a%20b")  # what a request line cannot carry, encoded


TARGETS = [
    "https://a.klaviyo.com/api/profiles?page%5Bcursor%5D=b2&filter=greater-than(updated,2024-01-01T00:00:00%2B00:00)",
    "https://a.klaviyo.com/api/profiles/",
    "https://a.klaviyo.com/api/x?",
    "https://a.klaviyo.com/api/x??y",
    "https://a.klaviyo.com/api/x?y#frag",
    "https://a.klaviyo.com/api/x#frag?z",
    "https://a.klaviyo.com/a b/[c]?d=é",
    "HTTPS://A.Klaviyo.com:443/api",
    "http://127.0.0.1:8080/api/events",
    "http://[::1]:8080/api/events?x=1",
    # Shapes left to requests' own method:
    "https://a.klaviyo.com",
    "https://a.klaviyo.com?x=/y",
    "https://a.klaviyo.com#f/g",
    "https://a.klaviyo.com//double/slash",
    "https://user:pw@a.klaviyo.com/api",
    " https://a.klaviyo.com/api ",
    "https://a.klaviyo.com/api\tx?y=\n1",
]


def _request(url: str) -> requests.PreparedRequest:
    request = requests.PreparedRequest()
    request.prepare_method("GET")
    request.url = url  # as link_request sets it: not re-encoded
    return request


@pytest.mark.parametrize("url", TARGETS)
def test_origin_pool_adapter_gives_the_request_target_requests_gives(url):
    request = _request(url)
    assert OriginPoolAdapter().request_url(request, {}) == HTTPAdapter().request_url(request, {})
    proxies = {"http": "http://proxy.invalid:3128", "https": "http://proxy.invalid:3128"}
    assert OriginPoolAdapter().request_url(request, proxies) == HTTPAdapter().request_url(request, proxies)


def _pool(adapter: HTTPAdapter, url: str, verify: object = True, proxies: dict | None = None):
    return adapter.get_connection_with_tls_context(_request(url), verify, proxies or {}, None)


def _shape(pool) -> tuple:
    """What makes a pool the right one: where it connects, and how it checks the certificate."""
    tls = (pool.cert_reqs, pool.ca_certs) if pool.scheme == "https" else ()
    proxy = pool.proxy.url if pool.proxy else None
    return pool.scheme, pool.host, pool.port, proxy, tls


def test_origin_pool_adapter_keeps_requests_pool_per_origin_and_tls_settings(tmp_path):
    adapter, plain = OriginPoolAdapter(), HTTPAdapter()
    bundle = str(tmp_path / "ca.pem")
    for url in TARGETS[:10]:
        for verify in (True, False, bundle):
            assert _shape(_pool(adapter, url, verify)) == _shape(_pool(plain, url, verify)), (url, verify)
    first = _pool(adapter, "https://a.klaviyo.com/api/profiles?x=1")
    assert _pool(adapter, "https://a.klaviyo.com/api/events") is first  # the same origin: looked up once
    assert _pool(adapter, "https://a.klaviyo.com/api/events", verify=False) is not first
    assert _pool(adapter, "https://a.klaviyo.com/api/events", verify=bundle).ca_certs == bundle
    # Origins without a path are not cut (a prefix of one host's URL could be another's).
    assert _pool(adapter, "https://b.klaviyo.co").host == "b.klaviyo.co"
    assert _pool(adapter, "https://b.klaviyo.com").host == "b.klaviyo.com"
    proxied = _pool(adapter, "https://a.klaviyo.com/api", proxies={"https": "http://proxy.invalid:3128"})
    assert _shape(proxied) == _shape(
        _pool(plain, "https://a.klaviyo.com/api", proxies={"https": "http://proxy.invalid:3128"})
    )
    assert proxied is not first
    adapter.close()  # closes the manager's pools: the next request gets an open one
    again = _pool(adapter, "https://a.klaviyo.com/api/events")
    assert again is not first and again.pool is not None


def test_requests_sends_through_the_adapters_pool_and_target(clean_proxy_env, proxy_server):
    """Fails when requests' ``HTTPAdapter.send`` stops asking the methods the adapter overrides."""
    server, seen = proxy_server
    asked: list[str] = []

    def spy(name: str):
        method = getattr(OriginPoolAdapter, name)

        def asking(self, *args, **kwargs):
            asked.append(name)
            return method(self, *args, **kwargs)

        return asking

    for name in ("get_connection_with_tls_context", "request_url"):
        clean_proxy_env.setattr(OriginPoolAdapter, name, spy(name))
    with new_session() as session:
        for _ in range(2):
            assert session.send(link_request(f"{server}/api/accounts?x=1#f", {}), stream=True).status_code == 200
        assert len(session.get_adapter(server)._pools) == 1  # type: ignore[attr-defined]
    assert asked == ["get_connection_with_tls_context", "request_url"] * 2
    assert seen == ["GET /api/accounts?x=1 HTTP/1.1"] * 2


BODY = json.dumps({"data": [{"id": str(i), "attributes": {"x": "y" * 100}} for i in range(12_000)]}).encode()


class _Pages(BaseHTTPRequestHandler):
    """One large JSON answer: with a length, gzipped, or chunked (no length)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = gzip.compress(BODY) if self.path == "/gzip" else BODY
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if self.path == "/gzip":
            self.send_header("Content-Encoding", "gzip")
        if self.path == "/chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(body), 100_000):
                piece = body[start : start + 100_000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def pages_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("path", ["/length", "/gzip", "/chunked"])
def test_read_body_reads_the_whole_answer(pages_server, path):
    with requests.Session() as session:
        response = session.get(pages_server + path, stream=True)
        assert read_body(response) == BODY == response.content
        assert response.json()["data"][-1]["id"] == "11999"


def test_read_body_holds_an_answer_once_while_reading_it(pages_server):
    assert len(BODY) > 1_400_000  # larger than the 1 MB reads it used to make
    with requests.Session() as session:
        read_body(session.get(pages_server + "/length", stream=True))  # connection, pools
        response = session.get(pages_server + "/length", stream=True)
        tracemalloc.start()
        try:
            body = read_body(response)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert len(body) == len(BODY)
    assert peak < 1.3 * len(BODY)  # was 2x: a buffer per read, then the pieces joined
