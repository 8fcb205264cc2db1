"""Request authentication: a private API key, or an OAuth app's access tokens.

An access token lives about an hour. ``OAuthAuth`` refreshes it a few minutes before
it expires and once after a 401, under one lock, so parallel streams share a single
refresh. A refresh token Klaviyo rotates is written to a token file (mode 0600,
replaced atomically) that the next run reads first; it never goes back into the
user's config. No token or client secret ever reaches a log line or a message.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

import requests
from typing_extensions import override

from klaviyo_core.defaults import (
    DEFAULT_AUTHORIZE_URL,
    DEFAULT_BASE_URL,
    DEFAULT_TOKEN_URL,
    api_key,
    setting_text,
    uses_oauth,
)
from klaviyo_core.errors import KlaviyoError
from klaviyo_core.oauth import (
    LOGGER,
    TOKEN_FILE_FORMAT,
    OAuthError,
    TokenEndpoint,
    Tokens,
    account_of,
    default_token_path,
    reauthorize_command,
    same_url,
    seed_fingerprint,
)

if t.TYPE_CHECKING:
    import logging


class KlaviyoAuth(requests.auth.AuthBase):
    """Base for Klaviyo credentials; ``__repr__`` never shows a secret."""

    def renew_after_unauthorized(self) -> bool:
        """Try to obtain fresh credentials after a 401; True when a retry may succeed."""
        return False

    @override
    def __repr__(self) -> str:
        return f"{type(self).__name__}(***)"


class ApiKeyAuth(KlaviyoAuth):
    """``Authorization: Klaviyo-API-Key pk_...``."""

    def __init__(self, api_key: str) -> None:
        self._header = f"Klaviyo-API-Key {api_key}"

    @override
    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._header
        return request


class TokenFileConflict(KlaviyoError):
    """The token file holds tokens this config must not use (another account, app or host)."""


@dataclass(frozen=True)
class Binding:
    """What saved tokens must match to be used: app, token endpoint, API host, and seed."""

    client_id: str
    token_url: str = DEFAULT_TOKEN_URL
    base_url: str = DEFAULT_BASE_URL
    refresh_token: str = field(default="", repr=False)  # the config's; "" when the file is the source

    @classmethod
    def from_config(cls, config: t.Mapping[str, t.Any]) -> Binding:
        return cls(
            client_id=setting_text(config, "client_id"),
            token_url=setting_text(config, "token_url") or DEFAULT_TOKEN_URL,
            base_url=setting_text(config, "base_url") or DEFAULT_BASE_URL,
            refresh_token=setting_text(config, "refresh_token"),
        )

    @property
    def seed(self) -> str | None:
        return seed_fingerprint(self.refresh_token) if self.refresh_token else None


class TokenStore:
    """The token file: read before each refresh, replaced atomically after it.

    A file holds one grant's tokens and what they are bound to: the app (client_id),
    the token endpoint and API host they came from, the Klaviyo account, and the
    fingerprints of the refresh tokens that seeded them. ``load`` hands out tokens only
    to a config that matches all of these and whose refresh token (if it gives one) is
    a seed or the current rotated token; an explicitly named file that does not match
    is an error (never silently used, never overwritten), a default one is skipped.
    """

    def __init__(self, path: Path | str, binding: Binding | None = None, *, explicit: bool = True) -> None:
        self.path = Path(path).expanduser()
        self.binding = binding
        self.explicit = explicit

    @classmethod
    def for_config(cls, config: t.Mapping[str, t.Any]) -> TokenStore | None:
        """The config's token file: ``token_file``, else one keyed by its refresh token.

        None when the config gives neither (an access token alone): nothing to key a file by.
        """
        binding = Binding.from_config(config)
        custom = setting_text(config, "token_file")
        if custom:
            return cls(custom, binding, explicit=True)
        if not binding.refresh_token:
            return None
        path = default_token_path(
            binding.client_id, binding.refresh_token, token_url=binding.token_url, base_url=binding.base_url
        )
        return cls(path, binding, explicit=False)

    def read_record(self) -> dict | None:
        """The file's JSON object, or None (no file, unreadable)."""
        try:
            record = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            LOGGER.warning("Ignoring OAuth token file %s: %s", self.path, type(exc).__name__)
            return None
        return record if isinstance(record, dict) and record.get("refresh_token") else None

    def load(self, client_id: str | None = None) -> Tokens | None:
        """The stored tokens when this config may use them; None, or TokenFileConflict, otherwise."""
        record = self.read_record()
        if record is None:
            return None
        problem = self.mismatch(record, client_id)
        if problem:
            if self.explicit:
                raise TokenFileConflict(
                    f"Setting token_file {self.path} {problem}: give each account's config its own "
                    "token_file (or leave token_file unset: the default file is per refresh token), or "
                    "delete that file if its tokens are no longer needed."
                )
            return None
        self._tighten_permissions()
        return Tokens(
            refresh_token=str(record["refresh_token"]),
            access_token=record.get("access_token") or None,
            expires_at=record.get("expires_at"),
            expires_in=record.get("expires_in"),
            scope=record.get("scope"),
            account_id=record.get("account_id"),
        )

    def mismatch(self, record: dict, client_id: str | None = None) -> str | None:
        """Why this config must not use the record's tokens, or None when it may."""
        binding = self.binding or Binding(client_id or "")
        account = f" (account {record['account_id']})" if record.get("account_id") else ""
        if record.get("client_id") != (client_id or binding.client_id):
            return "holds the OAuth tokens of another app (client_id)"
        if record.get("token_url") and not same_url(record.get("token_url"), binding.token_url):
            return f"holds OAuth tokens from another token endpoint ({record['token_url']}){account}"
        if record.get("base_url") and not same_url(record.get("base_url"), binding.base_url):
            return f"holds OAuth tokens for another API host ({record['base_url']}){account}"
        if not binding.refresh_token or binding.refresh_token == record.get("refresh_token"):
            return None  # the file is the config's only source, or the config holds its current token
        if "seeds" not in record:
            return "holds OAuth tokens saved by an older version, bound to no refresh token or account"
        if binding.seed not in (record.get("seeds") or []):
            return f"holds the OAuth tokens of another refresh token{account or ' (another grant)'}"
        return None

    def save(
        self,
        client_id: str,
        tokens: Tokens,
        token_url: str,
        *,
        base_url: str | None = None,
        seeds: t.Iterable[str] = (),
        keep_seeds: bool | None = None,
    ) -> None:
        """Write via a 0600 temporary file and ``os.replace``: never half-written, never shared.

        The seeds are the config's refresh token, ``seeds``, and those already recorded:
        kept when this config may use the file (``keep_seeds`` None), or as the caller
        decided (``klaviyo-oauth authorize`` keeps them for the same account only).
        """
        previous = self.read_record() if keep_seeds is not False else None
        if previous and keep_seeds is None and self.mismatch(previous, client_id):
            previous = None
        kept = list(previous.get("seeds") or []) if previous else []
        binding_seed = self.binding.seed if self.binding else None
        record = {
            "format": TOKEN_FILE_FORMAT,
            "client_id": client_id,
            "token_url": token_url,
            "base_url": base_url or (self.binding.base_url if self.binding else DEFAULT_BASE_URL),
            "account_id": tokens.account_id,
            "seeds": list(dict.fromkeys(s for s in (*kept, binding_seed, *seeds) if s)),
            "refresh_token": tokens.refresh_token,
            "access_token": tokens.access_token,
            "expires_at": tokens.expires_at,
            "expires_in": tokens.expires_in,
            "scope": tokens.scope,
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, temporary = tempfile.mkstemp(prefix=".oauth-", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(record, handle, indent=2)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def remove(self) -> bool:
        """Delete the file (and its lock file); True when there was one."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{self.path}.lock")
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return False
        return True

    @contextlib.contextmanager
    def locked(self) -> t.Iterator[None]:
        """Hold an exclusive lock across processes (a tap and a target share one app)."""
        handle = None
        try:
            import fcntl  # noqa: PLC0415 - POSIX only; elsewhere threads are still serialised

            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            handle = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(handle, fcntl.LOCK_EX)
        except (ImportError, OSError):  # no lock rather than no run (e.g. read-only home)
            if handle is not None:
                os.close(handle)
            handle = None
        try:
            yield
        finally:
            if handle is not None:
                os.close(handle)  # closing releases the flock

    def _tighten_permissions(self) -> None:
        with contextlib.suppress(OSError):
            if self.path.stat().st_mode & 0o077:
                LOGGER.warning("OAuth token file %s was readable by others; set it to 0600.", self.path)
                os.chmod(self.path, 0o600)


def auth_from_config(config: t.Mapping[str, t.Any]) -> KlaviyoAuth:
    """The credentials the config names: OAuth when its settings are used, else the key."""
    if uses_oauth(config):
        return OAuthAuth.from_config(config)
    return ApiKeyAuth(api_key(config))


class OAuthAuth(KlaviyoAuth):
    """``Authorization: Bearer <access token>``, refreshed before expiry and after a 401.

    Every stream and thread shares one instance. One lock guards the tokens, and
    ``generation`` counts refreshes: each thread remembers the generation of the
    token it last sent, so after a 401 a thread whose token was already replaced
    just retries, and many threads failing together cause a single refresh.

    Without an endpoint (an orchestrator handed over an access token alone) the token
    is used as is, and its expiry ends the run with one line saying so.
    """

    def __init__(
        self,
        endpoint: TokenEndpoint | None,
        *,
        refresh_token: str | None = None,
        access_token: str | None = None,
        store: TokenStore | None = None,
        authorize_url: str = DEFAULT_AUTHORIZE_URL,
        base_url: str = DEFAULT_BASE_URL,
        clock: t.Callable[[], float] = time.time,
        logger: logging.Logger | None = None,
        bind_account: bool = True,
    ) -> None:
        self._endpoint, self._store, self._clock = endpoint, store, clock
        self._authorize_url, self._base_url = authorize_url, base_url
        self._logger = logger or LOGGER
        self._bind_account = bind_account
        self._config_refresh_token = refresh_token or ""
        self._lock = threading.Lock()
        self._local = threading.local()
        self.generation = 0
        self.refresh_count = 0
        saved = store.load() if store else None  # newer than the config's, and checked to be this config's
        self._tokens = saved or Tokens(refresh_token=refresh_token or "", access_token=access_token or None)

    @classmethod
    def from_config(cls, config: t.Mapping[str, t.Any], **kwargs: t.Any) -> OAuthAuth:
        store = TokenStore.for_config(config)
        secret = setting_text(config, "client_secret")
        endpoint = None
        if secret and (store is not None or setting_text(config, "refresh_token")):
            endpoint = TokenEndpoint(
                setting_text(config, "token_url") or DEFAULT_TOKEN_URL, setting_text(config, "client_id"), secret
            )
        return cls(
            endpoint,
            refresh_token=setting_text(config, "refresh_token"),
            access_token=setting_text(config, "access_token"),
            store=store,
            authorize_url=setting_text(config, "authorize_url") or DEFAULT_AUTHORIZE_URL,
            base_url=setting_text(config, "base_url") or DEFAULT_BASE_URL,
            **kwargs,
        )

    @property
    def tokens(self) -> Tokens:
        return self._tokens

    @override
    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        with self._lock:
            if self._tokens.refresh_due(self._clock()):
                self._refresh("it expires soon" if self._tokens.access_token else "first request")
            token, self._local.generation = self._tokens.access_token, self.generation
        request.headers["Authorization"] = f"Bearer {token}"
        return request

    @override
    def renew_after_unauthorized(self) -> bool:
        """Refresh unless another thread already did since this thread's token was sent."""
        sent = getattr(self._local, "generation", None)
        with self._lock:
            if sent is None or sent == self.generation:
                self._refresh("Klaviyo rejected it with 401")
        return True

    def refresh_now(self) -> Tokens:
        """Refresh whatever the expiry says (``klaviyo-oauth refresh``)."""
        with self._lock:
            self._refresh("asked to", adopt_saved=False)
            return self._tokens

    def _refresh(self, reason: str, *, adopt_saved: bool = True) -> None:
        """With the lock held: adopt a newer token another process stored, else refresh."""
        if self._endpoint is None:
            raise self._cannot_refresh()
        with self._store.locked() if self._store else contextlib.nullcontext():
            saved = self._store.load() if self._store else None
            if adopt_saved and self._is_newer(saved):
                self._install(saved)  # type: ignore[arg-type]
                self._logger.info("Using the OAuth access token another process stored in %s", self.token_file)
                return
            previous = self._tokens.refresh_token
            tokens = self._request_refresh(saved)
            tokens.account_id = (saved.account_id if saved else None) or self._tokens.account_id
            if tokens.account_id is None and self._bind_account and tokens.access_token:
                account = account_of(self._base_url, tokens.access_token)
                tokens.account_id = account["id"] if account else None
            self._install(tokens)
            self._save(tokens)
        lifetime = f"valid {tokens.expires_in:.0f} s" if tokens.expires_in else "lifetime not given"
        kept = f"; the rotated refresh token is kept in {self.token_file}"
        rotated = kept if tokens.refresh_token != previous else ""
        self._logger.info("Refreshed the OAuth access token (%s; %s)%s", reason, lifetime, rotated)

    def _cannot_refresh(self) -> KlaviyoError:
        if self._tokens.access_token and not (self._tokens.refresh_token or self._config_refresh_token):
            return KlaviyoError(
                "Klaviyo rejected the access_token (access tokens expire after about an hour, or it was "
                "revoked): hand over a fresh access_token, or set client_id, client_secret and refresh_token "
                "so that it is refreshed."
            )
        return KlaviyoError("The OAuth access token must be refreshed and client_secret is not set: set client_secret.")

    def _is_newer(self, saved: Tokens | None) -> bool:
        if saved is None or not saved.access_token or saved.expires_at is None:
            return False
        current = self._tokens
        later = current.expires_at is None or saved.expires_at > current.expires_at
        return later and saved.access_token != current.access_token and not saved.refresh_due(self._clock())

    def _request_refresh(self, saved: Tokens | None) -> Tokens:
        """Try the newest refresh token first; fall back to the config's on invalid_grant.

        Every candidate is this config's: its own refresh token, or its lineage's
        rotated successor from a token file ``TokenStore.load`` checked.
        """
        assert self._endpoint is not None
        order = [saved.refresh_token if saved else "", self._tokens.refresh_token, self._config_refresh_token]
        candidates = list(dict.fromkeys(token for token in order if token))
        if not candidates:
            raise KlaviyoError(f"No OAuth refresh token: set refresh_token, or run {self._reauthorize()}.")
        for index, refresh_token in enumerate(candidates):
            try:
                tokens = self._endpoint.refresh(refresh_token, self._clock())
            except OAuthError as exc:
                if exc.error != "invalid_grant":
                    raise
                if index + 1 < len(candidates):
                    self._logger.warning("An older OAuth refresh token was refused; trying the next one.")
                continue
            self.refresh_count += 1
            return tokens
        raise KlaviyoError(
            "Klaviyo refused the OAuth refresh token (invalid_grant): the app was uninstalled, "
            "the token revoked, or it went unused for 90 days. Re-authorise with: "
            f"{self._reauthorize()} (client secret from KLAVIYO_CLIENT_SECRET, --config CONFIG.json "
            "or a prompt), then run again."
        )

    def _install(self, tokens: Tokens) -> None:
        self._tokens = tokens
        self.generation += 1

    def _save(self, tokens: Tokens) -> None:
        """Keep the pair for the next run; a failure costs only a possible re-authorisation."""
        if self._store is None or self._endpoint is None:
            return
        try:
            self._store.save(self._endpoint.client_id, tokens, self._endpoint.token_url, base_url=self._base_url)
        except OSError as exc:
            self._logger.warning(
                "Could not save OAuth tokens to %s (%s): if Klaviyo rotated the refresh token the "
                "next run must re-authorise. Set token_file to a writable path.",
                self.token_file,
                type(exc).__name__,
            )

    @property
    def token_file(self) -> str:
        return str(self._store.path) if self._store else "(no token file)"

    @property
    def client_id(self) -> str:
        return self._endpoint.client_id if self._endpoint else ""

    def _reauthorize(self) -> str:
        assert self._endpoint is not None
        return reauthorize_command(
            self._endpoint.client_id,
            self._store.path if self._store else None,
            token_url=self._endpoint.token_url,
            authorize_url=self._authorize_url,
            base_url=self._base_url,
            scope=self._tokens.scope,
        )

    @override
    def __repr__(self) -> str:
        return f"OAuthAuth(client_id={self.client_id!r}, token_file={self.token_file!r})"
