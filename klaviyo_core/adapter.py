"""Sending below requests' API: plain GETs through http.client, the rest through requests' adapter.

``DirectGetAdapter`` (mounted by ``client.new_session``) sends a GET with no body, proxy or
client certificate, every page the tap reads, through one keep-alive ``http.client``
connection per thread and origin, keeping requests' TLS verification, timeouts, body decoding
and exceptions; anything else goes to ``OriginPoolAdapter``, requests' own adapter with each
origin's connection pool looked up once. Its answers' headers are read line by line
(``PlainHeadersResponse``), not by the email package's parser.

``OriginPoolAdapter``: for every request, ``HTTPAdapter.send`` asks
``get_connection_with_tls_context`` for the connection pool (the URL parsed, a pool key of some
twenty TLS and host fields built and normalised, the pool manager's locked lookup) and
``request_url`` for the request line's target (the URL parsed again). A worker sends all its
requests to one origin with the same TLS settings, so both answers are the same every time:
this adapter keeps each pool by origin, ``verify`` and ``cert``, and cuts the target out of
the URL. 6% of the instructions of a profiles page request (``scripts/instructions.py``: 3.18 →
2.98 million).

Both override the methods requests exposes for subclassing its adapter. A request through a
proxy, and a URL of a shape this module does not cut (no path, a path starting ``//``), go to
requests' own methods. tests/test_client_requests.py checks that both answer and fail as
requests' do.
"""

from __future__ import annotations

import email.parser
import http.client
import io
import os
import re
import ssl
import threading
import types
import typing as t
import weakref

import requests
from requests.adapters import HTTPAdapter
from requests.utils import DEFAULT_CA_BUNDLE_PATH, select_proxy
from typing_extensions import override
from urllib3 import HTTPHeaderDict, HTTPResponse
from urllib3.exceptions import DecodeError, NewConnectionError, ProtocolError
from urllib3.util.wait import wait_for_read

from klaviyo_core.sdk_compat import filled_response

if t.TYPE_CHECKING:
    from urllib3.connectionpool import ConnectionPool, HTTPConnectionPool


class OriginPoolAdapter(HTTPAdapter):
    """``HTTPAdapter`` whose pools are kept per (origin, ``verify``, ``cert``)."""

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._pools: dict[tuple[str, object, object], HTTPConnectionPool] = {}

    @override
    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: t.Any,
        proxies: t.Mapping[str, str] | None = None,
        cert: t.Any = None,
    ) -> ConnectionPool:
        parts = None if proxies else split_origin(request.url or "")
        if parts is None:
            return super().get_connection_with_tls_context(request, verify, proxies, cert)
        key = (parts[0], verify, cert if not isinstance(cert, list) else tuple(cert))
        pool = self._pools.get(key)
        if pool is None or pool.pool is None:  # a pool the manager closed (evicted, or the adapter closed)
            found = super().get_connection_with_tls_context(request, verify, proxies, cert)
            pool = self._pools[key] = t.cast("HTTPConnectionPool", found)
        return pool

    @override
    def request_url(self, request: requests.PreparedRequest, proxies: t.Mapping[str, str] | None) -> str:
        parts = None if proxies else split_origin(request.url or "")
        return super().request_url(request, proxies) if parts is None else parts[1]

    @override
    def close(self) -> None:
        super().close()
        self._pools.clear()


def split_origin(url: str) -> tuple[str, str] | None:
    """``scheme://host[:port]`` and the request target of an absolute URL, as requests' own
    ``request_url`` gives it (``PreparedRequest.path_url``: path and query, no fragment, no
    empty ``?``); None for a URL of another shape, which requests' methods then handle: no
    path, a path starting ``//``, credentials, or what ``urlsplit`` would strip or remove
    (surrounding blanks, tabs and line breaks)."""
    start = url.find("://")
    if start <= 0 or url != url.strip() or "\t" in url or "\n" in url or "\r" in url:
        return None
    slash = url.find("/", start + 3)
    if slash < 0 or url.startswith("//", slash):
        return None
    origin, target = url[:slash], url.partition("#")[0][slash:]
    if "@" in origin or "?" in origin or "#" in origin:  # credentials, or a query before any path
        return None
    if target.endswith("?") and target.index("?") == len(target) - 1:
        target = target[:-1]  # an empty query: urlsplit drops it
    return origin, target


