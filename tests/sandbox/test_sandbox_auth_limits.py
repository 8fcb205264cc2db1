"""Auth, revision header, and per-endpoint rate limits (429 + Retry-After)."""

from __future__ import annotations

import pytest

from klaviyo_sandbox import Sandbox, SandboxConfig

from .client import Client


def test_auth_required(sb):
    for c in (Client(sb.base_url), Client(sb.base_url, "pk_wrong"), Client(sb.base_url, bearer="nope")):
        resp = c.get("/api/accounts")
        assert resp.status == 401, resp
        err = resp.json()["errors"][0]
        assert err["code"] == "not_authenticated" and err["status"] == 401


@pytest.mark.parametrize("revision", [None, "", "latest", "2026-13-01", "2026/07/15", "2026-07-15T00:00"])
def test_revision_required(sb, revision):
    resp = Client(sb.base_url, sb.api_key, revision=revision).get("/api/lists")
    assert resp.status == 400, resp
    assert resp.json()["errors"][0]["source"] == {"parameter": "revision"}


@pytest.mark.parametrize("revision", ["2026-07-15", "2024-10-15.pre", "2023-02-22"])
def test_valid_revisions(sb, revision):
    assert Client(sb.base_url, sb.api_key, revision=revision).get("/api/lists").status == 200


def test_rate_limit_429_with_retry_after():
    # get_accounts is 1/s, 15/m; scaled by 0.02 the steady limit is 1 per minute.
    with Sandbox(SandboxConfig(seed=1, scale=0.01, rate_limit_scale=0.02)) as box:
        c = Client(box.base_url, box.api_key)
        ok = c.get("/api/accounts")
        assert ok.status == 200
        assert ok.headers["ratelimit-limit"] == "1" and ok.headers["ratelimit-remaining"] == "0"
        assert int(ok.headers["ratelimit-reset"]) >= 0
        limited = c.get("/api/accounts")
        assert limited.status == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert not any(h.startswith("ratelimit-") for h in limited.headers)
        assert limited.json()["errors"][0]["code"] == "throttled"
        assert c.get("/api/lists").status == 200  # limits are per endpoint
        assert box.store.counters["status:429"] == 1


def test_predictive_analytics_uses_lower_limit():
    # get_profiles: 75/s normally, 10/s with predictive_analytics; x0.1 -> 8/s vs 1/s (sliding window).
    with Sandbox(SandboxConfig(seed=1, scale=0.01, rate_limit_scale=0.1, rate_window="sliding")) as box:
        c = Client(box.base_url, box.api_key)
        assert [c.get("/api/profiles").status for _ in range(3)] == [200, 200, 200]
        extra = {"additional-fields[profile]": "predictive_analytics"}
        statuses = [c.get("/api/profiles", **extra).status for _ in range(2)]
        assert statuses == [200, 429]


def test_rate_limit_disabled_sends_no_headers(client):
    resp = client.get("/api/lists")
    assert resp.status == 200 and "ratelimit-limit" not in resp.headers
