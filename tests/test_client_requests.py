"""What a request costs the tap, and that the cheaper way behaves the same.

* Proxies: ``requests.Session.send`` reads the whole environment on every request to find
  them (a sixth of a request's CPU): ``KlaviyoConnection`` resolves them with requests' own
  function once per scheme and host, and passes them to ``send``.
* Bodies: ``read_body`` reads an answer in one go, holding it once while it is read (reads of
  a fixed size held a page twice: per worker, 1 MB more of peak RSS).
* Pools: the connection's sessions look each origin's connection pool up once
  (``OriginPoolAdapter``), with the same pool, request target and request line as requests' own
  adapter gives.
* Plain GETs: ``DirectGetAdapter`` sends them through http.client with the answers and errors
  requests' own session gives (compared on loopback servers, over TLS too), and closes each
  thread's connections when the thread ends and at exit.
* Headers: it reads a block of plain ``name: value`` lines without the email package's parser,
  into the same message the email package makes (any other block still goes to it).
"""

from __future__ import annotations

import email.parser
import gc
import gzip
import http.client
import io
import json
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import typing as t
import warnings
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer

import pytest
import requests
from requests.adapters import HTTPAdapter
from requests.utils import resolve_proxies

from klaviyo_core import client as client_module
from klaviyo_core.adapter import DirectGetAdapter, OriginPoolAdapter, PlainHeadersResponse, parse_plain_headers
from klaviyo_core.client import KlaviyoConnection, new_session
from klaviyo_core.sdk_compat import read_body
from klaviyo_sandbox.server import self_signed_certificate
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
    with requests.Session() as session:
        session.mount("http://", OriginPoolAdapter())
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


def _serve(handler: type, context: ssl.SSLContext | None = None) -> t.Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"{'https' if context else 'http'}://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def pages_server():
    yield from _serve(_Pages)


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


class _Odd(BaseHTTPRequestHandler):
    """Answers as servers do on a bad day, by path; counts the connections it accepts."""

    protocol_version = "HTTP/1.1"
    timeout = 0.3  # an idle kept-alive connection is closed after this long
    connections: list[int]

    def setup(self) -> None:
        super().setup()
        self.connections.append(1)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/slow":
            time.sleep(1.0)
        if path == "/reset":  # RST instead of an answer
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        body = json.dumps({"data": [], "path": self.path}).encode()
        self.send_response(404 if path == "/missing" else 200)
        self.send_header("Content-Type", "application/vnd.api+json; charset=utf-8")
        self.send_header("Content-Length", str(len(body) + (50 if path == "/short" else 0)))
        for value in ("a", "b"):
            self.send_header("X-Twice", value)
        if path == "/close":
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        if path == "/short":  # fewer bytes than the length says
            self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def odd_server():
    connections: list[int] = []
    yield from ((url, connections) for url in _serve(type("Handler", (_Odd,), {"connections": connections})))


def _both(url: str, **kwargs: t.Any) -> tuple[t.Any, t.Any]:
    """What the tap's session and requests' own give for a GET of ``url``: an answer or an error."""
    results = []
    for session in (new_session(), requests.Session()):
        with session:
            try:
                results.append(session.send(link_request(url, {}), proxies={}, **kwargs))
            except requests.RequestException as exc:
                results.append(exc)
    return results[0], results[1]


@pytest.mark.parametrize("path", ["/ok?page%5Bsize%5D=100&filter=greater-than(updated,2024-01-01)", "/missing"])
def test_the_direct_adapter_answers_as_requests_does(clean_proxy_env, odd_server, path):
    url, _ = odd_server
    direct, usual = _both(url + path)
    assert isinstance(direct.connection, DirectGetAdapter)
    assert (direct.status_code, direct.reason, direct.url, direct.encoding) == (
        usual.status_code, usual.reason, usual.url, usual.encoding,
    )  # fmt: skip
    assert direct.content == usual.content and direct.json() == usual.json()
    assert direct.headers["x-twice"] == usual.headers["X-Twice"] == "a, b"
    assert {k.lower() for k in direct.headers} == {k.lower() for k in usual.headers}
    assert direct.request.url == url + path and direct.ok == usual.ok


