"""Default connection values and how to read credential settings from a config.

The bottom of klaviyo_core's imports: oauth, auth and settings all build on it, and it
imports none of them (tests/test_import_layers.py keeps it so).
"""

from __future__ import annotations

import typing as t

DEFAULT_BASE_URL = "https://a.klaviyo.com"
DEFAULT_REVISION = "2026-07-15"
DEFAULT_TOKEN_URL = "https://a.klaviyo.com/oauth/token"
DEFAULT_AUTHORIZE_URL = "https://www.klaviyo.com/oauth/authorize"
#: Seconds to wait for an answer (read timeout); Klaviyo's slowest pages take well under this.
DEFAULT_REQUEST_TIMEOUT = 120.0
#: Requests in flight at once (tap: pages of a stream; target: import jobs); 1 = one at a time.
DEFAULT_MAX_CONCURRENCY = 8
MAX_CONCURRENCY_LIMIT = 64
#: Settings that mean "authenticate with OAuth"; any of them next to api_key is ambiguous.
OAUTH_SETTINGS = ("client_id", "client_secret", "refresh_token", "access_token")


def setting_text(config: t.Mapping[str, t.Any], name: str) -> str:
    """A string setting, whitespace trimmed; '' when unset (Meltano passes unset as '')."""
    return str(config.get(name) or "").strip()


def api_key(config: t.Mapping[str, t.Any]) -> str:
    """The configured private key, whitespace trimmed."""
    return setting_text(config, "api_key")


def uses_oauth(config: t.Mapping[str, t.Any]) -> bool:
    """True when the config authenticates with OAuth rather than a private key."""
    return not api_key(config) and any(setting_text(config, name) for name in OAUTH_SETTINGS)
