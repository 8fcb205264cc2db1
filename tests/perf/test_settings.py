"""max_concurrency and rate_limit_share reach the tap's streams and the target's jobs."""

from __future__ import annotations

import pytest
from singer_sdk.exceptions import ConfigValidationError

from klaviyo_core import endpoints
from tap_klaviyo import concurrency, records
from tap_klaviyo.tap import TapKlaviyo
from target_klaviyo.target import TargetKlaviyo
from tests.tap.conftest import CONFIG, run_sync
from tests.tap.fake_klaviyo import event, profile, ts

TARGET = {"api_key": "pk_test_0123456789abcdef", "list_id": "L1"}


def streams(config: dict) -> dict:
    return {s.name: s for s in TapKlaviyo(config={**CONFIG, **config}).streams.values()}


def test_events_profiles_and_members_read_in_parallel_by_default_and_others_do_not():
    by_name = streams({})
    assert {name for name, s in by_name.items() if s.reads_in_parallel} == {
        "events", "profiles", "list_members", "segment_members"
    }  # fmt: skip
    assert by_name["events"].max_concurrency == 8


def test_max_concurrency_1_reads_one_page_at_a_time():
    assert not any(s.reads_in_parallel for s in streams({"max_concurrency": 1}).values())


# "8" is read as 8 (klaviyo_core.env_config: Meltano passes numbers as text); "eight" is not a number.
@pytest.mark.parametrize("value", [0, 65, 2.5, "eight", "65", True])
def test_a_max_concurrency_that_is_not_1_to_64_is_refused_naming_the_setting(value):
    for plugin, config in ((TapKlaviyo, CONFIG), (TargetKlaviyo, TARGET)):
        with pytest.raises(ConfigValidationError) as caught:
            plugin(config={**config, "max_concurrency": value})
        assert "max_concurrency" in " ".join([str(caught.value), *map(str, caught.value.errors)])


def test_rate_limit_share_scales_the_limits_of_tap_and_target():
    tap = TapKlaviyo(config={**CONFIG, "rate_limit_share": 0.5})
    target = TargetKlaviyo(config={**TARGET, "rate_limit_share": 0.25})
    assert tap.connection.limiters.get("get_events", 350, 3500).steady_per_minute == 1750
    assert target.connection.limiters.get("bulk_import_profiles", 10, 150).steady_per_minute == 37


def test_the_target_runs_up_to_max_concurrency_jobs():
    target = TargetKlaviyo(config={**TARGET, "max_concurrency": 3, "wait_for_completion": True})
    assert target.import_jobs.max_concurrency == 3
    assert target.import_jobs.wait_for_completion


def test_sequential_and_parallel_reads_give_the_same_records_and_state(fake):
    fake.add("/api/events", *(event(f"e{d:02d}{h:02d}", ts(d, h)) for d in range(1, 29) for h in range(0, 24, 5)))
    one = run_sync("events", config={"max_concurrency": 1})
    eight = run_sync("events", config={"max_concurrency": 8})
    assert one.records == eight.records
    assert (
        one.states[-1]["bookmarks"]["events"]["replication_key_value"]
        == (eight.states[-1]["bookmarks"]["events"]["replication_key_value"])
    )


@pytest.mark.parametrize(
    ("stream", "config"),
    [("events", {}), ("profiles", {"discover_custom_fields": True})],  # flat records; custom fields typed
)
def test_pages_packed_while_they_wait_give_the_same_records_and_state(fake, monkeypatch, stream, config):
    page_size_max = endpoints.page_size_max  # pages of 7: full pages, so the reader splits the range into slices
    monkeypatch.setattr(endpoints, "page_size_max", lambda operation: page_size_max(operation) and 7)
    fake.page_cap = 7
    fake.add("/api/events", *(event(f"e{d:02d}{h:02d}", ts(d, h)) for d in range(1, 29) for h in range(0, 24, 5)))
    fake.add("/api/profiles", *(profile(f"p{d:02d}{h:02d}", ts(d, h)) for d in range(1, 29) for h in range(0, 24, 5)))
    one = run_sync(stream, config={**config, "max_concurrency": 1})
    unpacked = []
    unpack = records.PackedRecords.unpacked
    monkeypatch.setattr(records.PackedRecords, "unpacked", lambda self: unpacked.append(self) or unpack(self))
    monkeypatch.setattr(concurrency, "BUFFERED_BYTES", 30_000)  # 7 answers of 4 KB, not the 24 pages: packed
    eight = run_sync(stream, config={**config, "max_concurrency": 8})
    assert len(unpacked) > 5
    assert one.records == eight.records and len(one.records) == 140
    assert one.states[-1]["bookmarks"][stream] == eight.states[-1]["bookmarks"][stream]


@pytest.fixture
def fake():
    import requests_mock

    from tests.tap.fake_klaviyo import FakeKlaviyo

    with requests_mock.Mocker() as mocker:
        yield FakeKlaviyo(mocker)
