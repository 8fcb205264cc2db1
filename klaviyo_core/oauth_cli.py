"""klaviyo-oauth: get a Klaviyo OAuth refresh token (authorization code + PKCE S256) and keep it.

The tap and target only refresh tokens; someone must first approve the app in a
browser. This helper covers a desktop (a one-shot callback server on 127.0.0.1),
a headless machine (paste the redirect URL back) and web apps (``url`` then
``exchange``). Tokens go to the token file, never to stdout unless asked for.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import threading
import time
import typing as t
import webbrowser
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlsplit

from typing_extensions import override

from klaviyo_core.auth import Binding, OAuthAuth, TokenStore
from klaviyo_core.defaults import DEFAULT_AUTHORIZE_URL, DEFAULT_BASE_URL, DEFAULT_TOKEN_URL, setting_text
from klaviyo_core.errors import KlaviyoError
from klaviyo_core.oauth import (
    PKCE,
    OAuthError,
    TokenEndpoint,
    Tokens,
    account_name,
    account_of,
    authorize_link,
    code_from,
    default_token_path,
    is_redirect,
    parse_redirect,
    same_url,
    scopes_for,
    seed_fingerprint,
)

DEFAULT_PORT = 8400
_SETTINGS = (
    "client_id", "client_secret", "refresh_token", "access_token", "token_file", "token_url", "authorize_url",
    "base_url",
)  # fmt: skip


class _CallbackHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != "/callback":
            self.send_error(404)
            return
        params = {key: values[0] for key, values in parse_qs(parts.query).items()}
        ok = "code" in params and params.get("state") == self.server.expected_state  # type: ignore[attr-defined]
        page = "Authorisation received: you can close this tab." if ok else "Authorisation failed: see the terminal."
        body = f"<!doctype html><title>klaviyo-oauth</title><p>{page}</p>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.server.deliver(params)  # type: ignore[attr-defined]

    @override
    def log_message(self, *args: t.Any) -> None:
        """Silent: the request line holds the authorization code."""


class CallbackServer(HTTPServer):
    """Serves ``/callback`` on 127.0.0.1 until the first redirect arrives."""

    def __init__(self, port: int, expected_state: str) -> None:
        try:
            super().__init__(("127.0.0.1", port), _CallbackHandler)
        except OSError as exc:
            raise KlaviyoError(
                f"Cannot listen on 127.0.0.1:{port} ({exc.strerror}): pass --redirect-port with a free "
                "port registered in the app's redirect URLs, or use --headless."
            ) from None
        self.expected_state = expected_state
        self.params: dict[str, str] | None = None
        self._done = threading.Event()

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/callback"

    def deliver(self, params: dict[str, str]) -> None:
        if self.params is None:
            self.params = params
        self._done.set()

    @override
    def __enter__(self) -> CallbackServer:
        """Serve before the browser opens: a fast redirect must find someone listening."""
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    @override
    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()

    def wait(self, timeout: float) -> dict[str, str] | None:
        self._done.wait(timeout)
        return self.params


def _say(message: str) -> None:
    print(message, file=sys.stderr)  # noqa: T201 - instructions; stdout carries results


def cmd_authorize(args: argparse.Namespace, settings: dict) -> int:
    pkce = PKCE()
    if args.headless:
        redirect_uri = args.redirect_uri or f"http://127.0.0.1:{args.redirect_port}/callback"
        code = _headless_code(authorize_link(settings, redirect_uri, _scopes(args), pkce), redirect_uri, pkce)
    else:
        with CallbackServer(args.redirect_port, pkce.state) as server:
            redirect_uri = server.redirect_uri
            link = authorize_link(settings, redirect_uri, _scopes(args), pkce)
            _say(f"Opening the browser to authorise the app. If it does not open, visit:\n\n  {link}\n")
            webbrowser.open(link)
            params = server.wait(args.timeout)
        if params is None:
            raise KlaviyoError(
                f"No answer from the browser within {args.timeout:g} s: run again "
                "(--timeout gives more time), or use --headless on a machine without a browser."
            )
        code = code_from(params, pkce.state)
    tokens = _exchange(settings, code, pkce.verifier, redirect_uri, "klaviyo-oauth authorize")
    return _store_and_report(args, settings, tokens)


def _headless_code(link: str, redirect_uri: str, pkce: PKCE) -> str:
    _say(
        "Open this URL in a browser on any machine and allow access:\n\n"
        f"  {link}\n\n"
        f"The browser then goes to {redirect_uri}?code=... ; that page may not load. Copy the "
        "whole address from the address bar (or just the code) and paste it here:"
    )
    pasted = sys.stdin.readline()
    if not pasted.strip():
        raise KlaviyoError("Nothing was pasted: run again and paste the redirect URL.")
    return code_from(parse_redirect(pasted), pkce.state if is_redirect(pasted) else None)


def cmd_url(args: argparse.Namespace, settings: dict) -> int:
    pkce = PKCE()
    redirect_uri = args.redirect_uri or f"http://127.0.0.1:{args.redirect_port}/callback"
    result = {
        "authorize_url": authorize_link(settings, redirect_uri, _scopes(args), pkce),
        "state": pkce.state,
        "code_verifier": pkce.verifier,
        "redirect_uri": redirect_uri,
        "scopes": _scopes(args),
    }
    print(json.dumps(result, indent=2))  # noqa: T201
    return 0


def cmd_exchange(args: argparse.Namespace, settings: dict) -> int:
    code = code_from(parse_redirect(args.code), args.state if is_redirect(args.code) else None)
    tokens = _exchange(settings, code, args.verifier, args.redirect_uri, "klaviyo-oauth url")
    return _store_and_report(args, settings, tokens)


def cmd_refresh(args: argparse.Namespace, settings: dict) -> int:
    auth = OAuthAuth.from_config(settings)
    if auth.tokens.refresh_token == "" and TokenStore.for_config(settings) is None:
        raise KlaviyoError("Nothing to refresh: set refresh_token, or token_file (pass --token-file or --config).")
    before = auth.tokens.refresh_token
    tokens = auth.refresh_now()
    until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(tokens.expires_at)) if tokens.expires_at else "?"
    rotated = "rotated" if tokens.refresh_token != before else "unchanged"
    print(  # noqa: T201
        f"Refreshed account {tokens.account_id or '(unknown)'}: access token valid until {until}; "
        f"refresh token {rotated}; stored in {auth.token_file}."
    )
    _maybe_print_refresh_token(args, tokens)
    return 0


def cmd_revoke(args: argparse.Namespace, settings: dict) -> int:
    """Revoke the grant at Klaviyo (``POST /oauth/revoke``), then forget the local tokens."""
    store = TokenStore.for_config(settings)
    saved = store.load() if store else None
    refresh_token = (saved.refresh_token if saved else "") or settings["refresh_token"]
    access_token = (saved.access_token if saved else None) or settings["access_token"]
    if not refresh_token and not access_token:
        where = f"no tokens in {store.path}" if store else "no token_file"
        raise KlaviyoError(f"Nothing to revoke: {where} and no refresh_token or access_token in the settings.")
    endpoint = TokenEndpoint(settings["token_url"], settings["client_id"], _client_secret(settings))
    if refresh_token:
        endpoint.revoke(refresh_token, "refresh_token")  # Klaviyo ends the whole grant with it
    if access_token:
        endpoint.revoke(access_token, "access_token")
    removed = store.remove() if store else False
    account = f" of account {saved.account_id}" if saved and saved.account_id else ""
    local = f"; removed {store.path}" if store and removed else "; no local token file to remove"
    print(f"Revoked the OAuth grant{account} at Klaviyo{local}.")  # noqa: T201
    return 0


def _exchange(settings: dict, code: str, verifier: str, redirect_uri: str, restart: str) -> Tokens:
    endpoint = TokenEndpoint(settings["token_url"], settings["client_id"], _client_secret(settings))
    try:
        return endpoint.exchange(code, verifier, redirect_uri, time.time())
    except OAuthError as exc:
        if exc.error != "invalid_grant":
            raise
        raise KlaviyoError(
            f"{exc} A code works once and only briefly, and the verifier and redirect URI must be "
            f"those it was requested with: start again with {restart}."
        ) from None


def _store_and_report(args: argparse.Namespace, settings: dict, tokens: Tokens) -> int:
    account = account_of(settings["base_url"], tokens.access_token or "")
    tokens.account_id = account["id"] if account else None
    store = _authorize_store(settings, tokens)
    try:
        _guard_overwrite(store, settings, tokens)
    except KlaviyoError:
        _revoke_quietly(settings, tokens)  # the new grant would dangle, stored nowhere
        raise
    try:
        store.save(
            settings["client_id"],
            tokens,
            settings["token_url"],
            base_url=settings["base_url"],
            seeds=[seed_fingerprint(tokens.refresh_token)],
            keep_seeds=_same_account(store.read_record(), tokens),
        )
    except OSError as exc:
        raise KlaviyoError(f"Could not write {store.path} ({exc.strerror}): pass --token-file PATH.") from None
    snippet = {"client_id": settings["client_id"], "client_secret": "<your client secret>"}
    snippet["token_file"] = str(store.path)  # the file, not the client_id, names the account's tokens
    for name, default in (
        ("token_url", DEFAULT_TOKEN_URL), ("authorize_url", DEFAULT_AUTHORIZE_URL), ("base_url", DEFAULT_BASE_URL)
    ):  # fmt: skip
        if not same_url(settings[name], default):
            snippet[name] = settings[name]
    checked = "" if account else " (could not read GET /api/accounts: is accounts:read among the scopes?)"
    print(  # noqa: T201
        f"Authorised account {account_name(account)}{checked} (scopes: {tokens.scope or 'as requested'}). "
        f"Tokens stored in {store.path} (owner-only, mode 0600).\nSet these settings for this account's "
        "tap-klaviyo / target-klaviyo (and no api_key); the refresh token is read from that file:\n"
        f"{json.dumps(snippet, indent=2)}\n"
        "Each Klaviyo account needs its own token_file. To run on another machine, copy the file there "
        "(keep mode 0600), or authorise again with --print-refresh-token and set refresh_token."
    )
    _maybe_print_refresh_token(args, tokens)
    return 0


def _authorize_store(settings: dict, tokens: Tokens) -> TokenStore:
    """Where authorised tokens go: token_file, the config's own file, or a new file for this grant."""
    binding = Binding.from_config(settings)
    if settings["token_file"]:
        return TokenStore(settings["token_file"], binding, explicit=True)
    seed = binding.refresh_token or tokens.refresh_token  # a config's refresh token keeps its file
    path = default_token_path(
        settings["client_id"], seed, token_url=settings["token_url"], base_url=settings["base_url"]
    )
    return TokenStore(path, binding, explicit=True)


