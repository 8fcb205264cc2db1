"""Fault injection: each kind behaves as documented, deterministically per seed."""

from __future__ import annotations

import http.client
import socket
import time

import pytest

from klaviyo_sandbox import Sandbox, SandboxConfig

from .client import Client


def _box(kinds, rate=1.0, seed=1, **kw):
    return Sandbox(
        SandboxConfig(
            seed=seed, scale=0.01, rate_limit_scale=0.0, fault_rate=rate, faults=kinds, timeout_seconds=0.3, **kw
        )
    )


@pytest.mark.parametrize("kind", ["500", "502", "503", "504"])
def test_server_errors_are_json_api(kind):
    with _box(kind) as box:
        resp = Client(box.base_url, box.api_key).get("/api/lists")
        assert resp.status == int(kind)
        assert resp.headers["content-type"] == "application/vnd.api+json"
        assert resp.json()["errors"][0]["status"] == int(kind)


def test_html_error_page():
    with _box("html") as box:
        resp = Client(box.base_url, box.api_key).get("/api/lists")
        assert resp.status == 502 and resp.headers["content-type"].startswith("text/html")
        assert b"<html>" in resp.body


def test_429_burst_with_retry_after():
    with _box("429", rate=0.0001) as box:
        box.app.faults.rate = 1.0
        c = Client(box.base_url, box.api_key)
        first = c.get("/api/lists")
        assert first.status == 429 and first.headers["retry-after"] == "1"
        assert not any(h.startswith("ratelimit-") for h in first.headers)
        box.app.faults.rate = 0.0  # the burst continues regardless of the rate
        assert [c.get("/api/lists").status for _ in range(3)] == [429, 429, 200]


def test_reset_and_timeout_close_without_response():
    for kind in ("reset", "timeout"):
        with _box(kind) as box:
            t0 = time.time()
            with pytest.raises((ConnectionError, http.client.RemoteDisconnected, socket.error)):
                Client(box.base_url, box.api_key).get("/api/lists")
            if kind == "timeout":
                assert time.time() - t0 >= 0.3


def test_truncated_body():
    with _box("truncated") as box:
        conn = http.client.HTTPConnection("127.0.0.1", box.port, timeout=5)
        conn.request("GET", "/api/lists", headers=Client(box.base_url, api_key=box.api_key).headers)
        resp = conn.getresponse()
        assert resp.status == 200
        with pytest.raises(http.client.IncompleteRead):
            resp.read()


def test_slow_answers_normally():
    with _box("slow") as box:
        t0 = time.time()
        resp = Client(box.base_url, box.api_key).get("/api/lists")
        assert resp.status == 200 and 1.0 <= time.time() - t0 < 3.0


def test_faults_are_deterministic_and_spare_admin_endpoints():
    def statuses(seed):
        with _box("500,503,html,429", rate=0.3, seed=seed) as box:
            c = Client(box.base_url, box.api_key)
            out = [c.get("/api/lists").status for _ in range(40)]
            assert all(c.get("/__sandbox/health").status == 200 for _ in range(20))
            return out

    a, b, other = statuses(5), statuses(5), statuses(6)
    assert a == b and a != other
    assert {500, 503, 502, 429, 200} >= set(a) and 200 in a and len(set(a)) > 2
