"""The fast output path says exactly what the SDK's would: same records, same order, STATE flushed."""

from __future__ import annotations

import datetime as dt
import io
import json
import sys

import pytest
from singer_sdk.singerlib import RecordMessage, SchemaMessage, StateMessage
from singer_sdk.singerlib.encoding.simple import SimpleSingerWriter

from tap_klaviyo.writer import KlaviyoMessageWriter
from tests.tap.conftest import CONFIG, run_sync, select_only
from tests.tap.fake_klaviyo import event, ts


class Stdout(io.TextIOWrapper):
    """A text stdout over bytes, like the real one: writes can be seen at the byte level."""

    def __init__(self) -> None:
        self.raw_bytes = io.BytesIO()
        super().__init__(io.BufferedWriter(self.raw_bytes, buffer_size=64), encoding="utf-8", write_through=True)

    def seen(self) -> list[dict]:
        return [json.loads(line) for line in self.raw_bytes.getvalue().decode().splitlines()]


def messages() -> list:
    when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    record = {"id": "e1", "event_properties": {"price": 9.5, "name": "Café ☕", "list": [1, None]}, "n": 3}
    return [
        SchemaMessage("events", {"type": "object"}, ["id"], ["datetime"]),
        RecordMessage("events", record, time_extracted=when),
        RecordMessage("events", {**record, "id": "e2"}, version=7, time_extracted=when),
        StateMessage({"bookmarks": {"events": {"replication_key_value": ts(2), "partitions": [], "x": None}}}),
    ]


def test_the_writer_encodes_what_the_sdk_writer_encodes(monkeypatch):
    sdk, ours = io.StringIO(), Stdout()
    monkeypatch.setattr(sys, "stdout", sdk)
    for message in messages():
        SimpleSingerWriter().write_message(message)
    monkeypatch.setattr(sys, "stdout", ours)
    writer = KlaviyoMessageWriter()
    for message in messages():
        writer.write_message(message)
    expected = [json.loads(line) for line in sdk.getvalue().splitlines()]
    got = ours.seen()
    for line in expected + got:  # time_extracted: same instant, "Z" or "+00:00"
        if "time_extracted" in line:
            line["time_extracted"] = dt.datetime.fromisoformat(line["time_extracted"].replace("Z", "+00:00"))
    assert got == expected


