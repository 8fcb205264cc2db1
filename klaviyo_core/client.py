"""One Klaviyo connection: headers, credentials, pacing, retries and error mapping.

The tap's streams plug these into the Singer SDK's request hooks (or, fetching
in parallel, call ``KlaviyoConnection.send`` from worker threads); the target calls
``KlaviyoConnection.request`` directly. Either way a request is paced by the
endpoint's limiter, retried on transient failures (honouring ``Retry-After``),
re-sent once after a 401 when the credentials can be renewed, and any final
failure becomes a one-line ``KlaviyoError`` naming the endpoint.

Thread safety: one connection serves every thread. Each thread gets its own
``requests.Session`` (a session's connection pool is not meant to be shared),
limiters and credentials are shared under their own locks.
"""

from __future__ import annotations

import logging
import os
import random
import re
import socket
import ssl
import threading
import time
import typing as t
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.utils import resolve_proxies

from klaviyo_core import endpoints
from klaviyo_core.adapter import DirectGetAdapter
from klaviyo_core.auth import KlaviyoAuth, auth_from_config
from klaviyo_core.errors import (
    KlaviyoAPIError,
    KlaviyoError,
    KlaviyoQuotaExhausted,
    KlaviyoRetriableError,
    json_document,
    raise_for_response,
)
from klaviyo_core.ratelimit import EndpointLimiter, RateLimiters
from klaviyo_core.redact import redact_http_logs
from klaviyo_core.retry import DEFAULT_MAX_TRIES, RETRIABLE_EXCEPTIONS, wait_generator
from klaviyo_core.sdk_compat import read_body
from klaviyo_core.settings import DEFAULT_BASE_URL, DEFAULT_REQUEST_TIMEOUT, DEFAULT_REVISION

try:  # the SDK's own ``msgspec`` extra: about twice as fast as json.loads on Klaviyo pages
    import msgspec
except ImportError:  # pragma: no cover - the stdlib parser gives the same documents
    msgspec = None  # type: ignore[assignment]

JSONAPI = "application/vnd.api+json"
#: (connect, read) seconds: fail fast on a dead host, allow Klaviyo's slow pages.
#: The read timeout is the ``request_timeout`` setting.
DEFAULT_TIMEOUT = (10.0, DEFAULT_REQUEST_TIMEOUT)

#: How long one request may keep waiting on 429s before the run gives up (an hour:
#: a quota shared with busy integrations recovers within Klaviyo's one-minute window,
#: and a daily limit's Retry-After says at once that waiting is pointless).
DEFAULT_MAX_THROTTLED_SECONDS = 3600.0
#: A 429's wait is stretched by up to this fraction (at least 0.5 s): threads that were
#: throttled together then do not all come back in the same instant.
RETRY_AFTER_JITTER = 0.25
#: A ``Retry-After`` longer than this is not waited for: it means a daily quota (the
#: Reporting API's 225 a day) is spent, and sleeping for hours helps no one.
MAX_RETRY_AFTER_SECONDS = 300.0

Send = t.Callable[..., requests.Response]


