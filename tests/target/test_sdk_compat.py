"""What target_klaviyo/sdk_compat.py and klaviyo_core/sdk_compat.py rely on, checked against the installed libraries.

When singer-sdk or requests is upgraded and one of these fails, read the module's notes
before changing anything: each private use says why it is there and what it needs.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import io
import json
import signal
import sys
from pathlib import Path

import pytest
import requests
from singer_sdk import Target
from singer_sdk.plugin_base import PluginBase, SingerCommand

from klaviyo_core import sdk_compat as core_compat
from target_klaviyo import sdk_compat
from target_klaviyo.target import TargetKlaviyo

API_KEY = "pk_" + "0" * 34  # never sent: these targets make no request

LOCK = Path(__file__).resolve().parents[2] / "requirements" / "lock.txt"


def locked_version(package: str) -> str:
    line = next(line for line in LOCK.read_text().splitlines() if line.lower().startswith(f"{package}=="))
    return line.split("==", 1)[1].split()[0]


def test_written_against_the_locked_and_installed_singer_sdk():
    """An upgrade fails here first: re-check both sdk_compat modules, then update SDK_VERSION."""
    installed = importlib.metadata.version("singer-sdk")
    assert sdk_compat.SDK_VERSION == core_compat.SDK_VERSION == locked_version("singer-sdk") == installed


def test_the_sdk_writes_every_state_through_write_state_message():
    assert list(inspect.signature(Target._write_state_message).parameters) == ["self", "state"]
    assert "self._write_state_message(" in inspect.getsource(Target.drain_all)
    assert "sys.stdout.write" in inspect.getsource(Target._write_state_message)


def test_the_state_hook_runs_before_each_state_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    written_when_called: list[str] = []

    class Probe(TargetKlaviyo):
        def before_state_message(self) -> None:
            written_when_called.append(sys.stdout.getvalue() if isinstance(sys.stdout, io.StringIO) else "")
            super().before_state_message()

    monkeypatch.setattr(sys, "stdout", io.StringIO())
    target = Probe(config={"api_key": API_KEY, "operation": "upsert", "dry_run": True})
    target.process_lines(io.StringIO(json.dumps({"type": "STATE", "value": {"done": 1}}) + "\n"))
    target.process_endofpipe()
    assert written_when_called == [""]  # called once, before the STATE line
    assert json.loads(sys.stdout.getvalue()) == {"done": 1}


def test_the_sdk_installs_handle_termination_for_sigint_and_sigterm():
    assert list(inspect.signature(PluginBase._handle_termination).parameters) == ["self", "signum", "frame"]
    source = inspect.getsource(PluginBase._setup_signal_handlers)
    assert "signal.SIGINT, self._handle_termination" in source
    assert "signal.SIGTERM, self._handle_termination" in source


def test_a_signal_reaches_on_termination_signal(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        target = TargetKlaviyo(config={"api_key": API_KEY, "operation": "upsert"})
        seen: list[int] = []
        monkeypatch.setattr(target, "on_termination_signal", seen.append)
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        handler(signal.SIGTERM, None)
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, before[0])
        signal.signal(signal.SIGINT, before[1])


def test_the_sdk_logs_the_config_summary_line_klaviyo_core_filters_out():
    assert f'"{core_compat.CONFIG_FAILED_SUMMARY}"' in inspect.getsource(SingerCommand.invoke)


def test_requests_marks_an_unread_body_with_content_false():
    response = requests.Response()
    assert response.__dict__.get("_content") is False
    response.raw = io.BytesIO(b'{"data": []}')
    assert core_compat.read_body(response) == b'{"data": []}'
    assert response.content == b'{"data": []}' and response.json() == {"data": []}
    assert response._content_consumed is True


@pytest.mark.parametrize("body", [b"", b"x" * (3 * 2**20 + 5)])
def test_read_body_reads_empty_and_large_bodies_whole(body):
    response = requests.Response()
    response.raw = io.BytesIO(body)
    assert core_compat.read_body(response) == body == response.content


def test_a_filled_response_is_one_requests_reads_as_its_own():
    request = requests.Request("GET", "https://a.klaviyo.com/api/x?a=1").prepare()
    headers = [("Content-Type", "application/json; charset=utf-8"), ("X-Twice", "a"), ("x-twice", "b")]
    response = core_compat.filled_response(request, 200, "OK", headers, b'{"data": [1]}', adapter=None)
    assert core_compat.read_body(response) == response.content == b'{"data": [1]}'  # not read again
    assert response.json() == {"data": [1]} and response.text == '{"data": [1]}' and response.encoding == "utf-8"
    assert list(response.iter_content(4)) == [b'{"da', b'ta":', b" [1]", b"}"]
    assert response.headers["x-twice"] == "a, b" and response.url == request.url and response.ok
    assert not response.is_redirect
    session = requests.Session()
    assert list(session.resolve_redirects(response, request)) == []
    requests.cookies.extract_cookies_to_jar(session.cookies, request, response.raw)  # no cookie, no error
    response.close()
