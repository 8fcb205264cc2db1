"""What tap_klaviyo.sdk_compat relies on in singer-sdk: each check names the internal it guards.

A failure here after an SDK upgrade means: re-read that internal in the new SDK, adapt
tap_klaviyo/sdk_compat.py, and bump its SDK_VERSION.
"""

from __future__ import annotations

import inspect
import re
import signal
from importlib.metadata import version
from pathlib import Path

import pytest
from singer_sdk import Stream, Tap
from singer_sdk.plugin_base import PluginBase

from tap_klaviyo import sdk_compat
from tap_klaviyo.sdk_compat import CompatStream, CompatTap
from tap_klaviyo.streams import EventsStream
from tap_klaviyo.tap import TapKlaviyo
from tests.tap.conftest import CONFIG, run_sync
from tests.tap.fake_klaviyo import event, ts

ROOT = Path(__file__).resolve().parents[2]


def _parameters(function: object) -> list[tuple[str, inspect._ParameterKind]]:
    return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]  # type: ignore[arg-type]


POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD
KEYWORD = inspect.Parameter.KEYWORD_ONLY


def test_sdk_version_is_the_locked_one_and_the_installed_release_line():
    locked = re.search(r"^singer-sdk==(\S+)$", (ROOT / "requirements/lock.txt").read_text(), re.MULTILINE)
    assert locked, "requirements/lock.txt pins no singer-sdk"
    assert locked.group(1) == sdk_compat.SDK_VERSION, "bump SDK_VERSION after re-checking tap_klaviyo/sdk_compat.py"
    installed = version("singer-sdk").split(".")[:2]
    assert installed == sdk_compat.SDK_VERSION.split(".")[:2], (
        f"singer-sdk {version('singer-sdk')} is installed; sdk_compat was written against {sdk_compat.SDK_VERSION}"
    )


def test_generate_record_messages_still_takes_a_record_and_is_what_writes_records():
    assert _parameters(Stream._generate_record_messages) == [("self", POSITIONAL), ("record", POSITIONAL)]
    assert "self._generate_record_messages(record)" in inspect.getsource(Stream._write_record_message)
    assert "_generate_record_messages" in CompatStream.__dict__


def test_stream_version_is_still_an_attribute_of_every_stream():
    tap = TapKlaviyo(config=CONFIG)
    stream = tap.streams["events"]
    assert "_stream_version" in vars(stream)  # set in Stream.__init__ (None until a full-table sync sets it)


def test_the_fast_record_path_writes_what_the_sdks_path_writes():
    """Same messages as singer-sdk's own method, for a record the catalog selects in full."""
    tap = TapKlaviyo(config=CONFIG)
    stream = tap.streams["events"]
    record = {"id": "e1", "datetime": ts(2), "event_properties": {"a": 1}}
    assert stream.nothing_to_prune
    ours = [m.to_dict() for m in stream._generate_record_messages(dict(record))]
    sdks = [m.to_dict() for m in Stream._generate_record_messages(stream, dict(record))]
    for message in (*ours, *sdks):
        message.pop("time_extracted")
    assert ours == sdks


def test_increment_stream_state_is_still_called_per_record_and_state_written_through_two_methods():
    assert _parameters(Stream._increment_stream_state) == [
        ("self", POSITIONAL),
        ("latest_record", POSITIONAL),
        ("context", KEYWORD),
    ]
    loop = inspect.getsource(Stream._sync_records)
    assert "self._increment_stream_state(record, context=current_context)" in loop
    assert "self._write_state_message()" in loop  # every STATE of the loop goes through it
    assert "self._finalize_state(state)" in loop
    assert _parameters(Stream._write_state_message) == [("self", POSITIONAL)]
    assert _parameters(Stream._finalize_state) == [("self", POSITIONAL), ("state", POSITIONAL)]
    assert _parameters(Stream._write_record_message) == [("self", POSITIONAL), ("record", POSITIONAL)]


