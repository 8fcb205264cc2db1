"""The run's shared state: building a sink sends nothing; the list is resolved by the first batch,
through the run's one connection (and so its rate limiters)."""

from __future__ import annotations

import requests_mock

from target_klaviyo.target import TargetKlaviyo
from tests.klaviyo import Account

API_KEY = "pk_" + "0" * 34  # never sent: the first test allows no request

SCHEMA = {"type": "object", "properties": {"email": {"type": "string"}}}


def test_building_a_sink_sends_no_request(tmp_path):
    target = TargetKlaviyo(config={"api_key": API_KEY, "list_name": "Newsletter"}, validate_config=True)
    with requests_mock.Mocker() as mock:  # any request would raise NoMockAddress
        sink = target.get_sink("customers", schema=SCHEMA, key_properties=[])
        sink.process_record({"email": "a@example.com"}, sink.start_drain())
    assert mock.call_count == 0
    assert sink.run is target.run


def test_the_list_is_created_by_the_first_batch_through_the_runs_connection(klaviyo: Account, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = {"api_key": klaviyo.api_key, "base_url": klaviyo.base_url, "list_name": "Weekly digest"}
    target = TargetKlaviyo(config=config)
    sink = target.get_sink("customers", schema=SCHEMA, key_properties=[])
    assert klaviyo.calls("GET", "/api/lists") == [] and klaviyo.calls("POST", "/api/lists") == []

    context = sink.start_drain()
    sink.process_record({"email": "a@example.com"}, context)
    sink.process_batch(context)
    target.run.finish()

    assert len(klaviyo.calls("POST", "/api/lists")) == 1
    used = {stats["endpoint"]: stats["requests"] for stats in target.connection.stats()}
    # The scope probe (an invalid POST /api/lists) and the create both count on the run's limiter.
    assert used.get("create_list") == 2, used
    assert sink.list_id == target.run.list_id()  # resolved once for the whole run
    assert len(klaviyo.calls("POST", "/api/lists")) == 1