def _same_account(record: dict | None, tokens: Tokens) -> bool:
    return bool(record and tokens.account_id and record.get("account_id") == tokens.account_id)


def _guard_overwrite(store: TokenStore, settings: dict, tokens: Tokens) -> None:
    """Never replace another account's, app's or host's tokens, nor narrow the scopes they have."""
    record = store.read_record()
    if record is None:
        return
    fix = f"pass another --token-file, or run klaviyo-oauth revoke --token-file {store.path} first"
    other = record.get("client_id") != settings["client_id"] or not all(
        same_url(record.get(name) or settings[name], settings[name]) for name in ("token_url", "base_url")
    )
    if other:
        raise KlaviyoError(f"token_file {store.path} holds the tokens of another app or host: {fix}.")
    if not _same_account(record, tokens):
        known = record.get("account_id")
        if known or store.mismatch(record) or not store.binding or not store.binding.refresh_token:
            theirs = f"account {known}" if known else "an account that cannot be confirmed"
            raise KlaviyoError(
                f"token_file {store.path} holds the tokens of {theirs}, and the browser approved account "
                f"{tokens.account_id or '(unknown)'}: nothing was stored; {fix}."
            )
        return
    lost = set((record.get("scope") or "").split()) - set((tokens.scope or "").split())
    if lost:
        raise KlaviyoError(
            f"token_file {store.path} holds tokens with scopes these lack ({' '.join(sorted(lost))}; e.g. "
            f"the tap's): nothing was stored; authorise into another --token-file, or request --for both."
        )


