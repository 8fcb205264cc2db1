"""Settings tap and target share, and the checks that turn bad values into one-line errors."""

from __future__ import annotations

import decimal
import re
import typing as t
from urllib.parse import urlsplit

from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError

from klaviyo_core.auth import TokenFileConflict, TokenStore
from klaviyo_core.defaults import (
    DEFAULT_AUTHORIZE_URL,
    DEFAULT_BASE_URL,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_REVISION,
    DEFAULT_TOKEN_URL,
    MAX_CONCURRENCY_LIMIT,
    OAUTH_SETTINGS,
    api_key,
    setting_text,
    uses_oauth,
)

__all__ = [  # the defaults and readers are re-exported: plugins and tests import them from here
    "DEFAULT_AUTHORIZE_URL",
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_REQUEST_TIMEOUT",
    "DEFAULT_REVISION",
    "DEFAULT_TOKEN_URL",
    "MAX_CONCURRENCY_LIMIT",
    "OAUTH_SETTINGS",
    "api_key",
    "setting_text",
    "uses_oauth",
]

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

CONNECTION_SETTINGS = th.PropertiesList(
    th.Property(
        "api_key",
        th.StringType,
        secret=True,
        title="Private API key",
        description=(
            "Klaviyo private API key (starts with `pk_`). Needs read scopes for the tap, "
            "`lists:write` and `profiles:write` for the target. Leave it out to use OAuth."
        ),
    ),
    th.Property(
        "client_id",
        th.StringType,
        title="OAuth client ID",
        description=(
            "Client ID of your Klaviyo OAuth app. OAuth replaces api_key: set client_id, "
            "client_secret and refresh_token (get one per Klaviyo account with `klaviyo-oauth authorize`)."
        ),
    ),
    th.Property(
        "client_secret",
        th.StringType,
        secret=True,
        title="OAuth client secret",
        description="Client secret of your Klaviyo OAuth app.",
    ),
    th.Property(
        "refresh_token",
        th.StringType,
        secret=True,
        title="OAuth refresh token",
        description=(
            "Refresh token from `klaviyo-oauth authorize`; it names the account. May be left out when "
            "token_file already holds one. Tokens Klaviyo rotates are kept in token_file, never here."
        ),
    ),
    th.Property(
        "access_token",
        th.StringType,
        secret=True,
        title="OAuth access token",
        description=(
            "Optional current access token; used until Klaviyo rejects it, then refreshed. Alone (no "
            "client_secret, refresh_token or token_file) it is used as handed over, e.g. by an orchestrator."
        ),
    ),
    th.Property(
        "token_file",
        th.StringType,
        title="OAuth token file",
        description=(
            "Where rotated OAuth tokens are kept (owner-only, mode 0600) and read first on the "
            "next run; one file per Klaviyo account, bound to its account, refresh token and host. "
            "Default: $XDG_CONFIG_HOME (or ~/.config)/klaviyo-singer/oauth-<hash of client_id, "
            "token_url, base_url and refresh_token>.json."
        ),
    ),
    th.Property(
        "token_url",
        th.StringType,
        default=DEFAULT_TOKEN_URL,
        title="OAuth token URL",
        description="Klaviyo's OAuth token endpoint. Change it only for a local sandbox or tests.",
    ),
    th.Property(
        "authorize_url",
        th.StringType,
        default=DEFAULT_AUTHORIZE_URL,
        title="OAuth authorize URL",
        description="Klaviyo's OAuth consent page, used by `klaviyo-oauth`. Change it only for a sandbox.",
    ),
    th.Property(
        "base_url",
        th.StringType,
        default=DEFAULT_BASE_URL,
        title="Base URL",
        description="Klaviyo API root. Change it only to use a local sandbox or a proxy.",
    ),
    th.Property(
        "revision",
        th.StringType,
        default=DEFAULT_REVISION,
        title="API revision",
        description="Value of Klaviyo's `revision` header (YYYY-MM-DD), pinned for stable schemas.",
    ),
    th.Property(
        "rate_limit_share",
        th.NumberType,
        default=1.0,
        title="Share of the rate limit",
        description=(
            "Fraction (0-1] of each endpoint's Klaviyo rate limit this run may use, "
            "so that several pipelines can share one account."
        ),
    ),
    th.Property(
        "max_concurrency",
        th.IntegerType,
        default=DEFAULT_MAX_CONCURRENCY,
        title="Maximum concurrency",
        description=(
            "Work in flight at once. The tap reads events, profiles and list/segment members as "
            "time slices fetched in parallel (records still come out in order, bookmarks stay "
            "resumable); the target keeps up to this many bulk import jobs uploading or running. "
            "Pacing keeps both within Klaviyo's rate limits (times rate_limit_share). "
            f"1 = one request at a time; at most {MAX_CONCURRENCY_LIMIT}."
        ),
    ),
    th.Property(
        "request_timeout",
        th.NumberType,
        default=DEFAULT_REQUEST_TIMEOUT,
        title="Request timeout (seconds)",
        description=(
            "How long to wait for Klaviyo's answer to one request (read timeout; connecting "
            "may take 10 s) before the request is retried like any other network failure."
        ),
    ),
)