#: A request target urllib3 sends unchanged: only the characters it leaves unencoded in a path
#: and query, every "%" starting an escape in capitals (urllib3 capitalises them).
_SENT_AS_IS = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-F]{2})*")


class DirectGetAdapter(OriginPoolAdapter):
    """``OriginPoolAdapter`` that sends plain GETs through http.client itself.

    A page request spent 1.3 of its 2.1 ms of CPU (at 300 ms latency) in requests and urllib3
    above http.client: the pool's queue and checks, ``Retry`` and ``Timeout`` objects, the
    target re-encoded byte by byte, a urllib3 response wrapped in a requests one, cookies
    looked for twice. A GET with no body, no proxy and no client certificate (every page the
    tap reads) goes here through one keep-alive ``http.client`` connection per thread and
    origin instead; anything else goes to requests' own ``send``.

    What requests would do is kept: TLS verified against requests' CA bundle (or ``verify``'s
    file or directory), connect and read timeouts, the body decoded as urllib3 decodes it, the
    same exceptions (``ConnectTimeout``, ``ReadTimeout``, ``SSLError``, ``ConnectionError``
    wrapping urllib3's ``NewConnectionError`` when no connection was made,
    ``ChunkedEncodingError`` for a body cut short). A kept-alive connection the server closed
    meanwhile is replaced before the request, as urllib3 replaces a dropped pooled connection;
    a failure after the request went out is raised, never retried here. Cookies are neither
    stored nor sent (Klaviyo's API authenticates by header). tests/test_client_requests.py
    compares its answers and errors with requests'.
    """

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._local = threading.local()
        self._threads: weakref.WeakSet[_ThreadConnections] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._contexts: dict[t.Any, ssl.SSLContext] = {}

    @override
    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: t.Any = None,
        verify: t.Any = True,
        cert: t.Any = None,
        proxies: t.Mapping[str, str] | None = None,
    ) -> requests.Response:
        parts = split_origin(request.url or "")
        timeouts = _timeouts(timeout)
        direct = request.method == "GET" and request.body is None and not cert
        # KlaviyoConnection passes the proxies it resolved once per origin: mostly none, and then
        # select_proxy (which parses the URL) cannot find one.
        through_proxy = bool(proxies and select_proxy(request.url or "", dict(proxies)))
        if not direct or timeouts is None or parts is None or through_proxy:
            return super().send(request, stream, timeout, verify, cert, proxies)
        if not _SENT_AS_IS.fullmatch(parts[1]):  # urllib3 would re-encode it: its send does
            return super().send(request, stream, timeout, verify, cert, proxies)
        if isinstance(verify, str) and not os.path.exists(verify):
            return super().send(request, stream, timeout, verify, cert, proxies)  # requests' error for it
        answer, body = self._exchange(parts[0], parts[1], request, verify, timeouts)
        return filled_response(request, answer.status, answer.reason, answer.getheaders(), body, self)

    def _exchange(
        self, origin: str, target: str, request: requests.PreparedRequest, verify: t.Any, timeouts: tuple
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """The answer and its decoded body."""
        connect, read = timeouts
        connection = self._connection(origin, verify)
        if connection.sock is not None and _dropped(connection):
            connection.close()
        if connection.sock is None:
            _connect(connection, connect, request)
        connection.sock.settimeout(read)
        answered = False
        try:
            connection.request("GET", target, headers=request.headers or {})
            answer = connection.getresponse()
            answered = True
            body = answer.read()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise _read_error(exc, request, answered, read) from exc
        return answer, _decoded(answer, body, request)

    def _connection(self, origin: str, verify: t.Any) -> http.client.HTTPConnection:
        """This thread's connection to ``origin`` (not connected yet when new)."""
        mine: _ThreadConnections | None = getattr(self._local, "connections", None)
        if mine is None:
            mine = self._local.connections = _ThreadConnections()
            with self._lock:
                self._threads.add(mine)
        key = (origin, verify)
        connection = mine.by_key.get(key)
        if connection is None:
            scheme, _, host = origin.partition("://")
            if scheme.lower() == "https":
                connection = http.client.HTTPSConnection(host, context=self._context(verify))
            else:
                connection = http.client.HTTPConnection(host)
            connection.response_class = PlainHeadersResponse
            mine.by_key[key] = connection
        return connection

    def _context(self, verify: t.Any) -> ssl.SSLContext:
        """The TLS settings of ``verify``: requests' CA bundle, a CA file or directory, or none."""
        with self._lock:
            context = self._contexts.get(verify)
            if context is None:
                if verify is False:
                    context = ssl.create_default_context()
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                else:
                    location = DEFAULT_CA_BUNDLE_PATH if verify is True else str(verify)
                    if os.path.isdir(location):
                        context = ssl.create_default_context(capath=location)
                    else:
                        context = ssl.create_default_context(cafile=location)
                context.minimum_version = ssl.TLSVersion.TLSv1_2  # as urllib3's default context
                self._contexts[verify] = context
            return context

    @override
    def close(self) -> None:
        super().close()
        with self._lock:
            threads = list(self._threads)
        for mine in threads:
            _close_all(mine.by_key)


class _ThreadConnections:
    """One thread's keep-alive connections, closed when the thread ends or at exit.

    A socket left to the garbage collector warns (``ResourceWarning``, which Meltano shows)
    from wherever the collector runs: at interpreter exit, that warning went to the log while
    a daemon thread stopped by the exit held the log handler's lock, and the tap never
    exited. So, as urllib3 does for its pools, a finalizer closes them: when this object goes
    (with its thread's ``threading.local``), or at exit, before the interpreter tears down.
    """

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, t.Any], http.client.HTTPConnection] = {}
        weakref.finalize(self, _close_all, self.by_key)


