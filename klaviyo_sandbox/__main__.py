"""CLI: python -m klaviyo_sandbox --port 8765 [--seed 1 --scale 1 ...]

Prints one line "<base_url> <api_key>" once the server is listening, then serves until
interrupted (Ctrl-C / SIGTERM).
"""

from __future__ import annotations

import argparse
import gc
import signal
import sys
import threading

from .config import (
    DATA_KINDS,
    DEFAULT_API_KEY,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_NOW,
    FAULT_KINDS,
    SandboxConfig,
)
from .server import Sandbox, self_signed_certificate


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m klaviyo_sandbox", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--scale", type=float, default=1.0, help="data size multiplier (1 = 2,000 profiles, 20,000 events)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="added to every response")
    p.add_argument("--rate-limit-scale", type=float, default=1.0, help="multiplies each endpoint's limits; 0 disables")
    p.add_argument("--rate-window", choices=("fixed", "sliding"), default="fixed")
    p.add_argument("--fault-rate", type=float, default=0.0, help="probability (0..1) of an injected fault per request")
    p.add_argument("--faults", default=",".join(FAULT_KINDS), help="comma list among " + ",".join(FAULT_KINDS))
    p.add_argument("--timeout-seconds", type=float, default=30.0, help="stall length of the 'timeout' fault")
    p.add_argument("--api-key", default=DEFAULT_API_KEY)
    p.add_argument(
        "--now", default=DEFAULT_NOW, help="ISO timestamp data is generated relative to; 'now' = the real clock"
    )
    p.add_argument("--job-seconds", type=float, default=2.0, help="bulk import job duration")
    p.add_argument("--token-seconds", type=int, default=3600, help="OAuth access-token lifetime")
    p.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    p.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    p.add_argument("--accounts", type=int, default=1, help="Klaviyo accounts behind the one OAuth app (seed + k)")
    p.add_argument(
        "--key-scopes",
        action="append",
        default=[],
        metavar="KEY=SCOPE,SCOPE",
        help="accept KEY too, granted only these scopes (e.g. pk_x=lists:read,events:read); repeatable",
    )
    p.add_argument(
        "--data",
        choices=DATA_KINDS,
        default="standard",
        help="realistic: event and profile properties like real integrations'",
    )
    p.add_argument(
        "--tls", metavar="DIR", help="serve HTTPS with DIR/cert.pem and DIR/key.pem (self-signed, made when absent)"
    )
    p.add_argument("--gzip", action="store_true", help="gzip answers when the client accepts it, as Klaviyo does")
    return p


def parse_key_scopes(values) -> dict:
    out = {}
    for value in values:
        key, sep, grants = value.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--key-scopes {value!r}: use KEY=SCOPE,SCOPE")
        out[key.strip()] = tuple(g.strip() for g in grants.split(",") if g.strip())
    return out


def config_from_args(args) -> SandboxConfig:
    cert, key = self_signed_certificate(args.tls) if getattr(args, "tls", None) else (None, None)
    return SandboxConfig(
        host=args.host,
        port=args.port,
        seed=args.seed,
        scale=args.scale,
        latency_ms=args.latency_ms,
        rate_limit_scale=args.rate_limit_scale,
        rate_window=args.rate_window,
        fault_rate=args.fault_rate,
        faults=args.faults,
        timeout_seconds=args.timeout_seconds,
        api_key=args.api_key,
        now=args.now,
        job_seconds=args.job_seconds,
        token_seconds=args.token_seconds,
        client_id=args.client_id,
        client_secret=args.client_secret,
        accounts=args.accounts,
        key_scopes=parse_key_scopes(args.key_scopes),
        data=args.data,
        tls_cert=cert,
        tls_key=key,
        gzip=args.gzip,
    )


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with Sandbox(cfg) as sb:
        # Startup objects never die: exclude them from GC scans (pages allocate a lot).
        gc.freeze()
        print(f"{sb.base_url} {sb.api_key}", flush=True)
        try:
            done.wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
