from __future__ import annotations

import io
import json
import time
import typing as t
from contextlib import redirect_stdout

import pytest
import requests_mock

from tap_klaviyo.tap import TapKlaviyo
from tests.conftest import select
from tests.tap.fake_klaviyo import FakeKlaviyo

# Custom-field discovery is off by default here: catalogs then need no requests, so request
# counts stay exact. tests/tap/test_custom_fields.py turns it on where it is under test.
CONFIG = {"api_key": "pk_test_0123456789abcdef", "start_date": "2024-01-01T00:00:00Z", "discover_custom_fields": False}


@pytest.fixture
def mocker() -> t.Iterator[requests_mock.Mocker]:
    with requests_mock.Mocker() as m:
        yield m


@pytest.fixture
def fake(mocker: requests_mock.Mocker) -> FakeKlaviyo:
    return FakeKlaviyo(mocker)


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Run on a virtual clock: sleeping records the wait and moves time on at once.

    Retry and pacing tests are then instant, and waits can be asserted exactly.
    """
    waits: list[float] = []
    skew = [0.0]
    real_monotonic = time.monotonic

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        skew[0] += seconds

    monkeypatch.setattr("time.sleep", sleep)
    monkeypatch.setattr("time.monotonic", lambda: real_monotonic() + skew[0])
    return waits


def select_only(tap: TapKlaviyo, name: str) -> dict:
    return select(tap.catalog_dict, name)


class SyncResult(t.NamedTuple):
    records: list[dict]
    states: list[dict]
    messages: list[dict]


def run_sync(stream: str, config: dict | None = None, state: dict | None = None) -> SyncResult:
    """Sync one stream in-process and return the Singer messages it wrote."""
    config = {**CONFIG, **(config or {})}
    catalog = select_only(TapKlaviyo(config=config), stream)
    out = io.StringIO()
    with redirect_stdout(out):
        TapKlaviyo(config=config, catalog=catalog, state=state).sync_all()
    messages = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    return SyncResult(
        [m["record"] for m in messages if m["type"] == "RECORD" and m["stream"] == stream],
        [m["value"] for m in messages if m["type"] == "STATE"],
        messages,
    )