#: A header line the email package reads as ``name: value`` and nothing more: a name of its
#: characters (feedparser's ``headerRE``), no line break but the one ending it (the email
#: package splits at a lone ``\r`` too), not a folded continuation.
_PLAIN_HEADER = re.compile(rb"[\x21-\x39\x3b-\x7e]+:[^\r\n]*\r?\n")


def parse_plain_headers(
    fp: t.BinaryIO, _class: type[http.client.HTTPMessage] = http.client.HTTPMessage
) -> http.client.HTTPMessage:
    """``http.client.parse_headers`` without the email package's parser when every line is plain.

    The email package's feedparser was 13% of a profiles page request's CPU (0.15 of 1.17 ms
    at 300 ms latency, ``scripts/bench_requests.py --profile``) to read a few ``name: value``
    lines. Plain lines are stored as its compat32 policy stores them
    (``set_raw``: the value without leading blanks and the line break); a header block with
    any other line (folded, odd characters, no colon) goes to the email package as before.
    """
    lines = http.client._read_headers(fp)  # type: ignore[attr-defined]  # noqa: SLF001 - the stdlib's reading and limits
    fields = lines[:-1]  # the last is what ended the block: a blank line, or b"" where the stream ended
    if not all(_PLAIN_HEADER.fullmatch(line) for line in fields):
        return email.parser.Parser(_class=_class).parsestr(b"".join(lines).decode("iso-8859-1"))
    message = _class()
    for line in fields:
        name, _, value = line.decode("iso-8859-1").partition(":")
        message.set_raw(name, value.lstrip(" \t").rstrip("\r\n"))
    return message


