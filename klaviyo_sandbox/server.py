"""HTTP front end: routing, auth, revision header, rate limits, fault injection, admin."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import traceback
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

from . import api, scopes
from .bulk import BulkWrites
from .config import SandboxConfig
from .endpoints import SLOW_ADDITIONAL
from .faults import FaultInjector
from .jobs import MAX_BODY, JobManager
from .oauth import OAuthServer
from .ratelimit import RateLimiter
from .render import MEDIA_TYPE, ApiError
from .script import Recorded, Script
from .store import Store
from .util import parse_ts

REVISION_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})(\.[A-Za-z0-9_-]+)?$")
MAX_READ = 64 * 1024 * 1024  # bodies larger than this are not even read (413 + close)
HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway"
    b"</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
)


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes = b"", headers: dict | None = None, ctype: str | None = MEDIA_TYPE):
        self.status, self.body = status, body
        self.headers = dict(headers or {})
        if ctype and body:
            self.headers.setdefault("Content-Type", ctype)


def error_response(err: ApiError) -> Response:
    return Response(err.status, err.body(), err.headers)


class App:
    """Everything a request handler needs; one per Sandbox."""

    def __init__(self, cfg: SandboxConfig):
        self.cfg = cfg
        self.store = Store(cfg)  # the first account: API keys open it
        # More accounts behind the same token endpoint, as one OAuth app installed in several
        # Klaviyo accounts: each has its own data (seed + k) and is opened by the tokens it issued.
        self.accounts = {self.store.ds.account_id: self.store}
        for k in range(1, cfg.accounts):
            other = Store(dataclasses.replace(cfg, seed=cfg.seed + k))
            self.accounts[other.ds.account_id] = other
        self.limiter = RateLimiter(cfg.rate_limit_scale, cfg.rate_window)
        self.faults = FaultInjector(cfg.seed, cfg.fault_rate, cfg.faults)
        self.oauth = OAuthServer(
            cfg.client_id,
            cfg.client_secret,
            cfg.token_seconds,
            accounts=list(self.accounts),
            token_prefix=cfg.token_prefix,
        )
        for store in self.accounts.values():
            store.jobs = JobManager(store, cfg.job_seconds)
            store.bulk = BulkWrites(store, cfg.job_seconds)
            store.oauth = self.oauth
        self.served = threading.local()  # the account the current thread's request was answered from
        self.script = Script(cfg.record_requests)  # a test's scripted answers and request record
        self.stopping = threading.Event()

    # ------------------------------------------------------------ API pipeline
    def handle_api(self, method, path, raw_query, params, headers, body, base) -> tuple[Response, str | None]:
        found = api.route(method, path)
        if found is None:
            return error_response(ApiError(404, "not_found", f"No endpoint matches {path}.")), None
        op, fn, match = found
        if op == "405":
            return error_response(ApiError(405, "method_not_allowed", f"Method {method} not allowed.")), None
        principal, account = self.authenticate(headers.get("Authorization") or "")
        self.served.account = account  # logged even when refused: whose token was presented
        if principal is None:
            return error_response(ApiError(401, "not_authenticated", "Missing or invalid private key.")), op
        if self.lacks_scope(headers.get("Authorization") or "", op):
            return error_response(
                ApiError(403, "permission_denied", "You do not have permission to perform this action.")
            ), op
        if not valid_revision(headers.get("revision")):
            return error_response(
                ApiError(
                    400,
                    "invalid",
                    "Missing or invalid `revision` header. Please provide a valid revision "
                    "(format: YYYY-MM-DD[.suffix]), e.g. 2026-07-15.",
                    parameter="revision",
                )
            ), op
        req = api.Request(self, method, path, raw_query, params, headers, body, base)
        req.store = self.accounts[cast(str, account)]  # a credential opens exactly the account that issued it
        req.match, req.op = match, op
        limited = self.rate_limit(req, principal)
        if isinstance(limited, Response):
            return limited, op
        try:
            status, payload = fn(req)
            resp = Response(status, payload)
        except ApiError as err:
            resp = error_response(err)
        resp.headers.update(limited)
        return resp, op

    def authenticate(self, auth: str) -> tuple[str | None, str | None]:
        """(rate-limit principal, account id) of a credential; principal None when it opens nothing
        (the account is still told for an expired token, for the request log)."""
        primary = self.store.ds.account_id
        if auth.startswith("Klaviyo-API-Key "):
            key = auth[len("Klaviyo-API-Key ") :].strip()
            known = key == self.cfg.api_key or key in self.cfg.extra_api_keys or key in self.cfg.key_scopes
            return ("key", primary) if known else (None, None)
        if auth[:7].lower() == "bearer ":
            info = self.oauth.check_access(auth[7:].strip())
            if not info:
                expired = self.oauth.access.get(auth[7:].strip())
                return None, (self.oauth.account_of(expired) if expired else None)
            account = self.oauth.account_of(info)
            # OAuth apps get their own quota per installed app instance (Klaviyo docs).
            return f"oauth:{info['client_id']}:{account}", account
        return None, None

    def lacks_scope(self, auth: str, op: str) -> bool:
        """Whether a key granted only some scopes (config `key_scopes`) lacks one `op` needs."""
        key = auth[len("Klaviyo-API-Key ") :].strip() if auth.startswith("Klaviyo-API-Key ") else None
        if key is None or key not in self.cfg.key_scopes:
            return False
        return bool(scopes.missing(op, tuple(self.cfg.key_scopes[key])))

    def rate_limit(self, req, principal: str):
        """RateLimit-* headers to add, or a 429 Response."""
        if not self.limiter.enabled:
            return {}
        ep, key = req.ep, f"{principal}:{req.op}"
        burst, steady = ep.burst, ep.steady
        extra = set(req.list_param(f"additional-fields[{ep.rtype}]"))
        for name, (b, s) in SLOW_ADDITIONAL.items():
            if name in extra:  # e.g. predictive_analytics has its own, lower limit
                key, burst, steady = f"{key}:{name}", b, s
        ok, info = self.limiter.check(key, burst, steady, ep.daily)
        if ok:
            return info
        err = ApiError(
            429,
            "throttled",
            f"Request was throttled. Expected available in {info} second{'s' if info != 1 else ''}.",
            headers={"Retry-After": str(info)},
        )
        return error_response(err)

    # ------------------------------------------------------------ admin (never faulted or limited)
    def handle_admin(self, method, path, params) -> Response:
        q = dict(params)
        store = self.store
        try:
            if path == "/__sandbox/touch" and method == "POST":
                out: Any = store.touch(q.get("stream", "profiles"), int(q.get("n", "10")))
            elif path == "/__sandbox/event" and method == "POST":
                out = self.add_events(q)
            elif path == "/__sandbox/archive" and method == "POST":
                out = {"archived": store.archive(q.get("stream", ""), int(q.get("n", "1")))}
            elif path == "/__sandbox/state" and method == "GET":
                out = self.state()
            elif path == "/__sandbox/requests" and method == "GET":
                out = list(store.request_log)[-int(q.get("limit", "100")) :]
            elif path == "/__sandbox/sign-in" and method == "POST":  # the account the consent page approves for
                out = {"account": self.oauth.sign_in(q.get("account", ""))}
            elif path == "/__sandbox/health":
                out = {"ok": True}
            else:
                return Response(
                    404, json.dumps({"error": "unknown sandbox endpoint"}).encode(), ctype="application/json"
                )
        except ValueError as exc:
            return Response(400, json.dumps({"error": str(exc)}).encode(), ctype="application/json")
        return Response(200, json.dumps(out, ensure_ascii=False).encode(), ctype="application/json")

    def add_events(self, q: dict) -> dict:
        """`n` new events dated `datetime` (default now): late-arriving events when in the past."""
        at = None
        if q.get("datetime"):
            at = parse_ts(q["datetime"])
            if at is None:
                raise ValueError(f"datetime {q['datetime']!r} is not an ISO 8601 date-time")
        return {"events": [self.store.add_event(at=at)["id"] for _ in range(int(q.get("n", "1")))]}

    def state(self) -> dict:
        ds, s = self.store.ds, self.store
        return {
            "version": s.version,
            "now": ds.iso(s.now()),
            "counts": {
                "profiles": ds.n_profiles,
                "events": ds.n_events,
                "campaigns": ds.n_campaigns,
                "flows": ds.n_flows,
                "lists": ds.n_lists,
                "segments": ds.n_segments,
                "metrics": ds.n_metrics,
                "reviews": ds.n_reviews,
            },
            "overlay": {
                "profiles_patched": len(s.profile_patch),
                "profiles_new": len(s.new_profiles),
                "events_new": len(s.new_events),
                "lists_new": len(s.new_lists),
                "jobs": len(s.jobs.jobs),
            },
            "counters": dict(s.counters),
            "accounts": list(self.accounts),
        }


def scripted_response(answer: tuple) -> Response:
    """The Response for a test's scripted (status, body[, headers]); body None: a generic error."""
    status, body, headers = (*answer, {})[:3]
    if body is None and status >= 400:
        return error_response(ApiError(status, "error", "A scripted failure.", headers=headers))
    if body is None or isinstance(body, bytes):
        return Response(status, body or b"", headers)
    return Response(status, json.dumps(body).encode(), headers)


