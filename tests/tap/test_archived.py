"""Archived campaigns and flows, through the CLI against the sandbox (which hides them unless asked, as Klaviyo)."""

from __future__ import annotations

import datetime as dt
import json
import time
import typing as t

import pytest

from tests.conftest import cli_catalog, run_cli

STREAMS = ("campaigns", "flows")


@pytest.fixture
def box() -> t.Iterator[t.Any]:
    from klaviyo_sandbox import Sandbox, SandboxConfig

    # The real clock: records touched now must sort after the bookmark the tap's own clock caps.
    with Sandbox(SandboxConfig(seed=5, scale=0.05, now="now", rate_limit_scale=0.0)) as sandbox:
        yield sandbox


def catalog_of(box: t.Any, tmp_path: t.Any) -> str:
    config = {"api_key": box.api_key, "base_url": box.base_url, "discover_custom_fields": False}
    return str(cli_catalog(config, tmp_path, *STREAMS))


class Sync(t.NamedTuple):
    records: dict[str, list[dict]]
    state: dict
    requests: dict[str, int]


def sync(box: t.Any, tmp_path: t.Any, catalog: str, state: dict | None = None, **settings: t.Any) -> Sync:
    config = {"api_key": box.api_key, "base_url": box.base_url, "discover_custom_fields": False, **settings}
    args = ["--catalog", catalog]
    if state is not None:
        (tmp_path / "state.json").write_text(json.dumps(state))
        args += ["--state", str(tmp_path / "state.json")]
    before = dict(box.store.counters)
    result = run_cli("tap-klaviyo", *args, config=config, tmp_path=tmp_path)
    assert result.code == 0, result.stderr[-2000:]
    messages = result.messages()
    records = {
        name: [m["record"] for m in messages if m["type"] == "RECORD" and m["stream"] == name] for name in STREAMS
    }
    requests = {op: box.store.counters[f"op:{op}"] - before.get(f"op:{op}", 0) for op in ("get_campaigns", "get_flows")}
    return Sync(records, [m for m in messages if m["type"] == "STATE"][-1]["value"], requests)


def every(box: t.Any, kind: str) -> dict[str, dict]:
    """The sandbox's own records (patched ones included), archived or not, by id."""
    ds, patch = box.store.ds, box.store.small_patch[kind]
    records = (patch.get(k) or ds.small(kind, k) for k in range(ds.small_count(kind)))
    return {r["id"]: r for r in records}


def _at(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def bookmarks(state: dict, stream: str) -> dict[str, str]:
    return {
        json.dumps(p["context"], sort_keys=True): p.get("replication_key_value")
        for p in state["bookmarks"][stream]["partitions"]
    }


def test_archived_campaigns_and_flows_are_read_by_default_and_not_with_the_setting_off(box, tmp_path):
    catalog = catalog_of(box, tmp_path)
    campaigns, flows = every(box, "campaign"), every(box, "flow")
    archived = {
        kind: {i for i, r in records.items() if r["attributes"]["archived"]}
        for kind, records in (("campaigns", campaigns), ("flows", flows))
    }
    assert archived["flows"] and {campaigns[i]["_x"]["messages.channel"] for i in archived["campaigns"]} == {
        "email",
        "sms",
        "mobile_push",
    }

    default = sync(box, tmp_path, catalog)
    without = sync(box, tmp_path, catalog, include_archived=False)

    for stream, expected in (("campaigns", campaigns), ("flows", flows)):
        read = {r["id"]: r for r in default.records[stream]}
        assert sorted(read) == sorted(expected)  # every one, once
        assert {i for i, r in read.items() if r["archived"]} == archived[stream]
        assert sorted(r["id"] for r in without.records[stream]) == sorted(set(expected) - archived[stream])
        assert not any(r["archived"] for r in without.records[stream])
    assert {r["channel"] for r in default.records["campaigns"] if r["archived"]} == {"email", "sms", "mobile_push"}
    # The archived passes: one more request per campaign channel, two for flows (main and tail pass);
    # each run also makes one scope probe per scope before any record (klaviyo_core.scopes).
    assert default.requests == {"get_campaigns": 6 + 1, "get_flows": 4 + 1}
    assert without.requests == {"get_campaigns": 3 + 1, "get_flows": 2 + 1}
    assert set(bookmarks(default.state, "flows")) == {'{"archived": false}', '{"archived": true}'}
    assert len(bookmarks(default.state, "campaigns")) == 6


@pytest.mark.slow
def test_incremental_reruns_read_what_changed_in_each_pass_once_and_lose_nothing(box, tmp_path):
    catalog = catalog_of(box, tmp_path)
    first = sync(box, tmp_path, catalog)
    time.sleep(1.1)  # Klaviyo's timestamps have whole seconds; bounds are inclusive
    store = box.store
    archived = {"campaigns": store.archive("campaigns", 1), "flows": store.archive("flows", 1)}
    touched = {"campaigns": store.touch("campaigns", 2)["touched"], "flows": store.touch("flows", 2)["touched"]}

    second = sync(box, tmp_path, catalog, state=first.state)

    for stream, key in (("campaigns", "updated_at"), ("flows", "updated")):
        changed = set(archived[stream]) | set(touched[stream])
        # Records dated exactly at a pass's bookmark are read again (inclusive bound); nothing else is.
        at_bound = {r["id"] for r in first.records[stream] if r[key] in bookmarks(first.state, stream).values()}
        ids = [r["id"] for r in second.records[stream]]
        assert changed <= set(ids), stream
        assert set(ids) <= changed | at_bound, stream
        assert len(ids) == len(set(ids)), stream  # each change read in one pass only
        new_archived = {r["id"] for r in second.records[stream] if r["archived"]}
        assert set(archived[stream]) <= new_archived
        before, after = bookmarks(first.state, stream), bookmarks(second.state, stream)
        assert set(before) == set(after)
        assert all(_at(after[k]) >= _at(before[k]) for k in before if before[k]), stream  # never backwards

    third = sync(box, tmp_path, catalog, state=second.state)
    for stream in STREAMS:  # nothing changed: only the records at the bounds come back
        ends = set(bookmarks(second.state, stream).values())
        key = "updated_at" if stream == "campaigns" else "updated"
        assert all(r[key] in ends for r in third.records[stream]), stream
