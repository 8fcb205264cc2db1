"""The content streams as users run them: the installed tap against the sandbox.

A first sync, a rerun from its state, and runs SIGKILLed inside the parent/child streams
then resumed from the last state they wrote: together they emit every record.
"""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import typing as t
from pathlib import Path

import pytest

from tests.conftest import BIN, cli_catalog, run_cli
from tests.tap.test_content_streams import CONTENT, INCREMENTAL

pytestmark = pytest.mark.slow  # a module fixture runs for seconds (pyproject: markers)

#: Where each run is killed: after this many records of the stream (inside its parent's loop).
KILL_POINTS = [("flow_messages", 5), ("coupon_codes", 150), ("campaign_messages", 3)]


def catalog(tmp_path: Path, config: dict) -> Path:
    """The discovered catalog with only the content streams selected."""
    return cli_catalog(config, tmp_path, *CONTENT)


@pytest.fixture(scope="module")
def setup(sandbox, tmp_path_factory) -> tuple[dict, Path, Path]:
    tmp_path = tmp_path_factory.mktemp("content-cli")
    config = {"api_key": sandbox.api_key, "base_url": sandbox.base_url, "discover_custom_fields": False}
    return config, catalog(tmp_path, config), tmp_path


def records(messages: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = collections.defaultdict(list)
    for message in messages:
        if message["type"] == "RECORD":
            out[message["stream"]].append(message["record"])
    return out


def last_state(messages: list[dict]) -> dict | None:
    states = [m["value"] for m in messages if m["type"] == "STATE"]
    return states[-1] if states else None


@pytest.fixture(scope="module")
def first(setup) -> list[dict]:
    config, catalog_path, tmp_path = setup
    result = run_cli("tap-klaviyo", "--catalog", str(catalog_path), config=config, tmp_path=tmp_path)
    assert result.code == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    return result.messages()


def test_discovery_gives_each_content_stream_its_key_and_replication(setup):
    _, catalog_path, _ = setup
    entries = {s["tap_stream_id"]: s for s in json.loads(catalog_path.read_text())["streams"]}
    for stream in CONTENT:
        assert entries[stream]["key_properties"] == ["id"]
        assert entries[stream].get("replication_key") == INCREMENTAL.get(stream)
        assert entries[stream]["replication_method"] == ("INCREMENTAL" if stream in INCREMENTAL else "FULL_TABLE")


def test_a_first_sync_through_the_cli_emits_every_content_stream(first):
    emitted = records(first)
    assert set(emitted) == set(CONTENT)
    assert all(emitted[stream] for stream in CONTENT)
    bookmarks = last_state(first)["bookmarks"]
    for stream, key in INCREMENTAL.items():
        values = [bookmarks[stream].get("replication_key_value")]
        values += [p.get("replication_key_value") for p in bookmarks[stream].get("partitions", [])]
        assert max(v for v in values if v) == max(r[key] for r in emitted[stream])


def test_a_rerun_from_the_state_reads_only_what_changed_or_the_bookmarks_have_not_seen(sandbox, setup, first):
    config, catalog_path, tmp_path = setup
    changed = {stream: set(sandbox.store.touch(stream, 2)["touched"]) for stream in ("templates", "forms", "images")}
    state = tmp_path / "state.json"
    state.write_text(json.dumps(last_state(first)))
    again = run_cli(
        "tap-klaviyo", "--catalog", str(catalog_path), "--state", str(state), config=config, tmp_path=tmp_path
    )
    assert again.code == 0, again.stderr[-2000:]
    before, after = records(first), records(again.messages())
    for stream in CONTENT:
        if stream in INCREMENTAL:  # what changed, and the records at a bookmark's exact second again
            assert len(after[stream]) < len(before[stream])
            assert changed.get(stream, set()) <= {r["id"] for r in after[stream]}
        else:  # full table: everything again
            assert sorted(r["id"] for r in after[stream]) == sorted(r["id"] for r in before[stream])


class KilledRun(t.NamedTuple):
    messages: list[dict]
    killed: bool
    code: int


def run_until(config: dict, catalog_path: Path, workdir: Path, state: dict | None, kill_at: tuple | None) -> KilledRun:
    """Run the tap, SIGKILL it after the ``kill_at`` (stream, n)-th record; keep every full line it wrote."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(json.dumps(config))
    argv = [str(BIN / "tap-klaviyo"), "--config", str(workdir / "config.json"), "--catalog", str(catalog_path)]
    if state is not None:
        (workdir / "state.json").write_text(json.dumps(state))
        argv += ["--state", str(workdir / "state.json")]
    messages, seen, killed = [], collections.Counter(), False
    with (workdir / "stderr.log").open("wb") as stderr:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            if not line.endswith("\n"):
                break  # cut in half by the kill
            message = json.loads(line)
            messages.append(message)
            if message["type"] == "RECORD":
                seen[message["stream"]] += 1
                if kill_at and not killed and seen[kill_at[0]] >= kill_at[1]:
                    proc.send_signal(signal.SIGKILL)
                    killed = True
        code = proc.wait(timeout=120)
    return KilledRun(messages, killed, code)


def test_runs_killed_inside_parent_child_streams_resume_without_losing_a_record(setup, first, tmp_path):
    config, catalog_path, _ = setup
    emitted: dict[str, set[str]] = collections.defaultdict(set)
    state, runs = None, []
    for index, point in enumerate([*KILL_POINTS, None]):
        run = run_until(config, catalog_path, tmp_path / f"run{index}", state, point)
        runs.append(run)
        for stream, rows in records(run.messages).items():
            emitted[stream].update(r["id"] for r in rows)
        if point is not None:
            assert run.killed and run.code == -signal.SIGKILL, f"the run was not killed at {point}"
        state = last_state(run.messages) or state
    assert runs[-1].code == 0
    expected = records(first)
    for stream in CONTENT:
        assert emitted[stream] == {r["id"] for r in expected[stream]}, f"{stream}: records lost across the kills"
    # The killed flow_messages run had finished some actions: the next run resumed them from their bookmarks.
    partitions = (
        ((runs[0].messages and last_state(runs[0].messages)) or {}).get("bookmarks", {}).get("flow_messages", {})
    )
    assert any(p.get("replication_key_value") for p in partitions.get("partitions", []))
