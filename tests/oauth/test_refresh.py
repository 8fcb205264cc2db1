"""Access tokens: refreshed early, once after a 401, once for all threads; rotations persisted."""

from __future__ import annotations

import json
import os
import stat
import threading
import time

import pytest

from klaviyo_core.auth import OAuthAuth, TokenFileConflict, TokenStore
from klaviyo_core.client import KlaviyoConnection
from klaviyo_core.errors import KlaviyoError
from klaviyo_core.oauth import OAuthError, TokenEndpoint, Tokens, seed_fingerprint
from klaviyo_core.settings import DEFAULT_TOKEN_URL
from tests.oauth.conftest import CLIENT_ID, CLIENT_SECRET, FIRST_REFRESH_TOKEN, OAuthKlaviyo, assert_clean

PING = "/api/lists"  # a cheap read whose rate limit (75/s) never makes the client wait in these tests


def connect(config: dict, clock=time.time, auth: OAuthAuth | None = None) -> KlaviyoConnection:
    return KlaviyoConnection(config, auth=auth or OAuthAuth.from_config(config, clock=clock), max_tries=2)


def test_first_request_gets_a_token_and_sends_it_as_bearer(klaviyo, tmp_path):
    connection = KlaviyoConnection(klaviyo.config(tmp_path))  # the plugins' way: auth from config
    assert connection.get("/api/accounts")["data"][0]["id"] == klaviyo.account_id
    assert klaviyo.refresh_calls == 1
    # once to bind the token file to its account (GET /api/accounts), once for the request
    assert klaviyo.bearer_tokens_seen == [klaviyo.access_token(1)] * 2


def test_refreshes_before_expiry_not_after(klaviyo_on_clock, clock, tmp_path):
    connection = connect(klaviyo_on_clock.config(tmp_path), clock)
    connection.request("GET", PING)
    clock.advance(3600 - 301)
    connection.request("GET", PING)
    assert klaviyo_on_clock.refresh_calls == 1  # still more than 5 minutes left
    clock.advance(2)
    connection.request("GET", PING)
    assert klaviyo_on_clock.refresh_calls == 2
    assert klaviyo_on_clock.api_unauthorized == 0


def test_expiry_in_the_middle_of_a_sync(klaviyo_on_clock, clock, tmp_path):
    klaviyo_on_clock.oauth.token_seconds = 60  # refreshed 30 s early: half the lifetime of short tokens
    connection = connect(klaviyo_on_clock.config(tmp_path), clock)
    for _ in range(30):
        assert connection.request("GET", PING).status_code == 200
        clock.advance(10)
    assert klaviyo_on_clock.api_unauthorized == 0
    assert klaviyo_on_clock.refresh_calls == 10  # every 30 s of 300 s


def test_one_second_tokens_in_real_time(tmp_path):
    klaviyo = OAuthKlaviyo(token_seconds=1)
    try:
        connection = connect(klaviyo.config(tmp_path))
        deadline = time.monotonic() + 1.3
        while time.monotonic() < deadline:
            assert connection.request("GET", PING).status_code == 200
            time.sleep(0.05)
        assert klaviyo.refresh_calls >= 2  # 1 s tokens are renewed half a second early
    finally:
        klaviyo.stop()


def test_a_401_forces_exactly_one_refresh(klaviyo, tmp_path):
    connection = connect(klaviyo.config(tmp_path))
    connection.request("GET", PING)
    klaviyo.expire_access_tokens()
    assert connection.request("GET", PING).status_code == 200
    assert (klaviyo.refresh_calls, klaviyo.api_unauthorized) == (2, 1)


def test_config_access_token_is_used_until_a_401(klaviyo_on_clock, clock, tmp_path):
    klaviyo_on_clock.give_access_token("canary-access-given-XYZ", 10**6)
    connection = connect(klaviyo_on_clock.config(tmp_path, access_token="canary-access-given-XYZ"), clock)
    for _ in range(3):
        connection.request("GET", PING)
        clock.advance(86_400)  # expiry unknown: no early refresh
    assert klaviyo_on_clock.refresh_calls == 0
    klaviyo_on_clock.expire_access_tokens()
    connection.request("GET", PING)
    assert klaviyo_on_clock.refresh_calls == 1


def test_concurrent_401s_refresh_once(klaviyo, tmp_path):
    auth = OAuthAuth.from_config(klaviyo.config(tmp_path))
    connect(klaviyo.config(tmp_path), auth=auth).request("GET", PING)
    klaviyo.expire_access_tokens()
    klaviyo.hold_unauthorized(threading.Barrier(8))  # all 8 hold the old token when refused
    results: list[int] = []

    def worker() -> None:
        results.append(connect(klaviyo.config(tmp_path), auth=auth).request("GET", PING).status_code)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [200] * 8
    assert klaviyo.api_unauthorized == 8
    assert klaviyo.refresh_calls == 2 and auth.refresh_count == 2  # the first token, then one refresh


