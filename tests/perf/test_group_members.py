"""Membership of many lists: the groups' pages are fetched side by side, handed over group by group.

Against the sandbox (real HTTP, 30 ms per answer): one group's pages are not waited for
before the next groups' are requested, yet each group's records come together and sorted.
"""

from __future__ import annotations

import io
import json
import threading
import typing as t
from contextlib import redirect_stdout

import pytest

from klaviyo_core.client import KlaviyoConnection
from tap_klaviyo.tap import TapKlaviyo
from tests.conftest import select

sandbox_module = pytest.importorskip("klaviyo_sandbox")


@pytest.fixture(scope="module")
def box() -> t.Iterator[t.Any]:
    config = sandbox_module.SandboxConfig(seed=3, scale=0.3, latency_ms=30, rate_limit_scale=0.0)
    with sandbox_module.Sandbox(config) as running:
        yield running


def test_many_groups_are_fetched_concurrently_and_emitted_one_group_at_a_time(box, monkeypatch):
    in_flight, peak, groups_in_flight, lock = [0], [0], [set[str]()], threading.Lock()
    most_groups = [0]
    send = KlaviyoConnection.send

    def tracked(self: KlaviyoConnection, request: t.Any, **kwargs: t.Any) -> t.Any:
        group = str(request.url).split("/api/lists/")[-1].split("/")[0] if "/profiles" in str(request.url) else None
        if group is None:
            return send(self, request, **kwargs)
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
            groups_in_flight[0].add(group)
            most_groups[0] = max(most_groups[0], len(groups_in_flight[0]))
        try:
            return send(self, request, **kwargs)  # (decode=: the page decoder)
        finally:
            with lock:
                in_flight[0] -= 1
                groups_in_flight[0].discard(group)  # (a group with two requests in flight counts once)

    monkeypatch.setattr(KlaviyoConnection, "send", tracked)
    config = {"api_key": box.api_key, "base_url": box.base_url, "discover_custom_fields": False, "max_concurrency": 8}
    catalog = select(TapKlaviyo(config=config).catalog_dict, "list_members")
    out = io.StringIO()
    with redirect_stdout(out):
        TapKlaviyo(config=config, catalog=catalog).sync_all()
    messages = [json.loads(line) for line in out.getvalue().splitlines()]
    records = [m["record"] for m in messages if m["type"] == "RECORD"]

    order = [records[0]["list_id"]]
    for record in records[1:]:
        if record["list_id"] != order[-1]:
            order.append(record["list_id"])
    assert len(order) == len(set(order)) >= 10  # each group's records together
    for group in order:
        joined = [r["joined_group_at"] for r in records if r["list_id"] == group]
        assert joined == sorted(joined)
    assert peak[0] >= 4  # requests side by side...
    assert most_groups[0] >= 3  # ...for several groups at once
    final = [m["value"] for m in messages if m["type"] == "STATE"][-1]
    assert "groups_done" not in json.dumps(final)  # a complete run leaves nothing to skip
