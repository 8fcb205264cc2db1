"""klaviyo-oauth: desktop, headless and two-step flows against the loopback server."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from klaviyo_core import oauth, oauth_cli
from klaviyo_core.client import KlaviyoConnection
from klaviyo_core.settings import check_connection_settings
from tests.oauth.conftest import CLIENT_ID, CLIENT_SECRET, assert_clean, browser_get

_SCRIPT = Path(sys.executable).with_name("klaviyo-oauth")  # the console script pyproject declares
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "klaviyo_core.oauth_cli"]


def server_flags(klaviyo, tmp_path) -> list[str]:
    return [
        "--client-id", CLIENT_ID,
        "--token-url", f"{klaviyo.url}/oauth/token",
        "--authorize-url", f"{klaviyo.url}/oauth/authorize",
        "--token-file", str(tmp_path / "tokens.json"),
    ]  # fmt: skip


def run(args: list[str], tmp_path: Path, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "KLAVIYO_CLIENT_SECRET": CLIENT_SECRET}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=30, check=False, **kwargs)


def query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def stored(tmp_path: Path) -> dict:
    path = tmp_path / "tokens.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return json.loads(path.read_text())


# -- web apps: url, then exchange -------------------------------------------------------


def test_url_then_exchange(klaviyo, tmp_path):
    redirect = "http://127.0.0.1:9/callback"
    made = run(["url", *server_flags(klaviyo, tmp_path), "--for", "tap", "--redirect-uri", redirect], tmp_path)
    assert made.returncode == 0, made.stderr
    step = json.loads(made.stdout)
    params = query(step["authorize_url"])
    assert step["authorize_url"].startswith(f"{klaviyo.url}/oauth/authorize?")
    assert params["response_type"] == "code" and params["code_challenge_method"] == "S256"
    digest = hashlib.sha256(step["code_verifier"].encode()).digest()
    assert params["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert params["scope"] == oauth.TAP_SCOPES and params["redirect_uri"] == redirect
    assert params["state"] == step["state"] and 43 <= len(step["code_verifier"]) <= 128

    _, location = browser_get(step["authorize_url"])
    swapped = run(
        ["exchange", *server_flags(klaviyo, tmp_path), f"--code={location}", f"--state={step['state']}",
         f"--verifier={step['code_verifier']}", "--redirect-uri", redirect],
        tmp_path,
    )  # fmt: skip
    assert swapped.returncode == 0, swapped.stderr
    assert str(tmp_path / "tokens.json") in swapped.stdout and '"client_id"' in swapped.stdout
    assert stored(tmp_path)["refresh_token"] == klaviyo.refresh_token(1)
    assert_clean(made.stderr, swapped.stdout, swapped.stderr)


def test_exchange_rejects_a_wrong_verifier(klaviyo, tmp_path):
    step = json.loads(run(["url", *server_flags(klaviyo, tmp_path)], tmp_path).stdout)
    _, location = browser_get(step["authorize_url"])
    swapped = run(
        ["exchange", *server_flags(klaviyo, tmp_path), f"--code={query(location)['code']}",
         "--verifier", "x" * 64, "--redirect-uri", step["redirect_uri"]],
        tmp_path,
    )  # fmt: skip
    assert swapped.returncode == 1
    assert swapped.stderr.count("\n") == 1 and "invalid_grant: Invalid code_verifier" in swapped.stderr
    assert "klaviyo-oauth url" in swapped.stderr
    assert not (tmp_path / "tokens.json").exists() and klaviyo.exchange_calls == 0
    assert_clean(swapped.stdout, swapped.stderr)


def test_exchange_rejects_a_state_mismatch(klaviyo, tmp_path):
    step = json.loads(run(["url", *server_flags(klaviyo, tmp_path)], tmp_path).stdout)
    _, location = browser_get(step["authorize_url"])
    swapped = run(
        ["exchange", *server_flags(klaviyo, tmp_path), f"--code={location}", "--state", "forged",
         f"--verifier={step['code_verifier']}", "--redirect-uri", step["redirect_uri"]],
        tmp_path,
    )  # fmt: skip
    assert swapped.returncode == 1 and "state does not match" in swapped.stderr
    assert klaviyo.exchange_calls == 0


# -- headless: paste the redirect URL on stdin -------------------------------------------


def headless(klaviyo, tmp_path, tamper=lambda location: location) -> tuple[int, str, str]:
    """Run ``authorize --headless`` as a user would: read the URL, approve, paste."""
    process = subprocess.Popen(
        [*CLI, "authorize", "--headless", *server_flags(klaviyo, tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "KLAVIYO_CLIENT_SECRET": CLIENT_SECRET},
    )  # fmt: skip
    prompt = ""
    while "paste it here" not in prompt:
        line = process.stderr.readline()
        assert line, prompt
        prompt += line
    link = re.search(r"^\s+(http\S+)$", prompt, re.MULTILINE).group(1)
    _, location = browser_get(link)
    out, err = process.communicate(tamper(location) + "\n", timeout=20)
    return process.returncode, out, prompt + err


def test_headless_with_pasted_redirect_url(klaviyo, tmp_path):
    code, out, err = headless(klaviyo, tmp_path)
    assert code == 0, err
    assert "Tokens stored in" in out and stored(tmp_path)["client_id"] == CLIENT_ID
    assert_clean(out, err)


def test_headless_with_just_the_code(klaviyo, tmp_path):
    code, _out, err = headless(klaviyo, tmp_path, tamper=lambda location: query(location)["code"])
    assert code == 0, err
    assert klaviyo.exchange_calls == 1


def test_headless_rejects_a_state_mismatch(klaviyo, tmp_path):
    code, _out, err = headless(
        klaviyo, tmp_path, tamper=lambda location: re.sub(r"state=[^&]+", "state=forged", location)
    )
    assert code == 1 and "state does not match" in err and klaviyo.exchange_calls == 0
    assert not (tmp_path / "tokens.json").exists()


# -- desktop: a browser on this machine (webbrowser.open simulated) -------------------------


@pytest.fixture
def browser(monkeypatch):
    """Replaces webbrowser.open with a user who approves; ``tamper`` edits the redirect."""

    class Browser:
        tamper = staticmethod(lambda location: location)
        pages: ClassVar[list[int]] = []  # one browser per test: the fixture defines the class

        def open(self, url: str) -> bool:
            _, location = browser_get(url)
            if location is not None:
                self.pages.append(browser_get(self.tamper(location))[0])
            return True

    user = Browser()
    monkeypatch.setattr(oauth_cli.webbrowser, "open", user.open)
    monkeypatch.setenv("KLAVIYO_CLIENT_SECRET", CLIENT_SECRET)
    return user


def desktop(klaviyo, tmp_path, *extra: str) -> int:
    return oauth_cli.main(
        ["authorize", *server_flags(klaviyo, tmp_path), "--redirect-port", "0", "--timeout", "5", *extra]
    )


def test_desktop_flow_stores_tokens_usable_by_the_plugins(klaviyo, tmp_path, browser, capsys):
    config = {**klaviyo.config(tmp_path), "refresh_token": ""}  # the refresh token lives in the file
    config.pop("client_secret")
    (tmp_path / "c.json").write_text(json.dumps(config))
    assert (
        oauth_cli.main(["authorize", "--config", str(tmp_path / "c.json"), "--redirect-port", "0", "--for", "target"])
        == 0
    )
    out, err = capsys.readouterr()
    assert browser.pages == [200]
    assert f"Tokens stored in {tmp_path / 'tokens.json'}" in out and "Opening the browser" in err
    assert query(re.search(r"(http\S+authorize\S+)", err).group(1))["scope"] == oauth.TARGET_SCOPES
    assert_clean(out, err)

    plugin_config = {**config, "client_secret": CLIENT_SECRET}
    check_connection_settings(plugin_config)
    assert KlaviyoConnection(plugin_config).get("/api/accounts")["data"][0]["id"] == klaviyo.account_id


def test_desktop_print_refresh_token_only_when_asked(klaviyo, tmp_path, browser, capsys):
    assert desktop(klaviyo, tmp_path, "--print-refresh-token") == 0
    out = capsys.readouterr().out
    assert f"refresh_token: {stored(tmp_path)['refresh_token']}" in out


@pytest.mark.parametrize(
    "tamper",
    [
        lambda location: re.sub(r"state=[^&]+", "state=forged", location),
        lambda location: re.sub(r"&?state=[^&]+", "", location),  # a redirect without state
    ],
    ids=["forged", "missing"],
)
def test_desktop_rejects_a_state_mismatch(klaviyo, tmp_path, browser, capsys, tamper):
    browser.tamper = tamper
    assert desktop(klaviyo, tmp_path) == 1
    err = capsys.readouterr().err
    assert "state does not match" in err and klaviyo.exchange_calls == 0
    assert not (tmp_path / "tokens.json").exists()


def test_desktop_access_denied(klaviyo, tmp_path, browser, capsys):
    klaviyo.deny_consent()
    assert desktop(klaviyo, tmp_path) == 1
    assert "Access was denied in the browser (access_denied)" in capsys.readouterr().err


def test_desktop_timeout(klaviyo, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(oauth_cli.webbrowser, "open", lambda url: True)  # the user never answers
    monkeypatch.setenv("KLAVIYO_CLIENT_SECRET", CLIENT_SECRET)
    assert desktop(klaviyo, tmp_path, "--timeout", "0.2") == 1
    assert "No answer from the browser within 0.2 s" in capsys.readouterr().err


def test_missing_client_secret_is_a_clear_error(klaviyo, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO())  # not a terminal: no prompt
    assert desktop(klaviyo, tmp_path) == 1
    assert "No client secret: set KLAVIYO_CLIENT_SECRET" in capsys.readouterr().err


# -- refresh --------------------------------------------------------------------------------


def test_refresh_command_stores_the_rotated_token(klaviyo, tmp_path):
    config = klaviyo.config(tmp_path)
    (tmp_path / "c.json").write_text(json.dumps(config))
    done = run(["refresh", "--config", str(tmp_path / "c.json")], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "refresh token rotated" in done.stdout and str(tmp_path / "tokens.json") in done.stdout
    assert stored(tmp_path)["refresh_token"] == klaviyo.refresh_token(1)
    assert_clean(done.stdout, done.stderr)

    klaviyo.refuse_refresh_with = "invalid_grant"
    failed = run(["refresh", "--config", str(tmp_path / "c.json")], tmp_path)
    assert failed.returncode == 1 and "klaviyo-oauth authorize --client-id" in failed.stderr
    assert_clean(failed.stdout, failed.stderr)


@pytest.mark.parametrize(
    ("pasted", "expected_state", "result"),
    [
        ("http://127.0.0.1:8400/callback?code=C1&state=S", "S", "C1"),
        ("code=C1&state=S", "S", "C1"),  # just the query
        ("  C1 \n", None, "C1"),  # a bare code: nothing to compare the state with
        ("http://127.0.0.1:8400/callback?code=C1", "S", "state does not match"),
        ("http://127.0.0.1:8400/callback?error=access_denied&state=S", "S", "access_denied"),
        ("http://x/cb?error=invalid_scope&error_description=bad+scope&state=S", "S", "invalid_scope: bad scope"),
        ("http://x/cb?state=S", "S", "no authorization code"),
    ],
)
def test_parsing_pasted_redirects(pasted, expected_state, result):
    params = oauth.parse_redirect(pasted)
    if result.startswith("C"):
        assert oauth.code_from(params, expected_state) == result
    else:
        with pytest.raises(oauth.KlaviyoError, match=result):
            oauth.code_from(params, expected_state)


@pytest.mark.parametrize(
    ("flags", "scope"),
    [
        ([], f"{oauth.TAP_SCOPES} lists:write profiles:write"),  # default --for both, without repeats
        (["--for", "target"], oauth.TARGET_SCOPES),
        (["--for", "tap", "--scopes", "lists:read,profiles:read"], "lists:read profiles:read"),
    ],
)
def test_url_scopes_and_client_id_from_env(flags, scope, monkeypatch, capsys):
    monkeypatch.setenv("KLAVIYO_CLIENT_ID", "env-client")
    assert oauth_cli.main(["url", *flags]) == 0
    step = json.loads(capsys.readouterr().out)
    params = query(step["authorize_url"])
    assert step["authorize_url"].startswith("https://www.klaviyo.com/oauth/authorize?")
    assert params["client_id"] == "env-client" and params["scope"] == scope == step["scopes"]
    assert params["redirect_uri"] == "http://127.0.0.1:8400/callback"


def test_reauthorising_with_the_printed_command_revives_the_same_config(klaviyo, tmp_path, browser, capsys):
    """invalid_grant names the exact command; after it, the unchanged config runs again."""
    import shlex

    from klaviyo_core.errors import KlaviyoError
    from klaviyo_core.oauth import seed_fingerprint

    config = {**klaviyo.config(tmp_path), "token_file": ""}  # the default file, keyed by the refresh token
    assert KlaviyoConnection(config).get("/api/accounts")["data"][0]["id"] == klaviyo.account_id
    klaviyo.refuse_refresh_with = "invalid_grant"
    klaviyo.expire_access_tokens()
    with pytest.raises(KlaviyoError) as caught:
        KlaviyoConnection(config).get("/api/accounts")
    command = re.search(r"Re-authorise with: klaviyo-oauth (authorize .*?) \(client secret", str(caught.value))
    klaviyo.refuse_refresh_with = None

    assert oauth_cli.main([*shlex.split(command.group(1)), "--redirect-port", "0", "--timeout", "5"]) == 0
    assert f"Authorised account {klaviyo.account_id}" in capsys.readouterr().out

    klaviyo.expire_access_tokens()
    assert KlaviyoConnection(config).get("/api/accounts")["data"][0]["id"] == klaviyo.account_id
    path = re.search(r"--token-file (\S+)", command.group(1)).group(1)
    assert seed_fingerprint(config["refresh_token"]) in json.loads(Path(path).read_text())["seeds"]