_REVISION = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[A-Za-z0-9_-]+)?$")


def config_error(message: str) -> ConfigValidationError:
    """A ConfigValidationError the SDK's CLI prints as one line before exiting 1."""
    return ConfigValidationError(message, errors=[message])


def check_connection_settings(config: t.Mapping[str, t.Any]) -> None:
    """Raise a one-line ConfigValidationError naming the setting and the fix."""
    _check_credentials(config)
    base = str(config.get("base_url") or DEFAULT_BASE_URL)
    if urlsplit(base).scheme not in ("http", "https") or not urlsplit(base).netloc:
        raise config_error(f"Setting base_url must be an http(s) URL such as {DEFAULT_BASE_URL}.")
    if urlsplit(base).path.rstrip("/").endswith("/api"):
        # Every path already starts with /api: this base would make each request 404.
        raise config_error(
            f"Setting base_url must not end in /api (paths add it): use {base.rstrip('/')[: -len('/api')]}."
        )
    if not _REVISION.match(str(config.get("revision") or DEFAULT_REVISION)):
        raise config_error(f"Setting revision must look like YYYY-MM-DD, e.g. {DEFAULT_REVISION}.")
    share = config.get("rate_limit_share", 1.0)
    if not _is_number(share) or not 0 < share <= 1:
        raise config_error("Setting rate_limit_share must be a number above 0 and at most 1, e.g. 0.5.")
    concurrency = config.get("max_concurrency", DEFAULT_MAX_CONCURRENCY)
    if concurrency is not None and (
        not _is_number(concurrency) or concurrency != int(concurrency) or not 1 <= concurrency <= MAX_CONCURRENCY_LIMIT
    ):
        raise config_error(
            f"Setting max_concurrency must be a whole number from 1 to {MAX_CONCURRENCY_LIMIT}, e.g. "
            f"{DEFAULT_MAX_CONCURRENCY} (1 = one request at a time)."
        )
    timeout = config.get("request_timeout", DEFAULT_REQUEST_TIMEOUT)
    if timeout is not None and (not _is_number(timeout) or not timeout > 0):
        raise config_error(
            f"Setting request_timeout must be a number of seconds above 0, e.g. {DEFAULT_REQUEST_TIMEOUT:.0f}."
        )


def _is_number(value: t.Any) -> bool:
    """A JSON number: the SDK reads a config file's decimals as ``Decimal``, not ``float``."""
    return isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool)


def _check_credentials(config: t.Mapping[str, t.Any]) -> None:
    """Exactly one way to authenticate: a private key, or an OAuth app's tokens."""
    oauth = [name for name in OAUTH_SETTINGS if setting_text(config, name)]
    if api_key(config) and oauth:
        raise config_error(
            f"Both api_key and OAuth settings ({', '.join(oauth)}) are set: use one way to authenticate "
            "(remove api_key to use OAuth, or the OAuth settings to use the private key)."
        )
    if api_key(config):
        _check_api_key(api_key(config))
    elif not oauth:
        raise config_error(
            "Setting api_key is missing or empty: set it to a Klaviyo private API key (pk_...), "
            "or authenticate an OAuth app with client_id, client_secret and refresh_token instead."
        )
    else:
        _check_oauth(config)