@pytest.mark.parametrize(
    ("block", "plain"),
    [
        (b"Content-Type: application/json\r\nContent-Length: 12\r\nX-Twice: a\r\nx-twice: b\r\n\r\n", True),
        (b"A:b\r\nEmpty:\r\nTabbed:\t value \r\nBare-Newline: yes\n\n", True),  # blanks kept at the end
        (b"Latin: caf\xe9\r\nRateLimit-Limit: 10, 10;w=1, 150;w=60\r\n\r\n", True),
        (b"Cut: short\r\n", True),  # the connection closed before the blank line (no body)
        (b"\r\n", True),
        (b"Folded: one\r\n two\r\nNext: 1\r\n\r\n", False),  # a continuation line
        (b"Lone: a\rb\r\n\r\n", False),  # a lone CR, which the email package splits at
        (b"From nobody\r\nA: 1\r\n\r\n", False),  # no colon
        (b"Bad Name: 1\r\nA: 1\r\n\r\n", False),  # a blank in the name
        (b": no name\r\n\r\n", False),
    ],
)
def test_plain_headers_are_read_into_the_message_the_email_package_makes(block, plain, monkeypatch):
    rest = b"" if block.startswith(b"Cut") else b"the body"
    ours, stdlib = io.BytesIO(block + rest), io.BytesIO(block + rest)
    usual = http.client.parse_headers(stdlib)
    parsed: list[str] = []
    parse = email.parser.Parser.parsestr
    monkeypatch.setattr(email.parser.Parser, "parsestr", lambda self, text: parsed.append(text) or parse(self, text))
    fast = parse_plain_headers(ours)
    assert parsed == ([] if plain else [block.decode("iso-8859-1")])  # plain lines skip the email package
    assert type(fast) is type(usual) is http.client.HTTPMessage
    assert fast.items() == usual.items() and fast.keys() == usual.keys()
    for name in usual:
        assert fast.get_all(name) == usual.get_all(name) and fast[name.upper()] == usual[name.upper()]
    assert [type(d) for d in fast.defects] == [type(d) for d in usual.defects]
    assert ours.read() == stdlib.read()  # both stop at the same byte: the body's first


def test_the_direct_adapter_begins_an_answer_with_http_clients_own_code():
    """``PlainHeadersResponse.begin`` is the stdlib's, rebound: it must still call ``parse_headers``."""
    stdlib_begin = http.client.HTTPResponse.begin
    assert "parse_headers" in stdlib_begin.__code__.co_names, "http.client changed: see PlainHeadersResponse"
    assert PlainHeadersResponse.begin.__code__ is stdlib_begin.__code__
    assert PlainHeadersResponse.begin.__globals__["parse_headers"] is parse_plain_headers
    assert DirectGetAdapter()._connection("http://localhost:1", True).response_class is PlainHeadersResponse


@pytest.mark.parametrize("path", ["/length", "/gzip", "/chunked"])
def test_the_direct_adapter_reads_every_kind_of_body(clean_proxy_env, pages_server, path):
    direct, usual = _both(pages_server + path)
    assert direct.content == usual.content == BODY


@pytest.mark.parametrize(
    ("path", "error", "reason"),
    [
        ("/slow", requests.exceptions.ReadTimeout, "Read timed out. (read timeout=0.3)"),
        ("/short", requests.exceptions.ChunkedEncodingError, "IncompleteRead"),
        ("/reset", requests.exceptions.ConnectionError, "Connection aborted."),
    ],
)
def test_the_direct_adapter_fails_as_requests_does(clean_proxy_env, odd_server, path, error, reason):
    url, _ = odd_server
    direct, usual = _both(url + path, timeout=(2, 0.3))
    assert type(direct) is type(usual) is error
    assert reason in client_module._root_cause(direct)
    assert client_module._is_connect_failure(direct) is client_module._is_connect_failure(usual) is False


def test_the_direct_adapter_fails_to_connect_as_requests_does(clean_proxy_env):
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}/api/accounts"
        direct, usual = _both(url, timeout=(2, 2))
    assert type(direct) is type(usual) is requests.exceptions.ConnectionError
    assert client_module._is_connect_failure(direct) and client_module._is_connect_failure(usual)
    assert "Connection refused" in client_module._root_cause(direct)


def test_the_direct_adapter_keeps_one_connection_and_replaces_a_closed_one(clean_proxy_env, odd_server):
    url, connections = odd_server
    with new_session() as session:
        for _ in range(3):
            assert session.send(link_request(url + "/ok", {}), proxies={}).status_code == 200
        assert len(connections) == 1
        time.sleep(0.6)  # the server closes the idle connection
        assert session.send(link_request(url + "/close", {}), proxies={}).status_code == 200
        assert session.send(link_request(url + "/ok", {}), proxies={}).status_code == 200
    assert len(connections) == 3


