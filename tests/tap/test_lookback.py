"""events_lookback: late-arriving events (dated before the bookmark) are read; the bookmark never moves back."""

from __future__ import annotations

import datetime as dt
import json
import typing as t
import urllib.request

import pytest

from tap_klaviyo.streams import EventsStream
from tests.conftest import cli_catalog, run_cli
from tests.tap.conftest import run_sync
from tests.tap.fake_klaviyo import event, ts


def _at(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


# -- in process, against the fake: filters and every STATE written -------------------------------


@pytest.fixture
def every_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(EventsStream, "STATE_MSG_FREQUENCY", 1)  # a STATE after each record: every kill point


@pytest.mark.parametrize("concurrency", [1, 8], ids=["one-page-at-a-time", "parallel-slices"])
def test_a_lookback_rereads_before_the_bookmark_without_moving_it_back(fake, every_state, concurrency):
    fake.add("/api/events", *(event(f"e{day}", ts(day)) for day in (2, 3, 4, 5, 6, 7)))
    state = {"bookmarks": {"events": {"replication_key": "datetime", "replication_key_value": ts(5)}}}

    result = run_sync("events", config={"events_lookback": "P2D", "max_concurrency": concurrency}, state=state)

    assert f"greater-or-equal(datetime,{ts(3)})" in fake.params(0)["filter"]
    assert [r["id"] for r in result.records] == ["e3", "e4", "e5", "e6", "e7"]
    values = [s["bookmarks"]["events"].get("replication_key_value") for s in result.states]
    assert all(_at(v) >= _at(ts(5)) for v in values)  # never moved back, at any point a kill could hit
    assert values[-1] == ts(7)
    # No gap after a kill: every record still to come when a STATE was written is at or after its bookmark
    # (or is a re-read the previous bookmark already covered).
    messages = [m for m in result.messages if m["type"] in ("STATE", "RECORD")]
    for i, message in enumerate(messages):
        if message["type"] == "STATE":
            bookmark = _at(message["value"]["bookmarks"]["events"]["replication_key_value"])
            later = [_at(m["record"]["datetime"]) for m in messages[i + 1 :] if m["type"] == "RECORD"]
            assert all(value >= bookmark for value in later if value >= _at(ts(5)))


def test_without_a_bookmark_the_lookback_does_not_reach_before_start_date(fake):
    fake.add("/api/events", *(event(f"e{day}", ts(day)) for day in (2, 3, 4)))
    result = run_sync("events", config={"events_lookback": "P5D", "start_date": ts(3)})
    assert f"greater-or-equal(datetime,{ts(3)})" in fake.params(0)["filter"]
    assert [r["id"] for r in result.records] == ["e3", "e4"]


def test_the_lookback_stops_at_start_date(fake):
    fake.add("/api/events", *(event(f"e{day}", ts(day)) for day in (2, 3, 4, 5)))
    state = {"bookmarks": {"events": {"replication_key": "datetime", "replication_key_value": ts(5)}}}
    result = run_sync("events", config={"events_lookback": "P10D", "start_date": ts(3)}, state=state)
    assert [r["id"] for r in result.records] == ["e3", "e4", "e5"]


def test_no_lookback_by_default(fake):
    fake.add("/api/events", *(event(f"e{day}", ts(day)) for day in (3, 4, 5)))
    state = {"bookmarks": {"events": {"replication_key": "datetime", "replication_key_value": ts(5)}}}
    assert [r["id"] for r in run_sync("events", state=state).records] == ["e5"]


@pytest.mark.parametrize("value", ["6h", "P1M", "P1Y", "PT", "P", "P1DT", "-PT1H", "1 day"])
def test_a_bad_lookback_is_one_line_naming_the_setting_and_the_fix(tmp_path, value):
    result = run_cli(
        "tap-klaviyo", "--discover", config={"api_key": "pk_abc", "events_lookback": value}, tmp_path=tmp_path
    )
    assert result.code == 1
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "events_lookback" in errors[0] and "PT6H" in errors[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


# -- through the CLI, against the sandbox --------------------------------------------------------


@pytest.fixture
def box() -> t.Iterator[t.Any]:
    from klaviyo_sandbox import Sandbox, SandboxConfig

    with Sandbox(SandboxConfig(seed=9, scale=0.05, now="now", rate_limit_scale=0.0)) as sandbox:
        yield sandbox


def _events_catalog(box: t.Any, tmp_path: t.Any) -> str:
    config = {"api_key": box.api_key, "base_url": box.base_url, "discover_custom_fields": False}
    return str(cli_catalog(config, tmp_path, "events"))


def _sync(box: t.Any, tmp_path: t.Any, catalog: str, state: dict | None, **settings: t.Any) -> tuple[list, list]:
    config = {"api_key": box.api_key, "base_url": box.base_url, "discover_custom_fields": False, **settings}
    args = ["--catalog", catalog]
    if state is not None:
        (tmp_path / "state.json").write_text(json.dumps(state))
        args += ["--state", str(tmp_path / "state.json")]
    result = run_cli("tap-klaviyo", *args, config=config, tmp_path=tmp_path)
    assert result.code == 0, result.stderr[-2000:]
    messages = result.messages()
    return [m["record"] for m in messages if m["type"] == "RECORD"], [
        m["value"] for m in messages if m["type"] == "STATE"
    ]


def _late_event(box: t.Any, when: dt.datetime) -> str:
    """Klaviyo receives an event now that is dated `when` (the sandbox's admin endpoint)."""
    url = f"{box.base_url}/__sandbox/event?datetime={when.isoformat().replace('+', '%2B')}"
    with urllib.request.urlopen(urllib.request.Request(url, method="POST")) as answer:
        (event_id,) = json.load(answer)["events"]
    return event_id


def test_an_event_received_late_is_read_within_the_lookback_and_not_before_it(box, tmp_path):
    catalog = _events_catalog(box, tmp_path)
    first_records, first_states = _sync(box, tmp_path, catalog, None, events_lookback="PT2H")
    bookmark = _at(first_states[-1]["bookmarks"]["events"]["replication_key_value"])
    inside = _late_event(box, bookmark - dt.timedelta(hours=1))
    outside = _late_event(box, bookmark - dt.timedelta(hours=3))

    records, states = _sync(box, tmp_path, catalog, first_states[-1], events_lookback="PT2H")
    missed, _ = _sync(box, tmp_path, catalog, first_states[-1])  # the same rerun without a lookback

    ids = [r["id"] for r in records]
    assert inside in ids and outside not in ids
    assert len(ids) == len(set(ids))
    assert all(_at(r["datetime"]) >= bookmark - dt.timedelta(hours=2) for r in records)
    assert {r["id"] for r in first_records} & set(ids) <= {  # re-read: only what the lookback covers
        r["id"] for r in first_records if _at(r["datetime"]) >= bookmark - dt.timedelta(hours=2)
    }
    assert all(_at(s["bookmarks"]["events"]["replication_key_value"]) >= bookmark for s in states)
    assert inside not in {r["id"] for r in missed}  # what the lookback is for