class PlainHeadersResponse(http.client.HTTPResponse):
    """``http.client.HTTPResponse`` whose headers are read by :func:`parse_plain_headers`.

    ``begin`` is http.client's own code, bound to a copy of http.client's globals (its
    constants and functions, taken at import) but for ``parse_headers``: no stdlib code is
    copied, and a Python whose ``begin`` no longer calls ``parse_headers`` fails
    tests/test_client_requests.py loudly.
    """

    begin = types.FunctionType(
        http.client.HTTPResponse.begin.__code__,
        {**vars(http.client), "parse_headers": parse_plain_headers},
        "begin",
        http.client.HTTPResponse.begin.__defaults__,
        http.client.HTTPResponse.begin.__closure__,
    )


def _close_all(connections: dict[tuple[str, t.Any], http.client.HTTPConnection]) -> None:
    for connection in list(connections.values()):  # a copy: the owning thread may still add one
        connection.close()


def _timeouts(timeout: t.Any) -> tuple[float | None, float | None] | None:
    """requests' ``timeout`` as (connect, read); None for a form left to requests (urllib3's ``Timeout``)."""
    if timeout is None or isinstance(timeout, (int, float)):
        return timeout, timeout
    if isinstance(timeout, tuple) and len(timeout) == 2:
        return timeout
    return None


def _connect(connection: http.client.HTTPConnection, timeout: float | None, request: requests.PreparedRequest) -> None:
    """Connect (and shake hands), failing as requests fails to connect."""
    connection.timeout = timeout
    try:
        connection.connect()
    except ssl.SSLError as exc:
        connection.close()
        raise requests.exceptions.SSLError(exc, request=request) from exc
    except TimeoutError as exc:
        connection.close()
        message = f"Connection to {connection.host} timed out. (connect timeout={timeout})"
        raise requests.exceptions.ConnectTimeout(message, request=request) from exc
    except OSError as exc:
        connection.close()
        message = f"Failed to establish a new connection: {exc}"
        failed = NewConnectionError(connection, message)  # type: ignore[arg-type]  # kept, not used
        raise requests.exceptions.ConnectionError(failed, request=request) from exc


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """Whether the idle connection's socket is readable: closed by the server (or sent garbage)."""
    try:
        return wait_for_read(connection.sock, timeout=0.0)
    except OSError:
        return True


def _read_error(
    exc: BaseException, request: requests.PreparedRequest, answered: bool, timeout: float | None
) -> requests.RequestException:
    """The requests exception for a failure after connecting (before the answer's head, or in
    its body), worded as urllib3 words it."""
    if isinstance(exc, ssl.SSLError) and not isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return requests.exceptions.SSLError(exc, request=request)
    if isinstance(exc, TimeoutError):
        return requests.exceptions.ReadTimeout(f"Read timed out. (read timeout={timeout})", request=request)
    if answered:  # the body cut short: what requests raises reading it
        return requests.exceptions.ChunkedEncodingError(
            ProtocolError(f"Connection broken: {exc!r}", exc), request=request
        )
    return requests.exceptions.ConnectionError(ProtocolError("Connection aborted.", exc), request=request)


def _decoded(answer: http.client.HTTPResponse, body: bytes, request: requests.PreparedRequest) -> bytes:
    """The body decoded by its ``Content-Encoding`` (gzip, deflate...) by urllib3's own decoders."""
    encoding = (answer.getheader("Content-Encoding") or "").strip().lower()
    if not body or encoding in ("", "identity"):
        return body
    headers = HTTPHeaderDict(answer.getheaders())
    try:
        return HTTPResponse(io.BytesIO(body), headers, preload_content=False, decode_content=True).read()
    except DecodeError as exc:
        raise requests.exceptions.ContentDecodingError(exc, request=request) from exc
