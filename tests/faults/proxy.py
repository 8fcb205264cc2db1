"""A loopback proxy in front of the sandbox that can rewrite Klaviyo's answers.

The sandbox serves realistic data; the proxy adds what it cannot produce on demand:
odd-but-valid values (very long strings, every kind of Unicode, nulls where values are
usual) and empty pages (first, middle and last) in a paginated collection. It also keeps
every JSON:API document it served, so a test can compare what "Klaviyo" sent with what
the tap emitted.

Empty pages ride on the cursor: a rewritten ``links.next`` carries ``__empty=<n>`` and the
proxy answers that URL itself with ``{"data": [], "links": {"next": <the real next>}}``.
"""

from __future__ import annotations

import http.client
import json
import threading
import typing as t
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}

Tamper = t.Callable[[str, dict], None]  # (request path, JSON:API document) -> edits in place


class TamperProxy:
    def __init__(self, upstream: str, *, tamper: Tamper | None = None, empty_pages: t.Collection[str] = ()) -> None:
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port or 80
        self.tamper = tamper
        self.empty_pages = set(empty_pages)  # collection paths that get empty first/middle/last pages
        self.served: list[tuple[str, dict]] = []
        self.empty_served = 0
        self._lock = threading.Lock()
        self._counter = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: t.Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy.handle(self, "GET")

            def do_POST(self) -> None:
                proxy.handle(self, "POST")

            def do_DELETE(self) -> None:
                proxy.handle(self, "DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> TamperProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: t.Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- one exchange ---------------------------------------------------------------------------

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        parts = urlsplit(handler.path)
        query = parse_qsl(parts.query, keep_blank_values=True)
        empty = dict(query).get("__empty")
        if empty is not None:
            rest = [(k, v) for k, v in query if k != "__empty"]
            real_next = dict(rest).get("__then")
            document = {"data": [], "links": {"self": self.base_url + handler.path}}
            if real_next:
                document["links"]["next"] = real_next
            with self._lock:
                self.empty_served += 1
            self._send(handler, 200, {"Content-Type": "application/vnd.api+json"}, json.dumps(document).encode())
            return
        forward = handler.path
        replayed = "__real" in dict(query)  # the real first page, after the empty one served for it
        if replayed:
            rest = urlencode([(k, v) for k, v in query if k != "__real"])
            forward = urlunsplit(("", "", parts.path, rest, ""))
        upstream = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream.request(method, forward, body=body or None, headers=headers)
        response = upstream.getresponse()
        payload = response.read()
        out_headers = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP}
        upstream.close()
        if response.status == 200 and parts.path.startswith("/api/") and method == "GET":
            payload = self._rewrite(
                parts.path, forward, payload, first=not replayed and "page[cursor]" not in dict(query)
            )
        self._send(handler, response.status, out_headers, payload)

    def _rewrite(self, path: str, full_path: str, payload: bytes, *, first: bool) -> bytes:
        document = json.loads(payload)
        if self.tamper is not None:
            self.tamper(path, document)
        if path in self.empty_pages and isinstance(document.get("data"), list):
            links = document.setdefault("links", {})
            with self._lock:
                self._counter += 1
                n = self._counter
            if links.get("next"):
                links["next"] = self._empty_url(path, n, then=links["next"])  # an empty page in the middle
            else:
                links["next"] = self._empty_url(path, n, then=None)  # an empty page after the last
            if first:  # the first page the tap sees is empty too: serve the real one after it
                self.served.append((path, json.loads(json.dumps(document))))
                return json.dumps(
                    {"data": [], "links": {"next": self._empty_url(path, -n, then=None, real=full_path)}}
                ).encode()
        self.served.append((path, document))
        return json.dumps(document).encode()

    def _empty_url(self, path: str, n: int, *, then: str | None, real: str | None = None) -> str:
        if real is not None:  # "empty page" whose next is the real first page, marked to pass through
            parts = urlsplit(real)
            query = [*parse_qsl(parts.query, keep_blank_values=True), ("__real", str(n))]
            return self.base_url + urlunsplit(("", "", parts.path, urlencode(query), ""))
        query = [("__empty", str(n))] + ([("__then", then)] if then else [])
        return f"{self.base_url}{path}?{urlencode(query)}"

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, headers: dict, payload: bytes) -> None:
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)