def valid_revision(value: str | None) -> bool:
    m = REVISION_RE.match(value or "")
    if not m:
        return False
    try:
        date.fromisoformat(m.group(1))
    except ValueError:
        return False
    return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as Klaviyo's front end (and any web server) sends: an answer's body is written
    # after its headers, and with Nagle's algorithm a small body waited for the ACK of the headers,
    # which clients delay up to 40 ms (tests/sandbox/test_sandbox_transport.py).
    disable_nagle_algorithm = True
    server_version = "KlaviyoSandbox/1.0"
    sys_version = ""

    def log_message(self, fmt, *args):  # the store keeps a request log instead
        pass

    def handle(self):
        # A client that hangs up abruptly (killed mid-request, or giving up on a stalled answer)
        # is routine for a server: no traceback on stderr, as Klaviyo would not show one either.
        try:
            super().handle()
        except (ConnectionResetError, BrokenPipeError, TimeoutError, ssl.SSLError):  # SSLError: a refused handshake
            self.close_connection = True

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def do_PUT(self):
        self.dispatch("PUT")

    # ------------------------------------------------------------
    def dispatch(self, method: str):
        app: App = cast(Server, self.server).app
        split = urlsplit(self.path)
        path = split.path.rstrip("/") or "/"
        params = parse_qsl(split.query, keep_blank_values=True)
        body = self.read_body()
        if app.cfg.latency_ms:
            time.sleep(app.cfg.latency_ms / 1000.0)
        if path.startswith("/__sandbox"):
            self.send(app.handle_admin(method, path, params))
            return
        recorded, scripted = None, None
        if path.startswith(("/api/", "/oauth/")):
            recorded, scripted = app.script.receive(method, path, split.query, body or b"", self.headers)
        if scripted is not None:
            resp = scripted_response(scripted)
            app.store.log_request(method, path, resp.status, None, "scripted")
            self.send(resp, recorded=recorded)
            return
        fault, u = (None, 0.0)
        if path.startswith("/api/") or path == "/oauth/token":
            fault, u = app.faults.pick()
        if fault in ("reset", "timeout"):
            self.abort(app, fault, method, path)
            return
        if fault == "slow":
            app.stopping.wait(FaultInjector.slow_seconds(u))
        app.served.account = None
        resp, op = self.respond_to(app, method, path, split.query, params, body, fault)
        account = app.served.account
        app.accounts.get(account, app.store).log_request(method, path, resp.status, op, fault, account)
        self.send(resp, truncate=fault == "truncated", recorded=recorded)

    def respond_to(self, app: App, method, path, raw_query, params, body, fault):
        if body is None:
            return error_response(ApiError(413, "payload_too_large", "The maximum allowed payload size is 5MB.")), None
        if fault in ("500", "502", "503", "504"):
            status = int(fault)
            return error_response(ApiError(status, "error", "An injected server error occurred. Please retry.")), None
        if fault == "html":
            return Response(502, HTML_502, ctype="text/html; charset=utf-8"), None
        if fault == "429":
            return error_response(
                ApiError(
                    429,
                    "throttled",
                    "Request was throttled. Expected available in 1 second.",
                    headers={"Retry-After": "1"},
                )
            ), None
        try:
            if path.startswith("/oauth/"):
                return self.oauth(app, method, path, params, body), "oauth"
            host = self.headers.get("Host") or f"{app.cfg.host}:{cast(Server, self.server).server_port}"
            scheme = "https" if app.cfg.tls_cert else "http"
            return app.handle_api(method, path, raw_query, params, self.headers, body, f"{scheme}://{host}")
        except Exception:  # noqa: BLE001 - a sandbox bug must still produce an HTTP answer
            traceback.print_exc(file=sys.stderr)
            return error_response(ApiError(500, "error", "Internal sandbox error.")), None

    def oauth(self, app: App, method, path, params, body) -> Response:
        if path == "/oauth/authorize" and method == "GET":
            status, headers, payload = app.oauth.authorize(dict(params))
        elif path == "/oauth/token" and method == "POST":
            status, headers, payload = app.oauth.token(self.headers, body)
        elif path == "/oauth/revoke" and method == "POST":
            status, headers, payload = app.oauth.revoke(self.headers, body)
        else:
            return Response(404, b'{"error":"not_found"}', ctype="application/json")
        return Response(status, payload, headers, ctype="application/json")

    def read_body(self) -> bytes | None:
        """Request body, or None when it is too large to accept (413)."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_READ:
            self.close_connection = True
            return None
        data = self.rfile.read(length) if length else b""
        return None if len(data) > MAX_BODY else data

    def send(self, resp: Response, truncate: bool = False, recorded: Recorded | None = None):
        if recorded is not None:
            recorded.status = resp.status
        app: App = cast(Server, self.server).app
        if app.cfg.gzip and len(resp.body) >= GZIP_MIN_BYTES and accepts_gzip(self.headers.get("Accept-Encoding")):
            resp.body = gzip.compress(resp.body, compresslevel=GZIP_LEVEL, mtime=0)
            resp.headers["Content-Encoding"] = "gzip"
            resp.headers["Vary"] = "Accept-Encoding"
        try:
            self.send_response(resp.status)
            for k, v in resp.headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(resp.body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if truncate:  # promise the full length, deliver half, hang up
                self.wfile.write(resp.body[: len(resp.body) // 2])
                self.wfile.flush()
                self.close_connection = True
            elif resp.body:
                self.wfile.write(resp.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def abort(self, app: App, fault: str, method: str, path: str):
        app.store.log_request(method, path, 0, None, fault)
        self.close_connection = True
        if fault == "timeout":  # stall past the client's read timeout, then hang up (FIN)
            app.stopping.wait(app.cfg.timeout_seconds)
            return
        # reset: SO_LINGER(on, 0) makes close() send RST instead of FIN. rfile holds a reference
        # to the socket (makefile), so it is closed first for close() to really release the fd.
        # wfile stays open: BaseHTTPRequestHandler flushes it after every request (a closed
        # wfile raised "ValueError: I/O operation on closed file" there), and it holds no
        # reference, so flushing it is a no-op and finish() closes it quietly.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()
        self.connection.close()


#: Answers smaller than this go uncompressed (as Cloudflare, in front of Klaviyo, does for tiny bodies).
GZIP_MIN_BYTES = 1024
#: zlib level: the sandbox shares the CPUs with the client it serves; the client's cost is the same.
GZIP_LEVEL = 4


def accepts_gzip(header: str | None) -> bool:
    """Whether an Accept-Encoding header allows gzip (``gzip`` listed, not with ``q=0``)."""
    for item in (header or "").split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def self_signed_certificate(directory: str) -> tuple[str, str]:
    """(cert, key) PEM paths in ``directory``: made with the openssl CLI unless both exist.

    The certificate is its own CA, for ``localhost`` and ``127.0.0.1``: a client trusts it
    with ``REQUESTS_CA_BUNDLE=<directory>/cert.pem`` (verification stays on).
    """
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    if not (os.path.exists(cert) and os.path.exists(key)):
        os.makedirs(directory, exist_ok=True)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-keyout", key,
             "-out", cert, "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-addext", "basicConstraints=critical,CA:TRUE"],
            check=True, capture_output=True,
        )  # fmt: skip
    return cert, key


class Server(ThreadingHTTPServer):
    app: App  # set by Sandbox.start, read by the handlers
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class Sandbox:
    """A running sandbox; use as a context manager or call start()/stop()."""

    def __init__(self, config: SandboxConfig | None = None, **overrides):
        self.config = config or SandboxConfig(**overrides)
        self.app: App | None = None
        self.httpd: Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Sandbox:
        self.app = App(self.config)
        self.httpd = Server((self.config.host, self.config.port), Handler)
        self.httpd.app = self.app
        if self.config.tls_cert:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.config.tls_cert, self.config.tls_key)
            # Handshakes happen in the handler threads (first read), not in the accepting one.
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True, do_handshake_on_connect=False)
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="klaviyo-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def stop(self):
        if self.httpd is None:
            return
        app = self._running
        app.stopping.set()
        for store in app.accounts.values():
            store.jobs.shutdown()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.httpd = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def _running(self) -> App:
        if self.app is None:
            raise RuntimeError("The sandbox is not started: call start() or use it in a with statement.")
        return self.app

    @property
    def port(self) -> int:
        if self.httpd is None:
            raise RuntimeError("The sandbox is not started: call start() or use it in a with statement.")
        return self.httpd.server_port

    @property
    def base_url(self) -> str:
        host = self.config.host
        host = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
        scheme = "https" if self.config.tls_cert else "http"
        return f"{scheme}://{host}:{self.port}"

    @property
    def api_key(self) -> str:
        return self.config.api_key

    @property
    def store(self) -> Store:
        return self._running.store

    @property
    def oauth(self) -> OAuthServer:
        return self._running.oauth

    def script(self, method: str, path_pattern: str, answers, when=None) -> None:
        """Answer the next requests matching ``method`` and ``path_pattern`` with ``answers`` (see script.py)."""
        self._running.script.add(method, path_pattern, answers, when)

    @property
    def requests(self) -> list[Recorded]:
        """Every /api/* and /oauth/* request received, in order (with ``record_requests=True``)."""
        return self._running.script.requests

    @property
    def accounts(self) -> dict[str, Store]:
        """Account id -> its store; the first is ``store``."""
        return self._running.accounts
