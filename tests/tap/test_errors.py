"""How the tap meets Klaviyo's failures: wait as told, retry what can pass, explain the rest."""

from __future__ import annotations

import pytest
import requests

from klaviyo_core.errors import KlaviyoAPIError, KlaviyoError
from tests.tap.conftest import run_sync
from tests.tap.fake_klaviyo import PROBE, event, ts


def test_429_waits_what_retry_after_says_plus_jitter_then_retries(fake, no_sleep):
    fake.add("/api/events", event("e1", ts(2)))
    fake.fail_next(429, {"Retry-After": "45"})
    result = run_sync("events")
    assert [r["id"] for r in result.records] == ["e1"]
    # not the SDK's 2, 4, 8... back-off; a random extra so throttled threads come back one by one
    assert any(45.0 <= w <= 45.0 * 1.25 for w in no_sleep)
    assert len(fake.requests) == 3  # the 429, its retry, and the tail pass


def test_a_long_run_of_429s_is_waited_out_rather_than_aborting_after_32_seconds(fake, no_sleep):
    fake.add("/api/events", event("e1", ts(2)))
    for _ in range(5):
        fake.fail_next(429, {"Retry-After": "60"})
    assert [r["id"] for r in run_sync("events").records] == ["e1"]
    assert len([w for w in no_sleep if 60.0 <= w <= 75.0]) >= 5


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_server_error_is_retried_with_back_off_then_succeeds(fake, no_sleep, status):
    fake.add("/api/events", event("e1", ts(2)))
    fake.fail_next(status)
    fake.fail_next(status)
    assert [r["id"] for r in run_sync("events").records] == ["e1"]
    backoffs = [w for w in no_sleep if w >= 0.5]
    assert len(backoffs) >= 2 and backoffs[1] <= 2.0


def test_a_connection_error_is_retried(mocker, fake):
    fake.add("/api/events", event("e1", ts(2)))
    attempts = []

    def flaky(request, context):
        if PROBE.search(request.url):  # the scope check before the sync
            return fake._serve_probe(request, context)
        attempts.append(request.url)
        if len(attempts) == 1:
            raise requests.exceptions.ConnectionError("connection reset by peer")
        return fake._serve_text(request, context)

    mocker.get("https://a.klaviyo.com/api/events", text=flaky)
    assert [r["id"] for r in run_sync("events").records] == ["e1"]
    assert len(attempts) == 3  # the reset, its retry, and the tail pass


def test_an_html_error_page_with_200_is_retried(fake):
    fake.add("/api/events", event("e1", ts(2)))
    fake.fail_next(200, {"Content-Type": "text/html"}, body="<html>Bad gateway</html>")
    assert [r["id"] for r in run_sync("events").records] == ["e1"]


def test_a_fatal_4xx_names_the_endpoint_and_klaviyos_detail(fake):
    fake.fail_next(
        400,
        body={
            "errors": [
                {
                    "id": "1",
                    "code": "invalid",
                    "title": "Invalid input.",
                    "detail": "'foo' is not a valid field for the resource 'event'.",
                    "source": {"parameter": "filter"},
                }
            ]
        },
    )
    with pytest.raises(KlaviyoAPIError) as caught:
        run_sync("events")
    message = str(caught.value)
    assert message.startswith("GET /api/events failed with 400")
    assert "'foo' is not a valid field for the resource 'event'" in message and "(at filter)" in message
    assert "\n" not in message
    assert len(fake.requests) == 1  # never retried


def test_401_says_which_setting_to_check(fake):
    fake.fail_next(
        401,
        body={
            "errors": [
                {
                    "id": "1",
                    "code": "not_authenticated",
                    "title": "t",
                    "detail": "Incorrect authentication credentials.",
                }
            ]
        },
    )
    with pytest.raises(KlaviyoAPIError, match="Check the api_key setting"):
        run_sync("events")


def test_403_names_the_missing_scope(fake):
    fake.fail_next(
        403,
        body={
            "errors": [{"id": "1", "code": "permission_denied", "title": "t", "detail": "You do not have permission."}]
        },
    )
    with pytest.raises(KlaviyoAPIError, match="grant events:read"):
        run_sync("events")


def test_server_errors_that_never_end_give_up_with_one_clear_line(fake):
    for _ in range(20):
        fake.fail_next(503)
    with pytest.raises(KlaviyoError) as caught:
        run_sync("events")
    assert "GET /api/events answered 503" in str(caught.value)
    assert "gave up after 8 tries" in str(caught.value)


def test_a_storm_of_429s_does_not_use_up_the_tries(fake, no_sleep):
    fake.add("/api/events", event("e1", ts(2)))
    for _ in range(20):
        fake.fail_next(429, {"Retry-After": "2"})
    assert [r["id"] for r in run_sync("events").records] == ["e1"]


def test_429s_for_longer_than_the_time_bound_end_in_one_line(fake, no_sleep):
    for _ in range(80):
        fake.fail_next(429, {"Retry-After": "60"})
    with pytest.raises(KlaviyoError) as caught:
        run_sync("events")
    message = str(caught.value)
    assert "answered 429" in message and "gave up after waiting 3600 s on rate limits" in message
    assert "\n" not in message
