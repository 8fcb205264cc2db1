"""OAuth: authorization code + PKCE (S256), refresh-token rotation, bearer access."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlencode, urlsplit

from klaviyo_sandbox import pkce_challenge

from .client import Client

REDIRECT = "http://127.0.0.1:9/callback"


def _basic(sb, secret=None):
    cfg = sb.config
    raw = f"{cfg.client_id}:{secret or cfg.client_secret}".encode()
    return {
        "Authorization": "Basic " + base64.b64encode(raw).decode(),
        "Content-Type": "application/x-www-form-urlencoded",
    }


def _authorize(sb, verifier, state="xyz"):
    c = Client(sb.base_url, revision=None)
    q = {
        "response_type": "code",
        "client_id": sb.config.client_id,
        "redirect_uri": REDIRECT,
        "scope": "accounts:read lists:read",
        "state": state,
        "code_challenge_method": "S256",
        "code_challenge": pkce_challenge(verifier),
    }
    resp = c.get("/oauth/authorize?" + urlencode(q))
    assert resp.status == 302, resp
    loc = resp.headers["location"]
    assert loc.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(loc).query).items()}


def _token(sb, form, secret=None):
    c = Client(sb.base_url, revision=None)
    return c.post("/oauth/token", urlencode(form).encode(), headers=_basic(sb, secret))


def test_code_flow_with_pkce_and_refresh_rotation(sb):
    verifier = "v" * 64
    got = _authorize(sb, verifier)
    assert got["state"] == "xyz" and got["code"]
    bad = _token(
        sb,
        {"grant_type": "authorization_code", "code": got["code"], "code_verifier": "w" * 64, "redirect_uri": REDIRECT},
    )
    assert bad.status == 400 and bad.json()["error"] == "invalid_grant"
    ok = _token(
        sb,
        {"grant_type": "authorization_code", "code": got["code"], "code_verifier": verifier, "redirect_uri": REDIRECT},
    )
    assert ok.status == 200, ok
    tok = ok.json()
    assert tok["token_type"] == "Bearer" and tok["expires_in"] == sb.config.token_seconds
    assert tok["scope"] == "accounts:read lists:read" and tok["access_token"] and tok["refresh_token"]
    assert Client(sb.base_url, bearer=tok["access_token"]).get("/api/accounts").status == 200
    new = _token(sb, {"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]})
    assert new.status == 200
    fresh = new.json()
    assert fresh["refresh_token"] != tok["refresh_token"] and fresh["access_token"] != tok["access_token"]
    reused = _token(sb, {"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]})
    assert reused.status == 400 and reused.json()["error"] == "invalid_grant"
    newest = _token(sb, {"grant_type": "refresh_token", "refresh_token": fresh["refresh_token"]})
    assert newest.status == 200
    replay = _token(sb, {"grant_type": "authorization_code", "code": got["code"], "code_verifier": verifier})
    assert replay.status == 400 and replay.json()["error"] == "invalid_grant"


def test_client_errors(sb):
    resp = _token(sb, {"grant_type": "refresh_token", "refresh_token": "x"}, secret="wrong")
    assert resp.status == 401 and resp.json()["error"] == "invalid_client"
    c = Client(sb.base_url, revision=None)
    no_auth = c.post(
        "/oauth/token",
        b"grant_type=refresh_token&refresh_token=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert no_auth.status == 401
    json_body = c.post(
        "/oauth/token", {"grant_type": "refresh_token"}, headers=_basic(sb) | {"Content-Type": "application/json"}
    )
    assert json_body.status == 400
    assert _token(sb, {"grant_type": "password"}).json()["error"] == "unsupported_grant_type"
    no_pkce = c.get(
        "/oauth/authorize?"
        + urlencode({"response_type": "code", "client_id": sb.config.client_id, "redirect_uri": REDIRECT, "state": "s"})
    )
    assert no_pkce.status == 302 and "error=invalid_request" in no_pkce.headers["location"]
    unknown = c.get("/oauth/authorize?" + urlencode({"client_id": "who", "redirect_uri": REDIRECT}))
    assert unknown.status == 400


def test_expired_access_token_is_401(sb):
    verifier = "expiry-" + "x" * 50
    code = _authorize(sb, verifier)["code"]
    tok = _token(sb, {"grant_type": "authorization_code", "code": code, "code_verifier": verifier}).json()
    sb.oauth.access[tok["access_token"]]["expires"] = 0  # simulate the hour passing
    resp = Client(sb.base_url, bearer=tok["access_token"]).get("/api/accounts")
    assert resp.status == 401 and resp.json()["errors"][0]["code"] == "not_authenticated"


def _grant(sb, account, verifier="m" * 64):
    """Code flow with the browser signed in to `account`: (access, refresh) tokens."""
    sb.oauth.sign_in(account)
    code = _authorize(sb, verifier)["code"]
    tok = _token(
        sb, {"grant_type": "authorization_code", "code": code, "code_verifier": verifier, "redirect_uri": REDIRECT}
    ).json()
    return tok["access_token"], tok["refresh_token"]


def test_several_accounts_behind_one_token_endpoint():
    from klaviyo_sandbox import Sandbox, SandboxConfig

    with Sandbox(SandboxConfig(seed=5, scale=0.01, rate_limit_scale=0.0, accounts=2)) as sb:
        first, second = list(sb.accounts)
        assert first != second and sb.accounts[first] is sb.store
        tokens = {account: _grant(sb, account) for account in (first, second)}
        for account, (access, refresh) in tokens.items():
            client = Client(sb.base_url, bearer=access)
            assert client.get("/api/accounts").json()["data"][0]["id"] == account
            lists = {item["id"] for item in client.get("/api/lists").json()["data"]}
            assert lists and lists <= {sb.accounts[account].ds.list_ids.id(j) for j in range(1000)}
            rotated = _token(sb, {"grant_type": "refresh_token", "refresh_token": refresh}).json()
            again = Client(sb.base_url, bearer=rotated["access_token"]).get("/api/accounts").json()
            assert again["data"][0]["id"] == account  # a rotated token stays bound to its account
            tokens[account] = (rotated["access_token"], rotated["refresh_token"])
        # an API key opens the first account; writes land in the account of the credential
        assert Client(sb.base_url, sb.api_key).get("/api/accounts").json()["data"][0]["id"] == first
        made = Client(sb.base_url, bearer=tokens[second][0]).post(
            "/api/lists", {"data": {"type": "list", "attributes": {"name": "Second's list"}}}
        )
        assert made.status == 201 and made.json()["data"]["id"] in sb.accounts[second].new_lists
        assert not sb.store.new_lists
        logged = [e["account"] for e in sb.accounts[second].request_log]
        assert logged and set(logged) == {second}

        # revoking the refresh token ends the whole grant; the other account's grant lives on
        access, refresh = tokens[second]
        assert _revoke(sb, refresh).status == 200
        assert Client(sb.base_url, bearer=access).get("/api/accounts").status == 401
        assert _token(sb, {"grant_type": "refresh_token", "refresh_token": refresh}).json()["error"] == "invalid_grant"
        assert Client(sb.base_url, bearer=tokens[first][0]).get("/api/accounts").status == 200
        assert _revoke(sb, "never-issued").status == 200  # RFC 7009: not an error


def _revoke(sb, token):
    c = Client(sb.base_url, revision=None)
    return c.post(
        "/oauth/revoke", urlencode({"token": token, "token_type_hint": "refresh_token"}).encode(), headers=_basic(sb)
    )