class KlaviyoConnection:
    """Everything requests to one Klaviyo account share."""

    def __init__(
        self,
        config: t.Mapping[str, t.Any],
        *,
        logger: logging.Logger | None = None,
        auth: KlaviyoAuth | None = None,
        max_tries: int = DEFAULT_MAX_TRIES,
        timeout: tuple[float, float] | None = None,
        max_throttled_seconds: float = DEFAULT_MAX_THROTTLED_SECONDS,
        limiters: RateLimiters | None = None,
    ) -> None:
        self.base_url = str(config.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
        self.revision = str(config.get("revision") or DEFAULT_REVISION)
        self.auth = auth or auth_from_config(config)
        # every request reports its answer (``wrap``), so endpoints may start slowly; a connection
        # that differs only in its retry policy passes another's limiters: the account's limits are shared
        self.limiters = limiters or RateLimiters(float(config.get("rate_limit_share") or 1.0), slow_start=True)
        self.logger = logger or logging.getLogger("klaviyo")
        self.max_tries = max_tries
        self.timeout = timeout or (DEFAULT_TIMEOUT[0], float(config.get("request_timeout") or DEFAULT_TIMEOUT[1]))
        self.user_agent = str(config.get("user_agent") or "klaviyo-singer")
        self.max_throttled_seconds = max_throttled_seconds
        redact_http_logs()  # urllib3 logs request URLs at DEBUG, and queries may hold emails
        self._local = threading.local()
        self._proxies: dict[tuple[str, str], dict[str, str]] = {}  # by (scheme, host:port); see _proxies_for
        #: Whether Klaviyo has answered once: before that, no connection means a wrong
        #: host or a network down, and retrying for minutes only delays the message.
        self._answered_once = False
        self._send = self.wrap(self._send_once)

    @property
    def session(self) -> requests.Session:
        """This thread's session (keep-alive connections are per thread)."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = new_session()
        return session

    def stats(self) -> list[dict[str, t.Any]]:
        """Requests, rate-limit waits and 429s so far, per endpoint limiter."""
        return [limiter.stats() for limiter in self.limiters.all()]

    @property
    def headers(self) -> dict[str, str]:
        return {"revision": self.revision, "Accept": JSONAPI, "User-Agent": self.user_agent}

    def url(self, path_or_url: str) -> str:
        return urljoin(self.base_url + "/", path_or_url)

    # -- the request policy, shared with the SDK's hooks -------------------------

    def limiter_for(self, request: requests.PreparedRequest) -> EndpointLimiter | None:
        parts = urlsplit(request.url or "")
        endpoint = endpoints.match(request.method or "GET", parts.path)
        if endpoint is None:
            return None
        return self.limiters.get(*endpoint.limits_for(parts.query))

    def wrap(self, send: Send) -> Send:
        """Wrap ``send(prepared_request, ...)`` with pacing, retries and one re-auth."""

        def paced(request: requests.PreparedRequest, *args: t.Any, **kwargs: t.Any) -> requests.Response:
            limiter = self.limiter_for(request)
            ticket = limiter.acquire() if limiter else None
            try:
                response = send(request, *args, **kwargs)
            except KlaviyoRetriableError as exc:
                if limiter:
                    if _status(exc) == 429:
                        limiter.throttled_for(exc.retry_after)
                    elif exc.retry_after is not None:
                        limiter.pause(exc.retry_after)
                    if exc.response is not None:
                        limiter.observe(exc.response.headers, ticket)
                raise
            else:
                if limiter:
                    limiter.observe(response.headers, ticket)
                    limiter.succeeded()
                return response
            finally:
                if limiter:
                    limiter.answered(ticket)

        def retried(request: requests.PreparedRequest, *args: t.Any, **kwargs: t.Any) -> requests.Response:
            return self._retry(paced, request, *args, **kwargs)

        def guarded(request: requests.PreparedRequest, *args: t.Any, **kwargs: t.Any) -> requests.Response:
            try:
                try:
                    return retried(request, *args, **kwargs)
                except KlaviyoAPIError as exc:
                    if exc.status == 401 and self.auth.renew_after_unauthorized():
                        return retried(request, *args, **kwargs)
                    raise
            except RETRIABLE_EXCEPTIONS as exc:
                raise self._gave_up(request, exc) from exc

        return guarded

    def _retry(
        self, paced: Send, request: requests.PreparedRequest, *args: t.Any, **kwargs: t.Any
    ) -> requests.Response:
        """Send until it works; give up after ``max_tries`` failures, or ``max_throttled_seconds`` of 429s.

        A 429 is Klaviyo asking to wait, not a failure: it does not count as a try, only
        the time spent waiting on 429s is bounded. Failures that another try cannot
        mend (a certificate refused, or no connection at all before Klaviyo ever
        answered) are raised at once.
        """
        waits = wait_generator()
        next(waits)
        tries = 0
        throttled_seconds = 0.0
        while True:
            try:
                response = paced(request, *args, **kwargs)
            except RETRIABLE_EXCEPTIONS as exc:
                if self._hopeless(exc):
                    raise
                if _waits_too_long(exc):
                    raise  # a daily quota is spent: the caller decides (report streams defer)
                if _status(exc) == 429:
                    wait = _jittered(getattr(exc, "retry_after", None))
                    throttled_seconds += wait
                    if throttled_seconds > self.max_throttled_seconds:
                        raise
                    self._log_retry(request, exc, wait, None)
                else:
                    tries += 1
                    if tries >= self.max_tries:
                        raise
                    wait = waits.send(exc)
                    self._log_retry(request, exc, wait, tries + 1)
                time.sleep(wait)
            else:
                self._answered_once = True
                return response

    def _hopeless(self, exc: BaseException) -> bool:
        """A failure no retry mends: a TLS failure, or no connection before any answer."""
        if _is_tls_failure(exc):
            return True
        return not self._answered_once and _is_connect_failure(exc)

    def _log_retry(
        self, request: requests.PreparedRequest, reason: BaseException, wait: float, attempt: int | None
    ) -> None:
        self.logger.warning(
            "Retrying %s %s in %.1f s (%s): %s",
            request.method,
            urlsplit(request.url).path,
            wait,
            f"try {attempt} of {self.max_tries}" if attempt else "rate limited, does not count as a try",
            _root_cause(reason) if not isinstance(reason, KlaviyoRetriableError) else _one_line(reason),
        )

    def _gave_up(self, request: requests.PreparedRequest, exc: Exception) -> KlaviyoError:
        where = f"{request.method} {urlsplit(request.url or '').path}"
        if _waits_too_long(exc):
            return KlaviyoQuotaExhausted(
                f"{where}: Klaviyo's quota for this endpoint is spent; it asks to wait "
                f"{exc.retry_after:.0f} s (Retry-After), so the request was not retried.",
                exc.retry_after or 0.0,  # set: _waits_too_long checked it
            )
        if isinstance(exc, KlaviyoRetriableError) and _status(exc) == 429:
            return KlaviyoError(
                f"{exc} (gave up after waiting {self.max_throttled_seconds:g} s on rate limits). Other "
                "integrations may be using the account's quota: run later, or lower their share."
            )
        if isinstance(exc, KlaviyoRetriableError):
            return KlaviyoError(f"{exc} (gave up after {self.max_tries} tries)")
        if _is_tls_failure(exc):
            return KlaviyoError(
                f"{where}: the TLS connection to Klaviyo at {self.base_url} failed ({_root_cause(exc)}). "
                "Check the base_url setting, the machine's clock and CA certificates, or set "
                "REQUESTS_CA_BUNDLE to the CA of a proxy that intercepts TLS."
            )
        if not self._answered_once and _is_connect_failure(exc):
            return KlaviyoError(
                f"{where}: could not reach Klaviyo at {self.base_url} ({_root_cause(exc)}). "
                "Check the network and the base_url setting."
            )
        if isinstance(exc, requests.exceptions.ReadTimeout):
            return KlaviyoError(
                f"{where}: Klaviyo at {self.base_url} did not answer within {self.timeout[1]:g} s, "
                f"{self.max_tries} tries in a row. Raise the request_timeout setting, or run again later."
            )
        return KlaviyoError(
            f"{where}: could not reach Klaviyo at {self.base_url} after {self.max_tries} tries "
            f"({_root_cause(exc)}). Check the network and the base_url setting."
        )

    # -- direct use (target, connection checks) -------------------------------------

    def _send_once(
        self, request: requests.PreparedRequest, decode: t.Callable[[requests.Response], t.Any] | None = None
    ) -> requests.Response:
        self.auth(request)  # re-applied on every try: credentials may have been renewed
        session = self.session
        proxies = self._proxies_for(session, request.url or "")
        response = session.send(request, timeout=self.timeout, stream=True, proxies=proxies)
        read_body(response)
        endpoint = endpoints.match(request.method or "GET", urlsplit(request.url or "").path)
        raise_for_response(response, required_scopes=endpoint.scopes if endpoint else ())
        (decode or decode_document)(response)  # a body that is no JSON document is retried
        return response

    def _proxies_for(self, session: requests.Session, url: str) -> dict[str, str]:
        """The proxies ``session.send`` would use for ``url`` (``HTTPS_PROXY``, ``NO_PROXY``...), once per origin.

        ``Session.send`` works them out from the whole environment on every request when
        not given: a sixth of a request's CPU (~0.3 ms). They depend only on the URL's
        scheme, host and port, and the environment does not change during a run.
        """
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        proxies = self._proxies.get(key)
        if proxies is None:
            proxies = self._proxies[key] = resolve_proxies(
                requests.Request("GET", url), dict(session.proxies), session.trust_env
            )
        return proxies

    def send(
        self, request: requests.PreparedRequest, decode: t.Callable[[requests.Response], t.Any] | None = None
    ) -> requests.Response:
        """Send a prepared request with pacing, retries and re-auth; safe from any thread.

        The answer's JSON:API document is parsed once (``json_document`` returns it), by
        ``decode`` when given (it caches its result on the response and raises as
        ``decode_document`` does on a body that is not a JSON document).
        """
        return self._send(request, decode) if decode else self._send(request)

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: t.Mapping[str, t.Any] | None = None,
        json: t.Any = None,
    ) -> requests.Response:
        headers = dict(self.headers)
        if json is not None:
            headers["Content-Type"] = JSONAPI
        prepared = requests.Request(method, self.url(path_or_url), params=params, json=json, headers=headers).prepare()
        return self._send(prepared)

    def get(self, path_or_url: str, params: t.Mapping[str, t.Any] | None = None) -> dict:
        return json_document(self.request("GET", path_or_url, params=params))

    def paginate(self, path: str, params: t.Mapping[str, t.Any] | None = None) -> t.Iterator[dict]:
        """Every resource of a collection, following ``links.next`` verbatim."""
        document = self.get(path, params)
        while True:
            yield from document.get("data") or []
            next_url = (document.get("links") or {}).get("next")
            if not next_url:
                return
            document = self.get(next_url)


def new_session() -> requests.Session:
    """A session that trusts ``REQUESTS_CA_BUNDLE`` (or ``CURL_CA_BUNDLE``) as ``requests.get`` does.

    ``Session.send``, which the connection and the SDK call, skips requests' reading of the
    environment (only ``Session.request`` does it): without this the CA of a proxy that
    intercepts TLS (or of a test server) was never trusted. Verification stays on. Its adapters
    send plain GETs through http.client and look each origin's connection pool up once
    (:class:`~klaviyo_core.adapter.DirectGetAdapter`).
    """
    session = requests.Session()
    for prefix in ("https://", "http://"):
        session.mount(prefix, DirectGetAdapter())
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    return session


def decode_document(response: requests.Response) -> dict:
    """``json_document(response)``, parsed with msgspec when installed, cached on the response."""
    cached = response.__dict__.get("_klaviyo_document")
    if cached is not None:
        return cached
    if msgspec is not None and response.content:
        try:
            document = msgspec.json.decode(response.content)
        except msgspec.DecodeError:
            document = None  # json_document raises the one-line (retriable) error
        if isinstance(document, dict):
            response.__dict__["_klaviyo_document"] = document
            return document
    return json_document(response)


def _waits_too_long(exc: BaseException) -> t.TypeGuard[KlaviyoRetriableError]:
    retry_after = getattr(exc, "retry_after", None)
    return isinstance(exc, KlaviyoRetriableError) and retry_after is not None and retry_after > MAX_RETRY_AFTER_SECONDS


def _jittered(retry_after: float | None) -> float:
    """Klaviyo's Retry-After (1 s when absent), plus a random share so threads spread out."""
    base = 1.0 if retry_after is None else float(retry_after)
    return base + random.uniform(0.0, max(0.5, base * RETRY_AFTER_JITTER))


def _causes(exc: BaseException) -> t.Iterator[BaseException]:
    """The exception and everything it wraps (``__cause__``, ``__context__``, urllib3's ``reason``)."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.extend(
            inner
            for inner in (current.__cause__, current.__context__, getattr(current, "reason", None), *current.args)
            if isinstance(inner, BaseException)
        )


def _is_tls_failure(exc: BaseException) -> bool:
    """A certificate or TLS handshake failure (a TLS connection cut short is a reset, and retried)."""
    causes = list(_causes(exc))
    if any(isinstance(cause, (ssl.SSLEOFError, ssl.SSLZeroReturnError)) for cause in causes):
        return False
    return any(isinstance(cause, (ssl.SSLError, requests.exceptions.SSLError)) for cause in causes)


def _is_connect_failure(exc: BaseException) -> bool:
    """No TCP connection was made: DNS failure, connection refused, host unreachable."""
    return isinstance(exc, requests.exceptions.ConnectionError) and any(
        isinstance(cause, (urllib3.exceptions.NewConnectionError, ConnectionRefusedError, socket.gaierror))
        for cause in _causes(exc)
    )


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _root_cause(exc: object) -> str:
    """The innermost reason of a network failure, without urllib3's wrapping noise."""
    reason: t.Any = exc
    while True:
        inner = getattr(reason, "reason", None) or (reason.args[0] if getattr(reason, "args", None) else None)
        if not isinstance(inner, BaseException) or inner is reason:
            break
        reason = inner
    text = re.sub(r"\?[^\s)'\"]*", "", _one_line(reason))  # queries may hold emails
    return re.sub(r"^<[^>]+>:\s*|^\w+Connection\([^)]*\):\s*", "", text)


def _one_line(value: object) -> str:
    return " ".join(str(value).split())[:300]