def test_each_state_holds_the_bookmark_of_the_last_record_written_before_it(fake, monkeypatch):
    monkeypatch.setattr(EventsStream, "STATE_MSG_FREQUENCY", 2)
    fake.add("/api/events", *(event(f"e{day}", ts(day)) for day in range(1, 8)))
    result = run_sync("events", config={"max_concurrency": 1})
    last = None
    states = 0
    for message in result.messages:
        if message["type"] == "RECORD":
            last = message["record"]["datetime"]
        elif message["type"] == "STATE" and last is not None:
            assert message["value"]["bookmarks"]["events"]["replication_key_value"] == last
            states += 1
    assert states >= 4  # after e2, e4, e6 and at the end


def test_the_bookmark_moves_to_the_last_record_emitted_if_that_one_may_move_it(fake, monkeypatch):
    seen: list[str] = []

    def advances(self: EventsStream, record: dict, context: object) -> bool:  # stands in for WindowedStream's
        seen.append(record["id"])
        return record["id"] != "e4"  # e4 may not move the bookmark (a lookback re-read)

    monkeypatch.setattr(EventsStream, "advances_bookmark", advances)
    fake.add("/api/events", *(event(f"e{day}", ts(day)) for day in (2, 3, 4)))
    result = run_sync("events", config={"max_concurrency": 1, "start_date": ts(1)})
    assert seen == ["e4"]  # asked once, for the record the STATE would move to
    assert result.states[-1]["bookmarks"]["events"].get("replication_key_value") != ts(4)


def test_an_unsorted_stream_still_keeps_the_largest_value_seen():
    tap = TapKlaviyo(config=CONFIG)
    stream = tap.streams["campaigns"]
    assert not stream.is_sorted
    context = {"channel": "email"}
    for day in (3, 5, 4):
        stream._increment_stream_state({"id": str(day), "updated_at": ts(day)}, context=context)
    state = stream.get_context_state(context)
    assert state["progress_markers"]["replication_key_value"] == ts(5)


def test_a_termination_signal_moves_the_bookmark_before_the_state_is_written(monkeypatch):
    tap = TapKlaviyo(config=CONFIG)
    stream = tap.streams["events"]
    assert vars(stream)["_tap"] is tap  # Stream._tap, set in Stream.__init__
    other = TapKlaviyo(config=CONFIG).streams["events"]
    other._increment_stream_state({"id": "e9", "datetime": ts(9)}, context=None)
    stream._increment_stream_state({"id": "e1", "datetime": ts(1)}, context=None)
    assert "replication_key_value" not in stream.get_context_state(None)  # pending until a STATE
    written: list[int] = []
    monkeypatch.setattr(TapKlaviyo, "on_termination_signal", lambda self, signum: written.append(signum))
    tap._handle_termination(signal.SIGTERM, None)
    assert written == [signal.SIGTERM]
    assert stream.get_context_state(None)["replication_key_value"] == ts(1)
    assert "replication_key_value" not in other.get_context_state(None)  # another tap's stream: untouched


def test_records_skip_message_objects_only_when_nothing_maps_them():
    """(tests/perf/test_output.py checks the writer's lines are the SDK's.)"""
    tap = TapKlaviyo(config=CONFIG)
    stream = tap.streams["events"]
    assert stream.writes_records_unmapped
    mapped = TapKlaviyo(config={**CONFIG, "stream_maps": {"events": {"extra": "1"}}}).streams["events"]
    assert not mapped.writes_records_unmapped
    flattened = TapKlaviyo(config={**CONFIG, "flattening_enabled": True, "flattening_max_depth": 1})
    assert not flattened.streams["events"].writes_records_unmapped


def test_handle_termination_is_still_the_handler_the_sdk_installs():
    assert _parameters(PluginBase._handle_termination) == [
        ("self", POSITIONAL),
        ("signum", POSITIONAL),
        ("frame", POSITIONAL),
    ]
    assert "_handle_termination" in Tap.__dict__  # the SDK's writes the STATE, then exits 0
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        tap = TapKlaviyo(config=CONFIG)
        for sig in before:
            handler = signal.getsignal(sig)
            assert getattr(handler, "__self__", None) is tap
            assert getattr(handler, "__func__", None) is CompatTap._handle_termination
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def test_the_sdks_own_termination_handler_exits_zero_which_is_why_the_tap_overrides_it(capsys):
    tap = TapKlaviyo(config=CONFIG)
    with pytest.raises(SystemExit) as stopped:
        CompatTap.on_termination_signal(tap, signal.SIGTERM)
    assert stopped.value.code == 0
    assert '"type":"STATE"' in capsys.readouterr().out.replace(" ", "")


