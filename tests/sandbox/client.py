"""Tiny stdlib HTTP client for the sandbox tests (no third-party HTTP library needed)."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlencode, urlsplit

REVISION = "2026-07-15"


class Resp:
    def __init__(self, status: int, headers: dict, body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Resp {self.status} {self.body[:200]!r}>"


class Client:
    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        bearer: str | None = None,
        revision: str | None = REVISION,
        timeout: float = 10.0,
    ):
        self.base = base_url
        self.headers = {"Accept": "application/vnd.api+json"}
        if api_key:
            self.headers["Authorization"] = f"Klaviyo-API-Key {api_key}"
        if bearer:
            self.headers["Authorization"] = f"Bearer {bearer}"
        if revision:
            self.headers["revision"] = revision
        self.timeout = timeout

    def request(
        self, method: str, url: str, params: dict | None = None, body=None, headers: dict | None = None
    ) -> Resp:
        if not url.startswith("http"):
            url = self.base + url
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params)
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout)
        hdrs = dict(self.headers, **(headers or {}))
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/vnd.api+json")
        try:
            conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body, headers=hdrs)
            r = conn.getresponse()
            return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def get(self, url: str, **params) -> Resp:
        return self.request("GET", url, params or None)

    def post(self, url: str, body=None, **kw) -> Resp:
        return self.request("POST", url, body=body, **kw)

    def delete(self, url: str, body=None) -> Resp:
        return self.request("DELETE", url, body=body)

    def pages(self, url: str, limit: int = 10_000, **params):
        """Follow links.next; yields each page document."""
        resp = self.get(url, **params)
        for _ in range(limit):
            assert resp.status == 200, resp
            doc = resp.json()
            yield doc
            nxt = doc["links"].get("next")
            if not nxt:
                return
            resp = self.get(nxt)

    def all(self, url: str, **params) -> list:
        return [r for doc in self.pages(url, **params) for r in doc["data"]]
