"""What a test scripts into the sandbox: answers for chosen requests, the request record, the clock;
and the endpoint facts the sandbox reads from what the plugins generate from the spec."""

from __future__ import annotations

import itertools
import json
import threading

import pytest
import requests

from klaviyo_core import endpoints as core_endpoints
from klaviyo_sandbox import Sandbox, SandboxConfig, api, endpoints

from .client import REVISION, Client


@pytest.fixture
def box():
    with Sandbox(SandboxConfig(seed=3, scale=0.01, rate_limit_scale=0.0, record_requests=True)) as running:
        yield running


def get(box, path: str, **params) -> requests.Response:
    headers = Client(box.base_url, api_key=box.api_key).headers
    return requests.get(f"{box.base_url}{path}", params=params, headers=headers, timeout=10)


def test_a_scripted_answer_is_given_once_to_the_next_matching_request_then_the_sandbox_answers(box):
    box.script("GET", "/api/lists", [(503, None, {"Retry-After": "2"})])

    first, second, other = get(box, "/api/lists"), get(box, "/api/lists"), get(box, "/api/metrics")

    assert (first.status_code, first.headers["Retry-After"]) == (503, "2")
    assert first.json()["errors"][0]["status"] == 503  # Klaviyo's error shape when no body is given
    assert second.status_code == 200 and second.json()["data"]
    assert other.status_code == 200
    assert [(r.path, r.status) for r in box.requests] == [
        ("/api/lists", 503),
        ("/api/lists", 200),
        ("/api/metrics", 200),
    ]


def test_an_answer_may_be_chosen_by_a_predicate_computed_from_the_request_or_left_to_the_sandbox(box):
    seen = []
    box.script("GET", "/api/lists", [(200, {"data": [], "links": {}})], when=lambda r: "filter" in r.query)
    box.script("GET", "/api/metrics", [lambda r: seen.append(r.query) or None])  # None: the usual answer

    plain, filtered = get(box, "/api/lists"), get(box, "/api/lists", filter='equals(name,["x"])')
    metrics = get(box, "/api/metrics", **{"fields[metric]": "name"})

    assert plain.json()["data"] and filtered.json() == {"data": [], "links": {}}
    assert metrics.status_code == 200 and metrics.json()["data"]
    assert seen == [{"fields[metric]": "name"}]


def test_a_repeated_answer_serves_every_match_and_a_waiting_answer_holds_only_its_own_request(box):
    box.script("GET", r"/api/lists/[^/]+", itertools.repeat((404, None)))
    gate = threading.Event()
    box.script("GET", "/api/metrics", [lambda r: gate.wait(5) and None])

    held = threading.Thread(target=get, args=(box, "/api/metrics"))
    held.start()
    answers = [get(box, f"/api/lists/L{i}").status_code for i in range(5)]  # not held up by the waiting one
    gate.set()
    held.join(5)

    assert answers == [404] * 5
    assert [r.status for r in box.requests if r.path == "/api/metrics"] == [200]


def test_requests_are_recorded_with_their_query_headers_and_body_only_when_asked():
    with Sandbox(SandboxConfig(seed=3, scale=0.01, rate_limit_scale=0.0)) as quiet:
        get(quiet, "/api/lists")
        assert quiet.requests == []
    with Sandbox(SandboxConfig(seed=3, scale=0.01, rate_limit_scale=0.0, record_requests=True)) as box:
        body = {"data": {"type": "list", "attributes": {"name": "Recorded"}}}
        headers = Client(box.base_url, api_key=box.api_key).headers
        requests.post(f"{box.base_url}/api/lists", json=body, headers=headers, timeout=10)
        (created,) = box.requests
        assert (created.method, created.path, created.status, created.body) == ("POST", "/api/lists", 201, body)
        assert created.headers["revision"] == REVISION and created.raw_size == len(created.raw)


def test_moving_the_clock_lets_an_import_job_finish():
    with Sandbox(SandboxConfig(seed=3, scale=0.01, rate_limit_scale=0.0, job_seconds=600)) as box:
        profile = {"type": "profile", "attributes": {"email": "a@example.com"}}
        body = {"data": {"type": "profile-bulk-import-job", "attributes": {"profiles": {"data": [profile]}}}}
        job = box.store.jobs.create(json.dumps(body).encode())
        assert box.store.jobs.record(job)["attributes"]["status"] == "queued"
        box.store.advance(600)
        assert box.store.jobs.record(box.store.jobs.get(job.id))["attributes"]["status"] == "complete"
        assert box.store.find_profile("email", "a@example.com") is not None


# -- endpoint facts: read from klaviyo_core/endpoints.json and the trimmed spec, never copied ------


def test_every_route_the_sandbox_serves_has_its_facts_from_the_generated_table():
    served = {op for _, _, op, _ in api.ROUTES}
    assert served <= set(endpoints.ENDPOINTS)
    for op in served:
        fact, core = endpoints.ENDPOINTS[op], core_endpoints.endpoint(op)
        assert (fact.burst, fact.steady, fact.daily or None) == (
            core.burst_per_second,
            core.steady_per_minute,
            core.daily,
        )
        if fact.page:
            assert (fact.page[0], fact.page[2]) == (core.page_size_default, core.page_size_max)


def test_the_spec_s_filters_sorts_includes_and_quoted_limits_are_what_the_sandbox_enforces():
    campaigns, events, lists = (endpoints.ENDPOINTS[op] for op in ("get_campaigns", "get_events", "get_lists"))
    assert campaigns.filter_required and endpoints.ENDPOINTS["get_coupon_codes"].filter_required
    assert campaigns.filters["messages.channel"].enum == ("email", "sms", "mobile_push")
    assert events.filters["datetime"].type == "datetime" and events.page == (200, 1, 1000)
    assert lists.page == (10, 1, 10) and "name" in lists.sorts and "-name" not in lists.sorts
    assert endpoints.ENDPOINTS["get_profiles"].additional == ("subscriptions", "predictive_analytics")
    assert endpoints.ENDPOINTS["get_profiles"].rtype == "profile"
    assert endpoints.SLOW_ADDITIONAL == {"predictive_analytics": (10, 150), "profile_count": (1, 15)}
    assert endpoints.METRICS_PAGE == 200
