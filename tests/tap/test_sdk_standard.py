"""The Singer SDK's standard tap tests, against a mocked Klaviyo (no network)."""

from __future__ import annotations

import json
import re
import typing as t

import pytest
import requests_mock
from singer_sdk.testing import get_tap_test_class

from tap_klaviyo.tap import TapKlaviyo
from tests.tap.conftest import CONFIG
from tests.tap.fake_klaviyo import (
    FakeKlaviyo,
    campaign,
    event,
    member,
    profile,
    resource,
    review,
    simple,
    to_many,
    to_one,
    ts,
)


def populated(mocker: requests_mock.Mocker) -> FakeKlaviyo:
    fake = FakeKlaviyo(mocker, page_cap=3)
    fake.add(
        "/api/campaigns", *(campaign(f"c{i}", ts(i + 2), ch) for i, ch in enumerate(("email", "sms", "mobile_push")))
    )
    fake.add("/api/events", *(event(f"e{i}", ts(i + 2)) for i in range(5)))
    fake.add("/api/flows", simple("flow", "f1", ts(2), status="live", archived=False, trigger_type="Metric"))
    fake.add("/api/lists", simple("list", "L1", ts(2), opt_in_process="single_opt_in"))
    fake.add(
        "/api/segments",
        simple("segment", "S1", ts(2), definition=None, is_active=True, is_processing=False, is_starred=False),
    )
    fake.add("/api/metrics", simple("metric", "m1", ts(1), integration={"name": "API"}))
    fake.add("/api/profiles", *(profile(f"p{i}", ts(i + 2)) for i in range(4)))
    fake.add("/api/reviews", review("r1", ts(2), ts(3)))
    fake.add("/api/lists/L1/profiles", member("p1", ts(3)), member("p2", ts(4)))
    fake.add("/api/segments/S1/profiles", member("p1", ts(3)))
    add_content(fake)
    fake.add("/api/metrics", simple("metric", "m2", ts(1), name="Placed Order", integration={"name": "Shopify"}))
    mocker.post(re.compile(r".*/api/(\w+-\w+-reports|metric-aggregates)$"), json=report_answer)
    return fake


def add_content(fake: FakeKlaviyo) -> None:
    """A record or two for each content stream (docs/streams.md)."""
    fake.include(
        "/api/campaigns",
        *(
            resource(
                "campaign-message",
                f"cm-c{i}",
                {"definition": None, "send_times": [], "created_at": ts(1), "updated_at": ts(2)},
            )
            for i in range(3)
        ),
    )
    fake.collections["/api/flows"][0]["relationships"] = {"flow-actions": to_many("flow-action", "A1")}
    fake.include(
        "/api/flows",
        resource("flow-action", "A1", {"created": ts(1), "updated": ts(2), "definition": {"type": "send-email"}}),
    )
    fake.add("/api/flow-actions/A1/flow-messages", simple("flow-message", "FM1", ts(2), channel="email"))
    fake.add("/api/templates", simple("template", "T1", ts(2), editor_type="CODE", html="<p>hi</p>"))
    fake.add("/api/tags", resource("tag", "tag1", {"name": "VIP"}, {"tag-group": to_one("tag-group", "G1")}))
    fake.add("/api/tag-groups", resource("tag-group", "G1", {"name": "Default", "exclusive": False, "default": True}))
    for path in ("/api/catalog-items", "/api/catalog-variants", "/api/catalog-categories"):
        fake.add(path, simple(path.split("-")[-1], "$custom:::$default:::X", ts(2)))
    fake.add("/api/coupons", resource("coupon", "SAVE10", {"external_id": "SAVE10"}))
    fake.add(
        "/api/coupon-codes",
        resource(
            "coupon-code",
            "SAVE10-A",
            {"unique_code": "A", "status": "UNASSIGNED"},
            {"coupon": to_one("coupon", "SAVE10")},
        ),
    )
    fake.add(
        "/api/forms",
        resource(
            "form",
            "F1",
            {"name": "Popup", "status": "live", "ab_test": False, "created_at": ts(1), "updated_at": ts(2)},
        ),
    )
    fake.add(
        "/api/images",
        resource(
            "image",
            "I1",
            {
                "name": "logo",
                "image_url": "https://x/y.png",
                "format": "png",
                "size": 10,
                "hidden": False,
                "updated_at": ts(2),
            },
        ),
    )


def report_answer(request: t.Any, context: t.Any) -> dict:
    """One grouping and one interval of every statistic asked for (the Reporting API's shape)."""
    attributes = json.loads(request.body)["data"]["attributes"]
    day = "2024-01-02T00:00:00+00:00"
    if "measurements" in attributes:
        measurements = {name: [1] for name in attributes["measurements"]}
        return {
            "data": {
                "type": "metric-aggregate",
                "id": "a",
                "attributes": {"dates": [day], "data": [{"dimensions": [], "measurements": measurements}]},
            }
        }
    groups = dict.fromkeys(attributes.get("group_by") or ["segment_id"], "g1")
    series = "interval" in attributes
    statistics = {name: [1] if series else 1 for name in attributes["statistics"]}
    document = {"results": [{"groupings": groups, "statistics": statistics}]}
    if series:
        document["date_times"] = [day]
    return {"data": {"type": "report", "attributes": document}}


@pytest.fixture(scope="module", autouse=True)
def mocked_klaviyo() -> t.Iterator[FakeKlaviyo]:
    with requests_mock.Mocker() as mocker:
        yield populated(mocker)


# Monthly report intervals: a year of start_date back is then 2 report requests, not 7 (2 a minute).
STANDARD_CONFIG = {**CONFIG, "report_interval": "monthly"}


def everything_selected(config: dict) -> dict:
    """The discovered catalog with every stream selected, report streams (off by default) included."""
    catalog = TapKlaviyo(config=config).catalog_dict
    for entry in catalog["streams"]:
        for metadata in entry["metadata"]:
            if metadata["breadcrumb"] == []:
                metadata["metadata"]["selected"] = True
    return catalog


TestTapKlaviyo = get_tap_test_class(TapKlaviyo, config=STANDARD_CONFIG, catalog=everything_selected(STANDARD_CONFIG))
