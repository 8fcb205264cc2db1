"""The Singer SDK's standard tap tests, against a mocked Klaviyo (no network)."""

from __future__ import annotations

import typing as t

import pytest
import requests_mock
from singer_sdk.testing import get_tap_test_class

from tap_klaviyo.tap import TapKlaviyo
from tests.tap.conftest import CONFIG
from tests.tap.fake_klaviyo import FakeKlaviyo, campaign, event, member, profile, review, simple, ts


def populated(mocker: requests_mock.Mocker) -> FakeKlaviyo:
    fake = FakeKlaviyo(mocker, page_cap=3)
    fake.add("/api/campaigns", *(campaign(f"c{i}", ts(i + 2), ch) for i, ch in enumerate(("email", "sms", "mobile_push"))))
    fake.add("/api/events", *(event(f"e{i}", ts(i + 2)) for i in range(5)))
    fake.add("/api/flows", simple("flow", "f1", ts(2), status="live", archived=False, trigger_type="Metric"))
    fake.add("/api/lists", simple("list", "L1", ts(2), opt_in_process="single_opt_in"))
    fake.add("/api/segments", simple("segment", "S1", ts(2), definition=None, is_active=True, is_processing=False, is_starred=False))
    fake.add("/api/metrics", simple("metric", "m1", ts(1), integration={"name": "API"}))
    fake.add("/api/profiles", *(profile(f"p{i}", ts(i + 2)) for i in range(4)))
    fake.add("/api/reviews", review("r1", ts(2), ts(3)))
    fake.add("/api/lists/L1/profiles", member("p1", ts(3)), member("p2", ts(4)))
    fake.add("/api/segments/S1/profiles", member("p1", ts(3)))
    return fake


@pytest.fixture(scope="module", autouse=True)
def mocked_klaviyo() -> t.Iterator[FakeKlaviyo]:
    with requests_mock.Mocker() as mocker:
        yield populated(mocker)


TestTapKlaviyo = get_tap_test_class(TapKlaviyo, config=CONFIG)
