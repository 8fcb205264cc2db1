"""A Klaviyo-compatible HTTP server for loopback development and tests.

    from klaviyo_sandbox import Sandbox, SandboxConfig
    with Sandbox(SandboxConfig(seed=1, scale=0.01, rate_limit_scale=0.0)) as sb:
        sb.base_url, sb.api_key, sb.store

Not a runtime dependency of tap-klaviyo / target-klaviyo; standard library only.
"""

from .config import SandboxConfig
from .oauth import pkce_challenge
from .server import Sandbox

__all__ = ["Sandbox", "SandboxConfig", "pkce_challenge"]