def test_a_record_written_from_its_parts_is_the_line_of_its_message(monkeypatch):
    when = dt.datetime(2024, 1, 2, 4, 4, 5, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    plain = {"id": "e1", "event_properties": {"name": "Café ☕"}}
    surrogate = {"id": "e2", "event_properties": {"bad": "\ud83d"}}  # msgspec refuses it: the SDK's encoder
    for record in (plain, surrogate):
        assert_same_lines(monkeypatch, [("events", record, 7, when)])
        assert_same_lines(monkeypatch, [("events", record, None, when)])
    # after the first message: records appended between line ends encoded once per stream,
    # version and time extracted, which change between records here
    later = when + dt.timedelta(seconds=1)
    assert_same_lines(
        monkeypatch,
        [
            ("events", plain, 7, when),
            ("events", {**plain, "id": "e3"}, 7, when),
            ("events", surrogate, 7, when),
            ("events", plain, 7, later),
            ("events", plain, None, later),
            ("profiles", plain, None, later),
            ("events", plain, 8, later.astimezone(dt.timezone.utc)),
        ],
        first=SchemaMessage("events", {"type": "object"}, ["id"], []),
    )


def assert_same_lines(
    monkeypatch: pytest.MonkeyPatch, records: list[tuple], first: SchemaMessage | None = None
) -> None:
    """The bytes written for ``records`` (stream, record, version, time extracted) through
    ``write_message`` and through ``write_record`` are the same."""
    lines = []
    for as_parts in (False, True):
        out = Stdout()
        monkeypatch.setattr(sys, "stdout", out)
        writer = KlaviyoMessageWriter()
        if first is not None:
            writer.write_message(first)
        for stream, record, version, when in records:
            if as_parts:
                writer.write_record(stream, record, version, when)
            else:
                writer.write_message(RecordMessage(stream, record, version=version, time_extracted=when))
        writer.flush()
        lines.append(out.raw_bytes.getvalue())
    assert lines[0] == lines[1]
    assert b"2024-01-02T03:04:05.123456" in lines[1]  # in UTC


def test_records_wait_in_the_buffer_and_a_state_takes_them_out_in_order(monkeypatch):
    out = Stdout()
    monkeypatch.setattr(sys, "stdout", out)
    writer = KlaviyoMessageWriter()
    schema, first, second, state = messages()
    writer.write_message(schema)
    assert [m["type"] for m in out.seen()] == ["SCHEMA"]  # flushed at once
    writer.write_message(first)
    writer.write_message(second)
    assert [m["type"] for m in out.seen()] == ["SCHEMA"]  # records wait
    writer.write_message(state)
    assert [m["type"] for m in out.seen()] == ["SCHEMA", "RECORD", "RECORD", "STATE"]


def test_a_deselected_property_is_still_removed(fake):
    fake.add("/api/events", event("e1", ts(2)))
    from tap_klaviyo.tap import TapKlaviyo

    catalog = select_only(TapKlaviyo(config=CONFIG), "events")
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == ["properties", "uuid"]:
                item["metadata"]["selected"] = False
    out = io.StringIO()
    from contextlib import redirect_stdout

    with redirect_stdout(out):
        TapKlaviyo(config=CONFIG, catalog=catalog).sync_all()
    (record,) = [json.loads(line)["record"] for line in out.getvalue().splitlines() if '"RECORD"' in line]
    assert "uuid" not in record and record["id"] == "e1"


def test_a_field_the_schema_lacks_is_left_out_with_one_warning(fake, caplog):
    extra = event("e1", ts(2))
    extra["attributes"]["brand_new_field"] = 1
    fake.add("/api/events", extra, event("e2", ts(3)))
    result = run_sync("events")
    assert [r["id"] for r in result.records] == ["e1", "e2"]
    assert all("brand_new_field" not in r for r in result.records)
    assert sum("brand_new_field" in m for m in caplog.messages) == 1


@pytest.fixture
def fake(mocker):
    from tests.tap.fake_klaviyo import FakeKlaviyo

    return FakeKlaviyo(mocker)


@pytest.fixture
def mocker():
    import requests_mock

    with requests_mock.Mocker() as m:
        yield m


def test_a_sync_of_realistic_events_writes_what_the_sdks_plain_path_writes(fake, monkeypatch):
    """Every fast path of the record loop on, then off: the same messages (the times of the runs aside).

    Off: records decoded then flattened, custom fields conformed by the Conformer (not typed while
    decoded), the SDK's record loop, a RecordMessage per record, the bookmark moved per record.
    """
    from singer_sdk import Stream

    from klaviyo_sandbox import gen_events
    from klaviyo_sandbox.util import Rng
    from tap_klaviyo import records
    from tap_klaviyo.custom_fields import CustomFieldsMixin
    from tap_klaviyo.sdk_compat import CompatStream
    from tap_klaviyo.streams import EventsStream

    rng = Rng(11)
    names = ["Placed Order", "Viewed Product", "Active on Site", "Ordered Product", "Started Checkout"]
    resources = []
    for n in range(40):
        resource = event(f"e{n:02d}", ts(1 + n // 2, hour=n % 24))
        resource["attributes"]["event_properties"] = gen_events.properties(rng, names[n % 5], n, "realistic")
        resources.append(resource)
    fake.add("/api/events", *resources)
    monkeypatch.setattr(EventsStream, "STATE_MSG_FREQUENCY", 7)
    fast = run_sync("events", config={"max_concurrency": 1}).messages

    def per_record(self: CompatStream, record: dict, *, context: object = None) -> None:
        if self.advances_bookmark(record, context):  # type: ignore[arg-type]
            Stream._increment_stream_state(self, record, context=context)  # type: ignore[arg-type]

    monkeypatch.setattr(CompatStream, "writes_records_unmapped", property(lambda self: False))
    monkeypatch.setattr(CompatStream, "_sync_records", Stream._sync_records)
    monkeypatch.setattr(CompatStream, "_increment_stream_state", per_record)
    monkeypatch.setattr(records, "flat_records", records.lazy_records)
    monkeypatch.setattr(CustomFieldsMixin, "typed_decoding", False)
    plain = run_sync("events", config={"max_concurrency": 1}).messages
    for message in fast + plain:
        message.pop("time_extracted", None)
        if message["type"] == "STATE":  # the run's start
            message["value"]["bookmarks"]["events"].pop("replication_key_signpost", None)
    assert len([m for m in fast if m["type"] == "RECORD"]) == 40
    assert sum(bool(m["record"].get("event_properties")) for m in fast if m["type"] == "RECORD") == 40
    assert fast == plain