def _revoke_quietly(settings: dict, tokens: Tokens) -> None:
    try:
        TokenEndpoint(settings["token_url"], settings["client_id"], settings["client_secret"]).revoke(
            tokens.refresh_token, "refresh_token"
        )
    except KlaviyoError:
        _say("Could not revoke the refused grant at Klaviyo; it expires unused after 90 days.")


def _maybe_print_refresh_token(args: argparse.Namespace, tokens: Tokens) -> None:
    if getattr(args, "print_refresh_token", False):
        print(f"refresh_token: {tokens.refresh_token}")  # noqa: T201 - explicitly asked for


def _scopes(args: argparse.Namespace) -> str:
    return " ".join((args.scopes or scopes_for(args.for_)).replace(",", " ").split())


def _client_secret(settings: dict) -> str:
    """From flag, env, or config; else asked for without echo when a terminal is attached."""
    if not settings.get("client_secret") and sys.stdin.isatty():
        settings["client_secret"] = getpass.getpass("Klaviyo OAuth client secret: ").strip()
    if not settings.get("client_secret"):
        raise KlaviyoError("No client secret: set KLAVIYO_CLIENT_SECRET, or pass --config or --client-secret.")
    return settings["client_secret"]


def resolve_settings(args: argparse.Namespace) -> dict:
    """Flags win over KLAVIYO_CLIENT_ID / KLAVIYO_CLIENT_SECRET, which win over --config."""
    config: dict = {}
    if args.config:
        try:
            with open(args.config) as handle:
                config = json.load(handle)
        except (OSError, ValueError) as exc:
            raise KlaviyoError(f"Cannot read --config {args.config}: {type(exc).__name__}.") from None
    settings = {name: setting_text(config, name) for name in _SETTINGS}
    settings["client_id"] = os.environ.get("KLAVIYO_CLIENT_ID", "").strip() or settings["client_id"]
    settings["client_secret"] = os.environ.get("KLAVIYO_CLIENT_SECRET", "").strip() or settings["client_secret"]
    for name in ("client_id", "client_secret", "token_file", "token_url", "authorize_url", "base_url"):
        value = getattr(args, name, None)
        if value:
            settings[name] = value.strip()
    settings["token_url"] = settings["token_url"] or DEFAULT_TOKEN_URL
    settings["authorize_url"] = settings["authorize_url"] or DEFAULT_AUTHORIZE_URL
    settings["base_url"] = settings["base_url"] or DEFAULT_BASE_URL
    if not settings["client_id"]:
        raise KlaviyoError("No client ID: pass --client-id, set KLAVIYO_CLIENT_ID, or use --config.")
    if args.command != "url":
        _client_secret(settings)
    return settings


