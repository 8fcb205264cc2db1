"""Sandbox configuration (shared by the CLI and the Python API)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .util import parse_ts

DEFAULT_API_KEY = "pk_sandbox_0123456789abcdef0123456789abcdef"
DEFAULT_CLIENT_ID = "sandbox-client-id"
DEFAULT_CLIENT_SECRET = "sandbox-client-secret"
# Fixed so generated data is identical run to run; before "today" so data is in the past.
DEFAULT_NOW = "2026-07-15T12:00:00+00:00"
# `now="now"`: the virtual clock is the real one, as Klaviyo's is (data is generated relative to the start).
# Pipelines that compare the sandbox's timestamps with their own clock (the tap caps its events bookmark
# at the run's start) need it; a fixed `now` plus elapsed time lags the real clock.
REAL_CLOCK = "now"
#: ``data``: the standard generated data, or properties shaped like real integrations' (realistic.py).
DATA_KINDS = ("standard", "realistic")
FAULT_KINDS = ("500", "502", "503", "504", "reset", "timeout", "slow", "html", "truncated", "429")


@dataclass
class SandboxConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0 = ephemeral
    seed: int = 1
    scale: float = 1.0
    latency_ms: float = 0.0
    rate_limit_scale: float = 1.0  # 0 disables rate limiting
    rate_window: str = "fixed"  # "fixed" (Klaviyo docs) or "sliding"
    fault_rate: float = 0.0
    faults: tuple = FAULT_KINDS
    timeout_seconds: float = 30.0  # how long the "timeout" fault stalls before closing
    api_key: str = DEFAULT_API_KEY
    now: str = DEFAULT_NOW
    job_seconds: float = 2.0  # bulk import job duration (queued -> processing -> complete)
    token_seconds: int = 3600  # OAuth access-token lifetime
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = DEFAULT_CLIENT_SECRET
    request_log_size: int = 10000  # bounded so long benchmarks don't grow memory
    extra_api_keys: tuple = field(default_factory=tuple)
    accounts: int = 1  # Klaviyo accounts behind the one token endpoint (account k has seed + k)
    # Keys that hold only some scopes: {key: ("profiles:read", ...)} (see scopes.py).
    key_scopes: dict = field(default_factory=dict)
    # Keep every /api/* and /oauth/* request (method, path, query, headers, body) for a test to read
    # (`Sandbox.requests`); off for the demo and benchmarks, whose request counts are unbounded.
    record_requests: bool = False
    token_prefix: str = ""  # starts every OAuth code and token issued (tests scan their output for it)
    data: str = "standard"  # one of DATA_KINDS
    # Serve HTTPS with this certificate and key (PEM files; see server.self_signed_certificate).
    tls_cert: str | None = None
    tls_key: str | None = None
    # Gzip answers when the request's Accept-Encoding allows it, as Klaviyo (behind Cloudflare) does.
    gzip: bool = False

    def __post_init__(self):
        if isinstance(self.faults, str):
            self.faults = tuple(f.strip() for f in self.faults.split(",") if f.strip())
        bad = [f for f in self.faults if f not in FAULT_KINDS]
        if bad:
            raise ValueError(f"unknown fault kinds {bad}; choose from {','.join(FAULT_KINDS)}")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("fault_rate must be within 0..1")
        if self.accounts < 1:
            raise ValueError("accounts must be >= 1")
        if self.scale <= 0:
            raise ValueError("scale must be > 0")
        if self.data not in DATA_KINDS:
            raise ValueError(f"data must be one of {', '.join(DATA_KINDS)}, not {self.data!r}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together")
        if self.rate_window not in ("fixed", "sliding"):
            raise ValueError("rate_window must be 'fixed' or 'sliding'")
        if not self.real_clock and parse_ts(self.now) is None:
            raise ValueError(f"now={self.now!r} is not an ISO-8601 timestamp (or {REAL_CLOCK!r})")

    @property
    def real_clock(self) -> bool:
        return self.now == REAL_CLOCK

    @property
    def now_ts(self) -> int:
        return int(time.time()) if self.real_clock else int(parse_ts(self.now) or 0)
