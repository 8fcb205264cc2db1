"""The sandbox's connections behave as Klaviyo's front end: no delayed-ACK stall on small answers."""

from __future__ import annotations

import http.client
import socket
from urllib.parse import urlsplit

from klaviyo_sandbox import Sandbox, SandboxConfig
from klaviyo_sandbox.server import Handler

from .client import Client


def test_every_connection_sends_without_waiting_for_acks(monkeypatch):
    # The handler writes an answer's headers, then its body. With Nagle's algorithm on, a small
    # body waited for the client's ACK of the headers, which a client holds back up to 40 ms:
    # every small answer on a kept-alive connection took 40 ms longer than its work.
    seen: list[int] = []
    setup = Handler.setup

    def noting_setup(self: Handler) -> None:
        setup(self)
        seen.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    monkeypatch.setattr(Handler, "setup", noting_setup)
    with Sandbox(SandboxConfig(seed=1, scale=0.02, rate_limit_scale=0.0)) as box:
        origin = urlsplit(box.base_url)
        connection = http.client.HTTPConnection(origin.hostname, origin.port, timeout=10)
        headers = Client(box.base_url, api_key=box.api_key).headers  # Client itself opens a connection a request
        for _ in range(3):  # one kept-alive connection
            connection.request("GET", "/api/metrics", headers=headers)
            answer = connection.getresponse()
            assert answer.status == 200 and answer.read()
        connection.close()
    assert seen and all(seen)