_EXAMPLES = """examples:
  desktop   KLAVIYO_CLIENT_SECRET=... klaviyo-oauth authorize --client-id ID [--for tap]
  headless  klaviyo-oauth authorize --config config.json --headless
  web app   klaviyo-oauth url --client-id ID --redirect-uri https://app.example/cb
            klaviyo-oauth exchange --config config.json --code 'REDIRECT_URL' --state S \\
                --verifier V --redirect-uri https://app.example/cb
  refresh   klaviyo-oauth refresh --config config.json
  revoke    klaviyo-oauth revoke --config config.json     (at Klaviyo, and the local token file)

Register http://127.0.0.1:8400/callback (or your --redirect-uri) in the app's redirect URLs.
Tokens go to the token file (mode 0600) and are printed only with --print-refresh-token.
One file per Klaviyo account: authorising another account never touches the first one's file."""


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    add = common.add_argument
    add("--config", metavar="FILE", help="tap/target config JSON to read the settings below from")
    add("--client-id", dest="client_id", help="OAuth app client ID (or env KLAVIYO_CLIENT_ID)")
    add("--client-secret", dest="client_secret", help="prefer env KLAVIYO_CLIENT_SECRET: flags show in ps")
    add("--token-file", dest="token_file", metavar="PATH", help="default ~/.config/klaviyo-singer/oauth-<hash>.json")
    add("--token-url", dest="token_url", metavar="URL", help=f"default {DEFAULT_TOKEN_URL}")
    add("--authorize-url", dest="authorize_url", metavar="URL", help=f"default {DEFAULT_AUTHORIZE_URL}")
    add("--base-url", dest="base_url", metavar="URL", help=f"API host the tokens are for (default {DEFAULT_BASE_URL})")
    scopes = argparse.ArgumentParser(add_help=False)
    add = scopes.add_argument
    add("--for", dest="for_", choices=("tap", "target", "both"), default="both", help="default scopes (both)")
    add("--scopes", help="space-separated scopes; overrides --for")
    add("--redirect-port", type=int, default=DEFAULT_PORT, help="http://127.0.0.1:PORT/callback (8400)")
    show = argparse.ArgumentParser(add_help=False)
    show.add_argument("--print-refresh-token", action="store_true", help="also print the (secret) refresh token")

    parser = argparse.ArgumentParser(
        prog="klaviyo-oauth",
        description="Get and refresh Klaviyo OAuth tokens for tap-klaviyo and target-klaviyo.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    command = sub.add_parser("authorize", parents=[common, scopes, show], help="approve in a browser; store tokens")
    add = command.add_argument
    add("--headless", action="store_true", help="print the URL; read the redirect URL (or code) from stdin")
    add("--redirect-uri", help="with --headless: the redirect URI registered in the app")
    add("--timeout", type=float, default=300.0, help="seconds to wait for the browser (300)")
    command = sub.add_parser("url", parents=[common, scopes], help="web apps 1/2: authorize URL, verifier, state")
    add = command.add_argument
    add("--redirect-uri", help="redirect URI registered in the app (default: the local callback)")
    command = sub.add_parser("exchange", parents=[common, show], help="web apps 2/2: trade the code for tokens")
    add = command.add_argument
    add("--code", required=True, help="the code, or the whole redirect URL")
    add("--verifier", required=True, help="code_verifier printed by `url`")
    add("--redirect-uri", required=True, help="the redirect URI given to `url`")
    add("--state", help="state printed by `url`; checked when --code is a redirect URL")
    sub.add_parser("refresh", parents=[common, show], help="refresh now and store the rotated token")
    sub.add_parser("revoke", parents=[common], help="revoke the grant at Klaviyo and delete the token file")
    return parser


COMMANDS: dict[str, t.Callable[[argparse.Namespace, dict], int]] = {
    "authorize": cmd_authorize,
    "url": cmd_url,
    "exchange": cmd_exchange,
    "refresh": cmd_refresh,
    "revoke": cmd_revoke,
}


def main(argv: t.Sequence[str] | None = None) -> int:
    """Console entry point; a known failure prints one line and exits 1."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args, resolve_settings(args))
    except KlaviyoError as exc:
        print(f"klaviyo-oauth: error: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
