"""requests' HTTP adapter, with the connection pool of each origin looked up once.

For every request, ``HTTPAdapter.send`` asks ``get_connection_with_tls_context`` for the
connection pool (the URL parsed, a pool key of some twenty TLS and host fields built and
normalised, the pool manager's locked lookup) and ``request_url`` for the request line's
target (the URL parsed again). A worker sends all its requests to one origin with the same
TLS settings, so both answers are the same every time: this adapter keeps each pool by
origin, ``verify`` and ``cert``, and cuts the target out of the URL. 6% of the instructions
of a profiles page request (``scripts/instructions.py``: 3.18 → 2.98 million).

Both methods are the ones requests exposes for subclassing its adapter. A request through a
proxy, and a URL of a shape this module does not cut (no path, a path starting ``//``), go
to requests' own methods. tests/test_client_requests.py checks that both answer as
requests' do and that ``send`` still calls them.
"""

from __future__ import annotations

import typing as t

import requests
from requests.adapters import HTTPAdapter
from typing_extensions import override

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
