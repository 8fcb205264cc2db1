"""Settings tap and target share, and the checks that turn bad values into one-line errors."""

from __future__ import annotations

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
#: An http(s) URL with a host, not ending in /api: every request path already starts with /api.
BASE_URL_PATTERN = r"^https?://[^/?#\s]+(?!.*/api/?$)"
#: Klaviyo's revision header: a date, optionally with a suffix (``2024-10-15.pre``).
REVISION_PATTERN = r"^\d{4}-\d{2}-\d{2}(\.[A-Za-z0-9_-]+)?$"
#: What each schema ``pattern`` means, for the one-line error (the schema holds the rule).
PATTERN_MEANINGS = {
    "base_url": f"an http(s) URL such as {DEFAULT_BASE_URL}; it must not end in /api (paths add it)",
    "revision": f"a date that looks like YYYY-MM-DD, e.g. {DEFAULT_REVISION}",
}

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
        th.StringType(pattern=BASE_URL_PATTERN),
        default=DEFAULT_BASE_URL,
        title="Base URL",
        description="Klaviyo API root. Change it only to use a local sandbox or a proxy.",
    ),
    th.Property(
        "revision",
        th.StringType(pattern=REVISION_PATTERN),
        default=DEFAULT_REVISION,
        title="API revision",
        description="Value of Klaviyo's `revision` header (YYYY-MM-DD), pinned for stable schemas.",
    ),
    th.Property(
        "rate_limit_share",
        th.NumberType(exclusive_minimum=0, maximum=1),
        default=1.0,
        title="Share of the rate limit",
        description=(
            "Fraction (0-1] of each endpoint's Klaviyo rate limit this run may use, "
            "so that several pipelines can share one account."
        ),
    ),
    th.Property(
        "max_concurrency",
        th.IntegerType(minimum=1, maximum=MAX_CONCURRENCY_LIMIT),
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
        th.NumberType(exclusive_minimum=0),
        default=DEFAULT_REQUEST_TIMEOUT,
        title="Request timeout (seconds)",
        description=(
            "How long to wait for Klaviyo's answer to one request (read timeout; connecting "
            "may take 10 s) before the request is retried like any other network failure."
        ),
    ),
)


def config_error(message: str) -> ConfigValidationError:
    """A ConfigValidationError the SDK's CLI prints as one line before exiting 1."""
    return ConfigValidationError(message, errors=[message])


def check_connection_settings(config: t.Mapping[str, t.Any]) -> None:
    """Raise a one-line ConfigValidationError naming the setting and the fix.

    Only rules the JSON schema cannot express live here (one way to authenticate, the
    OAuth settings that go together, a token file's owner); ranges, choices and shapes
    are in the schema, checked by the SDK and worded by ``redact_config_errors``.
    """
    _check_credentials(config)


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
    """The SDK's schema errors as one line each, naming the setting and what it must be.

    jsonschema's messages start with the offending value ("12345 is not of type
    'string'"): for a secret setting that would print the secret, so such an error is
    replaced by one that names the setting only. Any other error gets what the schema
    asks for in front ("Setting max_concurrency must be a whole number from 1 to 64,
    e.g. 8: 0 is less than the minimum of 1 in config['max_concurrency']").
    """
    properties = (exc.schema or {}).get("properties") or {}
    return ConfigValidationError(
        str(exc), errors=[config_error_line(m, properties) for m in exc.errors or [str(exc)]], schema=exc.schema
    )


_SETTING_OF_ERROR = re.compile(r" in config\['([^']+)'\]")


def config_error_line(message: str, properties: t.Mapping[str, t.Any]) -> str:
    """One schema error, with the setting's expectation (from its schema) in front."""
    found = _SETTING_OF_ERROR.search(message)
    name = found.group(1) if found else ""
    if name in SECRET_SETTINGS:
        return f"Setting {name} must be text (a JSON string in quotes); its value is not shown, as it is secret."
    spec = properties.get(name)
    if not isinstance(spec, dict):
        return message
    if " does not match '" in message:  # the regex itself would only confuse: show the value
        return f"Setting {name} must be {expectation(name, spec)} (not {message.split(' does not match ')[0]})."
    if " is not one of [" in message:  # the choices are in the expectation already
        return f"Setting {name} must be {expectation(name, spec)} (not {message.split(' is not one of [')[0]})."
    return f"Setting {name} must be {expectation(name, spec)}: {message}"


def expectation(name: str, spec: t.Mapping[str, t.Any]) -> str:
    """What a setting's JSON schema accepts, in words: "a number above 0 and at most 1, e.g. 1.0"."""
    if name in PATTERN_MEANINGS and spec.get("pattern"):
        return PATTERN_MEANINGS[name]
    if spec.get("enum"):
        return "one of " + ", ".join(str(v) for v in spec["enum"] if v is not None) + " (exactly, lower case)"
    items: t.Mapping[str, t.Any] = spec["items"] if isinstance(spec.get("items"), dict) else {}
    if items.get("enum"):
        return "a list of " + ", ".join(str(v) for v in items["enum"])
    kinds = [kind for kind in _types(spec) if kind != "null"]
    noun = {"integer": "a whole number", "number": "a number", "string": "text (a JSON string)",
            "boolean": "true or false", "array": "a list", "object": "an object"}  # fmt: skip
    text = " or ".join(noun.get(kind, kind) for kind in kinds) or "valid"
    unit = re.search(r"\((\w+)\)$", str(spec.get("title") or ""))
    if unit and kinds and set(kinds) <= {"integer", "number"}:
        text += f" of {unit.group(1)}"
    text += _bounds(spec)
    default = spec.get("default")
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        text += f", e.g. {default}"
    return text


def _types(spec: t.Mapping[str, t.Any]) -> list[str]:
    kinds = spec.get("type") or [option.get("type") for option in spec.get("anyOf") or [] if option.get("type")]
    return [kinds] if isinstance(kinds, str) else [str(kind) for kind in kinds]


def _bounds(spec: t.Mapping[str, t.Any]) -> str:
    low = (f"above {spec['exclusiveMinimum']}" if "exclusiveMinimum" in spec
           else f"{spec['minimum']} or more" if "minimum" in spec else "")  # fmt: skip
    high = (f"below {spec['exclusiveMaximum']}" if "exclusiveMaximum" in spec
            else f"at most {spec['maximum']}" if "maximum" in spec else "")  # fmt: skip
    if "minimum" in spec and "maximum" in spec:
        return f" from {spec['minimum']} to {spec['maximum']}"
    return " " + " and ".join(filter(None, [low, high])) if low or high else ""