def test_concurrent_first_requests_share_one_token(klaviyo, tmp_path):
    auth = OAuthAuth.from_config(klaviyo.config(tmp_path))
    threads = [
        threading.Thread(target=connect(klaviyo.config(tmp_path), auth=auth).request, args=("GET", PING))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert klaviyo.refresh_calls == 1 and klaviyo.api_ok == 8 + 1  # + the account lookup binding the token file


def test_rotated_refresh_token_is_persisted_and_preferred_next_run(klaviyo, tmp_path):
    config = klaviyo.config(tmp_path)
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    connect(config).request("GET", PING)
    token_file = tmp_path / "tokens.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    saved = json.loads(token_file.read_text())
    assert saved["client_id"] == CLIENT_ID and saved["format"] == "klaviyo-singer-oauth/2"
    assert saved["account_id"] == klaviyo.account_id and saved["base_url"] == klaviyo.url
    assert saved["seeds"] == [seed_fingerprint(FIRST_REFRESH_TOKEN)]
    assert FIRST_REFRESH_TOKEN not in token_file.read_text()  # only its fingerprint
    assert saved["refresh_token"] == klaviyo.refresh_token(1)  # rotated; the first one is dead now
    assert FIRST_REFRESH_TOKEN not in klaviyo.live_refresh_tokens()
    assert json.loads(config_file.read_text()) == config  # never written back into the config
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".oauth-")] == []  # no temp left

    klaviyo.expire_access_tokens()
    next_run = connect(json.loads(config_file.read_text()))  # config still holds the dead token
    assert next_run.request("GET", PING).status_code == 200
    assert json.loads(token_file.read_text())["refresh_token"] == klaviyo.refresh_token(2)


def test_default_token_file_is_private(klaviyo, tmp_path):
    config = {**klaviyo.config(tmp_path), "token_file": ""}
    auth = OAuthAuth.from_config(config)
    connect(config, auth=auth).request("GET", PING)
    path = tmp_path / "xdg" / "klaviyo-singer"
    assert auth.token_file.startswith(str(path))
    assert stat.S_IMODE(os.stat(auth.token_file).st_mode) == 0o600
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_token_file_of_another_app_is_refused_in_one_line(klaviyo, tmp_path):
    TokenStore(tmp_path / "tokens.json").save("another-app", Tokens(refresh_token="canary-refresh-other-XYZ"), "x")
    with pytest.raises(TokenFileConflict) as caught:
        connect(klaviyo.config(tmp_path))
    assert f"Setting token_file {tmp_path / 'tokens.json'} holds the OAuth tokens of another app" in str(caught.value)
    assert "\n" not in str(caught.value) and klaviyo.token_posts == 0
    assert_clean(str(caught.value))


def test_refused_stored_token_falls_back_to_the_config_token(klaviyo, tmp_path, caplog):
    config = klaviyo.config(tmp_path)
    store = TokenStore.for_config(config)  # the config's own lineage, whose rotated token went stale
    store.save(CLIENT_ID, Tokens(refresh_token="canary-refresh-stale-XYZ"), config["token_url"])
    assert connect(config).request("GET", PING).status_code == 200
    assert "older OAuth refresh token was refused" in caplog.text


def test_token_another_process_stored_is_adopted_without_refreshing(klaviyo, tmp_path):
    first, second = (OAuthAuth.from_config(klaviyo.config(tmp_path)) for _ in range(2))
    connect(klaviyo.config(tmp_path), auth=second).request("GET", PING)
    connect(klaviyo.config(tmp_path), auth=first).request("GET", PING)  # adopts second's token
    assert klaviyo.refresh_calls == 1
    klaviyo.expire_access_tokens()
    connect(klaviyo.config(tmp_path), auth=first).request("GET", PING)  # refreshes: rotation
    connect(klaviyo.config(tmp_path), auth=second).request("GET", PING)  # 401, then adopts first's
    assert klaviyo.refresh_calls == 2


def test_invalid_grant_says_how_to_reauthorise(klaviyo, tmp_path):
    klaviyo.refuse_refresh_with = "invalid_grant"
    with pytest.raises(KlaviyoError) as caught:
        connect(klaviyo.config(tmp_path)).request("GET", PING)
    message = str(caught.value)
    assert "\n" not in message and "invalid_grant" in message and "90 days" in message
    assert (
        f"klaviyo-oauth authorize --client-id {CLIENT_ID} --token-file {tmp_path / 'tokens.json'} "
        f"--token-url {klaviyo.url}/oauth/token --authorize-url {klaviyo.url}/oauth/authorize"
    ) in message
    assert_clean(message, repr(caught.value))