def test_what_the_direct_adapter_leaves_to_requests(clean_proxy_env, odd_server, monkeypatch):
    """Other methods, an odd target, a proxy, a client certificate: requests' own send."""
    url, _ = odd_server
    sent: list[str] = []
    usual = HTTPAdapter.send
    monkeypatch.setattr(
        HTTPAdapter, "send", lambda self, request, *a, **k: sent.append(request.url) or usual(self, request, *a, **k)
    )
    adapter = DirectGetAdapter()
    adapter.send(_request(url + "/ok"), proxies={})
    assert sent == []
    for request in (requests.Request("POST", url + "/ok", data=b"{}").prepare(), _request(url + "/a%2fb")):
        adapter.send(request, proxies={})
    with pytest.raises(requests.RequestException):  # the proxy is not there: requests tried it
        adapter.send(_request(url + "/ok"), proxies={"http": "http://127.0.0.1:9"}, timeout=1)
    assert len(sent) == 3
    adapter.close()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    cert, key = self_signed_certificate(str(tmp_path_factory.mktemp("tls")))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    connections: list[int] = []
    for url in _serve(type("Handler", (_Odd,), {"connections": connections}), context):
        yield url, cert, connections


def test_the_direct_adapter_verifies_tls_as_requests_does(clean_proxy_env, tls_server):
    url, cert, _ = tls_server
    direct, usual = _both(url + "/ok")  # requests' CA bundle does not know the server's CA
    assert type(direct) is type(usual) is requests.exceptions.SSLError
    assert client_module._is_tls_failure(direct) and "CERTIFICATE_VERIFY_FAILED" in client_module._root_cause(direct)
    direct, usual = _both(url + "/ok", verify=cert)
    assert direct.status_code == usual.status_code == 200 and direct.content == usual.content
    direct, usual = _both(url + "/ok", verify=False)
    assert direct.status_code == usual.status_code == 200


def test_the_direct_adapter_keeps_a_tls_connection_alive(clean_proxy_env, tls_server):
    """TLS 1.3 session tickets arrive after the handshake: an idle connection is not taken as closed."""
    url, cert, connections = tls_server
    before = len(connections)
    with new_session() as session:
        for _ in range(3):
            assert session.send(link_request(url + "/ok", {}), proxies={}, verify=cert).status_code == 200
    assert len(connections) - before == 1


def test_a_threads_connections_are_closed_when_the_thread_ends(clean_proxy_env, odd_server):
    """Not left to the garbage collector, which warns of each unclosed socket (ResourceWarning)."""
    url, _ = odd_server
    adapter = DirectGetAdapter()
    answers: list[int] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for _ in range(3):  # each thread its own connection, none closed by hand
            worker = threading.Thread(target=lambda: answers.append(adapter.send(_request(url + "/ok")).status_code))
            worker.start()
            worker.join()
        gc.collect()
    assert answers == [200] * 3
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


#: A process exiting with connections open in idle daemon threads and in the main thread, its
#: warnings logged (as Meltano shows them), while a daemon thread logs through a handler that
#: holds its lock for a while: the interpreter stops that thread at exit with the lock held. A
#: socket then left to the collector warned into that lock, and the process never exited.
EXIT_WITH_CONNECTIONS_OPEN = """
import logging, sys, threading, time, warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from klaviyo_core.client import new_session
from tap_klaviyo.stream import link_request

class Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"{}")
    def log_message(self, *args): pass

class SlowHandler(logging.Handler):
    def emit(self, record):
        if "unclosed" in record.getMessage():
            sys.stderr.write("unclosed socket warned\\n")
        time.sleep(0.01)  # the lock held, the GIL released

server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
server.daemon_threads = True
threading.Thread(target=server.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{server.server_port}/ok"
logging.getLogger().addHandler(SlowHandler())
logging.captureWarnings(True)
warnings.simplefilter("always", ResourceWarning)

def request_then_idle():
    new_session().send(link_request(url, {}), proxies={})
    time.sleep(60)

def log_on():
    while True:
        logging.getLogger("busy").warning("a line")

for _ in range(4):
    threading.Thread(target=request_then_idle, daemon=True).start()
threading.Thread(target=log_on, daemon=True).start()
kept = new_session()
kept.send(link_request(url, {}), proxies={})
time.sleep(0.5)
"""


def test_a_process_exits_with_connections_open_and_its_warnings_logged(clean_proxy_env):
    done = subprocess.run(
        [sys.executable, "-c", EXIT_WITH_CONNECTIONS_OPEN], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "unclosed" not in done.stderr
