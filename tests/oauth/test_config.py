"""Config validation: exactly one way to authenticate, and one-line errors naming the setting."""

from __future__ import annotations

import json

import pytest
from singer_sdk.exceptions import ConfigValidationError

from klaviyo_core.auth import ApiKeyAuth, OAuthAuth, TokenStore, auth_from_config
from klaviyo_core.client import KlaviyoConnection
from klaviyo_core.oauth import Tokens, default_token_path
from klaviyo_core.settings import CONNECTION_SETTINGS, DEFAULT_TOKEN_URL, check_connection_settings
from tap_klaviyo.tap import TapKlaviyo
from tests.oauth.conftest import assert_clean

KEY = "pk_0123456789abcdef0123456789abcdef01"
OAUTH = {"client_id": "app-1", "client_secret": "canary-secret-XYZ", "refresh_token": "canary-refresh-XYZ"}


def error_of(config: dict) -> str:
    with pytest.raises(ConfigValidationError) as caught:
        check_connection_settings(config)
    message = caught.value.errors[0]
    assert "\n" not in message
    assert_clean(message)
    return message


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"api_key": KEY, **OAUTH},
            "Both api_key and OAuth settings (client_id, client_secret, refresh_token) are set",
        ),
        (
            {"api_key": KEY, "access_token": "canary-access-XYZ"},
            "Both api_key and OAuth settings (access_token) are set",
        ),
        ({}, "Setting api_key is missing or empty"),
        ({"api_key": "  "}, "client_id, client_secret and refresh_token"),
        ({**OAUTH, "client_secret": ""}, "OAuth setting client_secret is missing"),
        ({"refresh_token": "canary-refresh-XYZ"}, "OAuth settings client_id and client_secret are missing"),
        ({"client_id": "app-1", "client_secret": "canary-secret-XYZ"}, "OAuth setting refresh_token is missing"),
        (
            {"access_token": "canary-access-XYZ", "token_file": "/nonexistent/t.json"},
            "OAuth settings client_id, client_secret and refresh_token are missing",
        ),
        ({**OAUTH, "refresh_token": "canary-re fresh"}, "Setting refresh_token contains whitespace"),
        ({**OAUTH, "token_url": "http://auth.example.com/oauth/token"}, "Setting token_url must use https"),
        ({**OAUTH, "token_url": "ftp://x"}, "Setting token_url must be an http(s) URL"),
        ({**OAUTH, "authorize_url": "nope"}, "Setting authorize_url must be an http(s) URL"),
        ({"api_key": "AbC123"}, "Setting api_key is a public (site) key"),
    ],
)
def test_invalid_credentials_give_one_line_naming_the_setting(config, expected):
    assert expected in error_of(config)


@pytest.mark.parametrize(
    "config",
    [
        {"api_key": f"  {KEY} \n"},
        OAUTH,
        {**OAUTH, "api_key": ""},  # Meltano passes unset settings as ""
        {**OAUTH, "access_token": "canary-access-XYZ", "token_url": "http://127.0.0.1:9/oauth/token"},
        {"access_token": "canary-access-XYZ"},  # handed over by an orchestrator, refreshed there
    ],
)
def test_valid_credentials(config):
    check_connection_settings(config)


def test_refresh_token_may_come_from_the_token_file(tmp_path):
    config = {"client_id": "app-1", "client_secret": "canary-secret-XYZ", "token_file": str(tmp_path / "t.json")}
    assert "refresh_token is missing" in error_of(config)
    TokenStore(tmp_path / "t.json").save("app-1", Tokens(refresh_token="canary-refresh-XYZ"), DEFAULT_TOKEN_URL)
    check_connection_settings(config)
    assert "holds the OAuth tokens of another app" in error_of({**config, "client_id": "other-app"})
    assert "holds OAuth tokens from another token endpoint" in error_of(
        {**config, "token_url": "https://127.0.0.1/oauth/token"}
    )
    assert "holds OAuth tokens for another API host" in error_of({**config, "base_url": "http://127.0.0.1:1"})


def test_secrets_are_marked_secret_and_oauth_settings_exist():
    schema = CONNECTION_SETTINGS.to_dict()["properties"]
    for name in ("api_key", "client_secret", "refresh_token", "access_token"):
        assert schema[name].get("secret") is True, name
    for name in ("client_id", "token_file", "token_url", "authorize_url"):
        assert name in schema and not schema[name].get("secret"), name
    assert schema["token_url"]["default"] == "https://a.klaviyo.com/oauth/token"
    assert schema["authorize_url"]["default"] == "https://www.klaviyo.com/oauth/authorize"


def test_the_tap_validates_oauth_settings():
    with pytest.raises(ConfigValidationError, match="client_secret is missing"):
        TapKlaviyo(config={"client_id": "a", "refresh_token": "canary-refresh-XYZ"})
    tap = TapKlaviyo(config=OAUTH)
    assert isinstance(tap.connection.auth, OAuthAuth)


def test_auth_from_config_picks_the_method_and_hides_secrets(tmp_path):
    assert isinstance(auth_from_config({"api_key": KEY}), ApiKeyAuth)
    oauth = auth_from_config(OAUTH)
    assert isinstance(oauth, OAuthAuth)
    assert isinstance(KlaviyoConnection(OAUTH).auth, OAuthAuth)
    assert_clean(repr(oauth), repr(oauth.tokens), repr(auth_from_config({"api_key": "pk_canary-x"})))
    assert "app-1" in repr(oauth)


def test_default_token_path_honours_xdg_and_is_per_app_account_and_host(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    path = default_token_path("app-1", "canary-refresh-A")
    assert path.parent == tmp_path / "cfg" / "klaviyo-singer"
    assert path.name.startswith("oauth-") and path.suffix == ".json" and "app-1" not in path.name
    assert "canary" not in str(path)
    others = {
        default_token_path("app-2", "canary-refresh-A"),
        default_token_path("app-1", "canary-refresh-B"),  # another account's refresh token
        default_token_path("app-1", "canary-refresh-A", token_url="http://127.0.0.1:1/oauth/token"),
        default_token_path("app-1", "canary-refresh-A", base_url="http://127.0.0.1:1"),
    }
    assert len(others) == 4 and path not in others
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/ignored")
    assert str(default_token_path("app-1", "canary-refresh-A")).endswith(f".config/klaviyo-singer/{path.name}")


def test_about_lists_oauth_settings(capsys):
    TapKlaviyo.print_about(output_format="json")
    settings = json.loads(capsys.readouterr().out)["settings"]["properties"]
    assert settings["refresh_token"]["secret"] is True