def test_test_option_and_invoke_are_still_what_the_deferred_test_relies_on():
    """``--test`` waits for every option (tap.py ``cb_test``/``invoke``): the SDK's command must still
    call the ``--test`` option's callback through ``cls.cb_test`` and ``invoke`` with these keywords."""
    assert list(inspect.signature(Tap.invoke).parameters) == ["about", "about_format", "config", "state", "catalog"]
    command = TapKlaviyo.get_singer_command()
    (test,) = [option for option in command.params if "--test" in getattr(option, "opts", ())]
    assert test.callback == TapKlaviyo.cb_test and not test.expose_value
    assert command.callback == TapKlaviyo.invoke


#: sha256 of singer-sdk 0.54.9's ``Stream._sync_records`` source, which CompatStream._sync_records
#: shortens: an SDK whose loop differs must be re-read before this is updated.
SYNC_RECORDS_SHA256 = "8928dc7f50e9bf57cc98734b30e3953b0e19007f85fe020a0c80ccdbcf5d329f"


def test_the_sdks_record_loop_is_the_one_the_short_loop_was_written_from():
    import hashlib

    source = inspect.getsource(Stream._sync_records)
    assert hashlib.sha256(source.encode()).hexdigest() == SYNC_RECORDS_SHA256, "re-read Stream._sync_records"
    assert _parameters(Stream._sync_records) == [
        ("self", POSITIONAL),
        ("context", POSITIONAL),
        ("write_messages", KEYWORD),
    ]
    for internal in ("_get_state_partition_context", "_write_starting_replication_value", "_finalize_state"):
        assert f"self.{internal}(" in source  # the short loop calls each where the SDK's does


def test_the_short_loop_is_used_only_for_streams_written_directly(fake, monkeypatch):
    fake.add("/api/events", event("e1", ts(1)), event("e2", ts(2)))
    used = []
    loop = CompatStream._sync_records

    def spy(self, context=None, *, write_messages=True):
        used.append((self.name, self.writes_records_directly))
        yield from loop(self, context, write_messages=write_messages)

    monkeypatch.setattr(CompatStream, "_sync_records", spy)
    assert [r["id"] for r in run_sync("events").records] == ["e1", "e2"]
    mapped = run_sync("events", config={"stream_maps": {"events": {"id_copy": "id"}}})
    assert [r["id_copy"] for r in mapped.records] == ["e1", "e2"]
    assert used == [("events", True), ("events", False)]  # a map: the SDK's loop


@pytest.mark.parametrize("inclusion", [None, "available", "automatic", "unsupported"])
@pytest.mark.parametrize("selected", [None, True, False])
@pytest.mark.parametrize("by_default", [None, True, False])
def test_stream_selected_agrees_with_the_sdks_selection_of_the_stream(inclusion, selected, by_default):
    from singer_sdk.singerlib import CatalogEntry

    root = {
        name: value
        for name, value in {"inclusion": inclusion, "selected": selected, "selected-by-default": by_default}.items()
        if value is not None
    }
    entry = CatalogEntry.from_dict({
        "tap_stream_id": "s",
        "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
        "metadata": [{"breadcrumb": [], "metadata": root}, {"breadcrumb": ["properties", "a"], "metadata": {}}],
    })  # fmt: skip
    assert sdk_compat.stream_selected(entry.metadata) is entry.metadata.resolve_selection()[()]


def test_the_sdks_tap_mapper_is_still_a_plugin_mapper_with_the_catalogs_streams_registered():
    """TapKlaviyo._map_streams_built does what Tap.setup_mapper does, over the streams a sync built."""
    assert inspect.getsource(PluginBase.setup_mapper).split('"""')[-1].split() == (
        ["self._mapper", "=", "PluginMapper(", "plugin_config=dict(self.config),", "logger=self.logger,", ")"]
    )
    assert inspect.getsource(Tap.setup_mapper).split('"""')[-1].split() == (
        ["super().setup_mapper()", "self.mapper.register_raw_streams_from_catalog(self.catalog)"]
    )
