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
import re
import threading
import typing as t
from urllib.parse import urljoin, urlsplit

import backoff
import requests

from klaviyo_core import endpoints
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
from klaviyo_core.retry import DEFAULT_MAX_TRIES, RETRIABLE_EXCEPTIONS, wait_generator
from klaviyo_core.settings import DEFAULT_BASE_URL, DEFAULT_REQUEST_TIMEOUT, DEFAULT_REVISION

try:  # the SDK's own ``msgspec`` extra: about twice as fast as json.loads on Klaviyo pages
    import msgspec
except ImportError:  # pragma: no cover - the stdlib parser gives the same documents
    msgspec = None  # type: ignore[assignment]

JSONAPI = "application/vnd.api+json"
#: (connect, read) seconds: fail fast on a dead host, allow Klaviyo's slow pages.
#: The read timeout is the ``request_timeout`` setting.
DEFAULT_TIMEOUT = (10.0, DEFAULT_REQUEST_TIMEOUT)
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
    ) -> None:
        self.base_url = str(config.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
        self.revision = str(config.get("revision") or DEFAULT_REVISION)
        self.auth = auth or auth_from_config(config)
        self.limiters = RateLimiters(float(config.get("rate_limit_share") or 1.0))
        self.logger = logger or logging.getLogger("klaviyo")
        self.max_tries = max_tries
        self.timeout = timeout or (DEFAULT_TIMEOUT[0], float(config.get("request_timeout") or DEFAULT_TIMEOUT[1]))
        self.user_agent = str(config.get("user_agent") or "klaviyo-singer")
        self._local = threading.local()
        self._send = self.wrap(self._send_once)

    @property
    def session(self) -> requests.Session:
        """This thread's session (keep-alive connections are per thread)."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
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
                return response
            finally:
                if limiter:
                    limiter.answered(ticket)

        retried = backoff.on_exception(
            wait_generator,
            RETRIABLE_EXCEPTIONS,
            max_tries=self.max_tries,
            giveup=_waits_too_long,
            jitter=None,
            on_backoff=self._log_backoff,
            logger=None,
        )(paced)

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

    def _log_backoff(self, details: t.Mapping[str, t.Any]) -> None:
        request = details["args"][0]
        reason = details.get("exception")
        self.logger.warning(
            "Retrying %s %s in %.1f s (try %d of %d): %s",
            request.method,
            urlsplit(request.url).path,
            details.get("wait") or 0.0,
            details["tries"] + 1,
            self.max_tries,
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
        if isinstance(exc, KlaviyoRetriableError):
            return KlaviyoError(f"{exc} (gave up after {self.max_tries} tries)")
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

    def _send_once(self, request: requests.PreparedRequest) -> requests.Response:
        self.auth(request)  # re-applied on every try: credentials may have been renewed
        response = self.session.send(request, timeout=self.timeout, stream=True)
        read_body(response)
        endpoint = endpoints.match(request.method or "GET", urlsplit(request.url or "").path)
        raise_for_response(response, required_scopes=endpoint.scopes if endpoint else ())
        decode_document(response)
        return response

    def send(self, request: requests.PreparedRequest) -> requests.Response:
        """Send a prepared request with pacing, retries and re-auth; safe from any thread.

        The answer's JSON:API document is parsed once (``json_document`` returns it).
        """
        return self._send(request)

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


#: Answers are read in chunks of this size. ``Response.content`` reads 10 KB at a time:
#: a 1 MB page of events then takes ~100 reads, each releasing and re-taking the GIL
#: while other threads parse pages, and twice the CPU in requests' read loop.
READ_CHUNK_BYTES = 1 << 20


def read_body(response: requests.Response) -> bytes:
    """``response.content``, read in large chunks (same errors, same connection reuse)."""
    if response.__dict__.get("_content") is False:  # not read yet (requests' own marker)
        response._content = b"".join(response.iter_content(READ_CHUNK_BYTES)) or b""  # noqa: SLF001
        response._content_consumed = True  # type: ignore[attr-defined]  # noqa: SLF001
    return response.content


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


def _status(exc: KlaviyoRetriableError) -> int | None:
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