def test_token_endpoint_retries_5xx_then_succeeds(klaviyo, tmp_path):
    klaviyo.fail_token_posts(2)
    waits: list[float] = []
    endpoint = TokenEndpoint(f"{klaviyo.url}/oauth/token", CLIENT_ID, CLIENT_SECRET, sleep=waits.append)
    tokens = endpoint.refresh(FIRST_REFRESH_TOKEN, now=0.0)
    assert tokens.expires_at == 3600 and tokens.refresh_token == klaviyo.refresh_token(1)
    assert waits == [0.5, 1.0] and klaviyo.token_posts == 3


def test_token_endpoint_gives_up_with_one_line(klaviyo, tmp_path):
    klaviyo.fail_token_posts(10)
    endpoint = TokenEndpoint(f"{klaviyo.url}/oauth/token", CLIENT_ID, CLIENT_SECRET, sleep=lambda _: None)
    with pytest.raises(KlaviyoError, match=r"after 4 tries \(HTTP 503\)") as caught:
        endpoint.refresh(FIRST_REFRESH_TOKEN, now=0.0)
    unreachable = TokenEndpoint("http://127.0.0.1:9/oauth/token", CLIENT_ID, CLIENT_SECRET, sleep=lambda _: None)
    with pytest.raises(KlaviyoError, match="token_url setting") as down:
        unreachable.refresh(FIRST_REFRESH_TOKEN, now=0.0)
    assert_clean(str(caught.value), str(down.value))


def test_4xx_is_final_and_names_the_oauth_error(klaviyo, tmp_path):
    endpoint = TokenEndpoint(f"{klaviyo.url}/oauth/token", CLIENT_ID, "canary-wrong-secret-XYZ")
    with pytest.raises(OAuthError) as caught:
        endpoint.refresh(FIRST_REFRESH_TOKEN, now=0.0)
    assert caught.value.error == "invalid_client" and klaviyo.token_posts == 1
    assert "Check client_id and client_secret" in str(caught.value)
    assert_clean(str(caught.value), repr(endpoint))


def test_world_readable_token_file_is_tightened(tmp_path, caplog):
    store = TokenStore(tmp_path / "tokens.json")
    store.save(CLIENT_ID, Tokens(refresh_token="canary-refresh-XYZ"), DEFAULT_TOKEN_URL)
    os.chmod(store.path, 0o644)
    assert store.load(CLIENT_ID) is not None
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert "readable by others" in caplog.text


def test_saved_tokens_are_used_only_by_their_seed_or_current_refresh_token(klaviyo, tmp_path):
    config = klaviyo.config(tmp_path)
    connect(config).request("GET", PING)  # seeds the file with the config's token, rotates it
    rotated = json.loads((tmp_path / "tokens.json").read_text())["refresh_token"]
    for refresh_token in (FIRST_REFRESH_TOKEN, rotated):  # the seed, and its rotated successor
        assert TokenStore.for_config({**config, "refresh_token": refresh_token}).load() is not None
    with pytest.raises(TokenFileConflict, match=rf"another refresh token \(account {klaviyo.account_id}\)"):
        TokenStore.for_config({**config, "refresh_token": "canary-refresh-of-account-B-XYZ"}).load()
    default = {**config, "token_file": ""}  # a default file is keyed by the refresh token: never shared
    assert (
        TokenStore.for_config(default).path
        != TokenStore.for_config({**default, "refresh_token": "canary-refresh-of-account-B-XYZ"}).path
    )


def test_a_token_file_of_an_older_version_is_used_only_by_its_own_refresh_token(klaviyo, tmp_path):
    legacy = {
        "client_id": CLIENT_ID,
        "token_url": f"{klaviyo.url}/oauth/token",
        "refresh_token": "canary-refresh-old-XYZ",
    }
    (tmp_path / "tokens.json").write_text(json.dumps({"format": "klaviyo-singer-oauth/1", **legacy}))
    config = klaviyo.config(tmp_path)
    with pytest.raises(TokenFileConflict, match="saved by an older version"):
        TokenStore.for_config(config).load()
    assert TokenStore.for_config({**config, "refresh_token": "canary-refresh-old-XYZ"}).load() is not None
    assert TokenStore.for_config({**config, "refresh_token": ""}).load() is not None  # the file is the source


def test_an_access_token_alone_is_used_until_rejected_then_one_line(klaviyo, tmp_path):
    klaviyo.give_access_token("canary-access-handed-XYZ", 3600)
    connection = connect({"access_token": "canary-access-handed-XYZ", "base_url": klaviyo.url})
    assert connection.request("GET", PING).status_code == 200
    klaviyo.expire_access_tokens()
    with pytest.raises(KlaviyoError) as caught:
        connection.request("GET", PING)
    assert "Klaviyo rejected the access_token" in str(caught.value) and "\n" not in str(caught.value)
    assert klaviyo.token_posts == 0 and not (tmp_path / "xdg").exists()
    assert_clean(str(caught.value))