def _check_api_key(key: str) -> None:
    if not key.startswith("pk_"):
        shape = "a public (site) key" if re.fullmatch(r"[A-Za-z0-9]{6}", key) else "not a private key"
        raise config_error(
            f"Setting api_key is {shape}: use a private API key, which starts with pk_ (Klaviyo > Settings > API keys)."
        )
    if any(ch.isspace() for ch in key):
        raise config_error("Setting api_key contains whitespace inside the key: paste the key again.")


def _check_oauth(config: t.Mapping[str, t.Any]) -> None:
    for name in OAUTH_SETTINGS:
        if any(ch.isspace() for ch in setting_text(config, name)):
            raise config_error(f"Setting {name} contains whitespace: paste the value again.")
    _check_url(config, "token_url", DEFAULT_TOKEN_URL, https_only=True)
    _check_url(config, "authorize_url", DEFAULT_AUTHORIZE_URL, https_only=False)
    if _access_token_only(config):
        return  # an orchestrator refreshes it; its expiry ends the run with one line
    missing = [name for name in ("client_id", "client_secret") if not setting_text(config, name)]
    stored = _stored_refresh_token(config)  # before any request: a token file of another account is refused
    if not setting_text(config, "refresh_token") and not stored:
        missing.append("refresh_token")
    if missing:
        names = " and ".join(filter(None, [", ".join(missing[:-1]), missing[-1]]))
        raise config_error(
            f"OAuth setting{'s' if len(missing) > 1 else ''} {names} "
            f"{'are' if len(missing) > 1 else 'is'} missing: OAuth needs client_id, client_secret "
            "and refresh_token (`klaviyo-oauth authorize` gets a refresh token), or an access_token alone."
        )


def _access_token_only(config: t.Mapping[str, t.Any]) -> bool:
    """An access token handed over alone: no client secret, refresh token or token file to refresh it.

    With a client secret, the config means to refresh: a missing refresh token is then an error.
    """
    return bool(setting_text(config, "access_token")) and not any(
        setting_text(config, name) for name in ("client_secret", "refresh_token", "token_file")
    )


def _check_url(config: t.Mapping[str, t.Any], name: str, default: str, *, https_only: bool) -> None:
    """The token URL receives the client secret: plain http only to this machine."""
    parts = urlsplit(setting_text(config, name) or default)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise config_error(f"Setting {name} must be an http(s) URL such as {default}.")
    if https_only and parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
        raise config_error(f"Setting {name} must use https (plain http is allowed only for 127.0.0.1 or localhost).")


def _stored_refresh_token(config: t.Mapping[str, t.Any]) -> bool:
    """Whether the config's token file holds a refresh token this config may use."""
    if not setting_text(config, "client_id"):
        return False
    store = TokenStore.for_config(config)
    try:
        return store is not None and store.load() is not None
    except TokenFileConflict as exc:
        raise config_error(str(exc)) from None


#: Settings whose values never appear in a message, whatever is wrong with them.
SECRET_SETTINGS = ("api_key", "client_secret", "refresh_token", "access_token")


def redact_config_errors(exc: ConfigValidationError) -> ConfigValidationError:
    """The SDK's schema errors with the values of secret settings left out.

    jsonschema's messages start with the offending value ("12345 is not of type
    'string'"): for a secret setting that would print the secret. Such an error is
    replaced by one naming the setting and the fix.
    """
    errors = []
    for message in exc.errors or [str(exc)]:
        name = next((n for n in SECRET_SETTINGS if message.endswith(f"in config['{n}']")), None)
        errors.append(
            f"Setting {name} must be text (a JSON string in quotes); its value is not shown, as it is secret."
            if name
            else message
        )
    return ConfigValidationError(str(exc), errors=errors)
