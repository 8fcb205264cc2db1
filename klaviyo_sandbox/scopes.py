"""Scopes each operation needs (the spec's `x-klaviyo-scopes`), and keys granted only some.

Read from ``klaviyo_core/endpoints.json``, which ``scripts/generate_from_spec.py`` makes from the spec.
A key listed in `SandboxConfig.key_scopes` holds only the scopes given there; every other
valid key (and OAuth token) holds all scopes.

Choices where Klaviyo's docs are silent or only describe the UI:
- A `X:write` grant includes `X:read` (Klaviyo's key editor offers "Read Access" or "Full
  Access" per area, and full access is read and write).
- The check comes right after authentication, before the revision header, rate limits and
  any validation of the request: a key without the scope gets 403 whatever it sends, and
  nothing changes.
- The 403 body is Klaviyo's `permission_denied` error.
"""

from __future__ import annotations

from klaviyo_core import endpoints

# The spec's x-klaviyo-scopes per operation, as the plugins' generated endpoint table holds them.
SCOPES = {op: endpoint.scopes for op, endpoint in endpoints.endpoints().items()}


def granted(grants: tuple) -> set:
    """The scopes a grant list gives (a write scope gives the matching read scope too)."""
    out = set(grants)
    out |= {g.split(":")[0] + ":read" for g in grants if g.endswith(":write")}
    return out


def missing(op: str, grants: tuple) -> list:
    """The scopes `op` needs that `grants` lack."""
    have = granted(grants)
    return [scope for scope in SCOPES.get(op, ()) if scope not in have]
