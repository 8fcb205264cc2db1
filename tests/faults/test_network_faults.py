"""Klaviyo or the network misbehaves: a full sync still emits exactly the expected records.

Each fault kind the sandbox can inject gets a full ``tap-klaviyo`` sync of its own, plus
one run mixing every kind; a ``target-klaviyo`` run writes a list through all of them.
The runs go at the same time (each against its own sandbox), started in the background
as the session begins (see conftest.py). The expected data set is a fault-free sync of
the same seed. Then: timeouts (a hung server costs a read timeout and a retry, never a
hang; ``request_timeout`` sets it), a 200 HTML page, and the OAuth token endpoint failing.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import requests

from klaviyo_core.client import KlaviyoConnection
from klaviyo_core.errors import KlaviyoError
from klaviyo_sandbox.config import FAULT_KINDS
from tap_klaviyo.tap import TapKlaviyo
from tests.faults.harness import (
    FIGURES,
    Output,
    canonical,
    clean_output,
    fault_counters,
    in_parallel,
    run_tap,
    run_target,
    sandbox,
    tap_config,
)

pytestmark = pytest.mark.slow  # a module fixture runs for seconds (pyproject: markers)

SEED = 21
#: Per-request fault probability; 429 comes in bursts of three and a timeout costs a
#: whole read timeout, so those two are rarer to keep the module's wall time down.
#: The n-th request gets the n-th fault, and a sync's requests overlap (parallel readers,
#: upcoming streams fetched ahead), so which request meets which fault changes from run to
#: run: at a rate r one of a sync's ~360 requests fails all of its 8 tries with probability
#: ~360 r^8, 2% a run at 0.3 (a dozen runs a session), 1e-4 at 0.15.
RATES = {**dict.fromkeys(FAULT_KINDS, 0.15), "429": 0.1, "timeout": 0.1}
MIXED = "mixed"
TARGET_RUN = "target"


def _people(n: int = 120) -> tuple[str, set[str], int]:
    """A Singer stream of ``n`` valid rows plus 3 invalid ones: (text, valid emails, invalid count)."""
    properties = {
        "email": {"type": "string"},
        "first_name": {"type": ["string", "null"]},
        "phone_number": {"type": ["string", "null"]},
        "plan": {"type": ["string", "null"]},
    }
    lines = [
        {
            "type": "SCHEMA",
            "stream": "people",
            "schema": {"type": "object", "properties": properties},
            "key_properties": ["email"],
        }
    ]
    emails = set()
    for i in range(n):
        email = f"faulty.{i}@example.com"
        emails.add(email)
        lines.append(
            {
                "type": "RECORD",
                "stream": "people",
                "record": {"email": email, "first_name": f"Zoë {i} 🚀", "phone_number": None, "plan": "pro"},
            }
        )
        if i % 40 == 39:
            lines.append({"type": "STATE", "value": {"people": i}})
    bad = [{"email": "not-an-email"}, {"email": None}, {"email": "x@example.com", "phone_number": "12"}]
    lines += [{"type": "RECORD", "stream": "people", "record": row} for row in bad]
    lines.append({"type": "STATE", "value": {"people": "done"}})
    return "\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n", emails, len(bad)


def _tap_job(kinds: str, rate: float, workdir):
    def job():
        with sandbox(SEED, fault_rate=rate, faults=kinds) as box:
            run = run_tap(tap_config(box), workdir)
            return run, fault_counters(box)

    return job


def _target_job(workdir):
    def job():
        text, emails, invalid = _people()
        with sandbox(SEED, fault_rate=0.3, faults=",".join(FAULT_KINDS)) as box:
            config = {
                "api_key": box.api_key,
                "base_url": box.base_url,
                "request_timeout": 2.5,
                "list_name": "Nightly faults",
                "wait_for_completion": True,
                "batch_size_rows": 20,
            }
            run = run_target(config, workdir, text)
            time.sleep(0.5)  # let the sandbox finish applying the last job
            store = box.store
            lists = [lid for lid, rec in store.new_lists.items() if rec["attributes"]["name"] == "Nightly faults"]
            members = {store.get_profile(pid)["attributes"]["email"] for lid in lists for pid in store.member_ids(lid)}
            return run, fault_counters(box), {"lists": lists, "members": members, "emails": emails, "invalid": invalid}

    return job


def run_fault_matrix(workdir) -> dict:
    """Every faulty run at once. conftest starts this in the background when the session
    begins (the runs mostly wait out back-offs), so other modules' tests overlap with it."""
    clean_output(SEED, workdir)  # the fault-free data set, before the faulty runs compete for the CPU
    jobs = {kind: _tap_job(kind, RATES[kind], workdir / f"fault-{kind}") for kind in FAULT_KINDS}
    jobs[MIXED] = _tap_job(",".join(FAULT_KINDS), 0.15, workdir / "fault-mixed")
    jobs[TARGET_RUN] = _target_job(workdir / "fault-target")
    return in_parallel(jobs, workers=len(jobs))


@pytest.fixture(scope="module")
def fault_runs(faults_workdir, background):
    started = background.get(__name__)
    results = started.result() if started is not None else run_fault_matrix(faults_workdir)
    for name, (run, injected, *_) in results.items():
        if run.code == 0:
            FIGURES.add_faults(injected)
            FIGURES.add(f"fault_runs_{'target' if name == TARGET_RUN else 'tap'}")
    return results


@pytest.mark.parametrize("name", [*FAULT_KINDS, MIXED])
def test_a_full_sync_under_faults_emits_exactly_the_expected_records(fault_runs, expected, name):
    run, injected = fault_runs[name]
    clean = expected(SEED)

    assert run.code == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    kinds = FAULT_KINDS if name == MIXED else (name,)
    assert sum(injected.values()) >= (5 if name == MIXED else 3), injected
    assert set(injected) <= {f"fault:{kind}" for kind in kinds}
    output = Output(run.messages)
    assert output.duplicates() == {}
    for stream, records in clean.records.items():
        got = sorted(map(canonical, output.records.get(stream, [])))
        assert got == sorted(map(canonical, records)), f"{stream}: {len(got)} records, expected {len(records)}"
    assert set(output.records) == set(clean.records)
    assert "bookmarks" in (output.last_state or {})
    # Every fault but a slow answer costs its request one failed try, logged as a retry.
    retries = len(re.findall(r"Retrying (GET|POST|DELETE) ", run.stderr))
    assert retries >= sum(n for fault, n in injected.items() if fault != "fault:slow")


def test_the_target_writes_exactly_the_list_through_every_fault(fault_runs):
    run, injected, found = fault_runs[TARGET_RUN]

    assert run.code == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert sum(injected.values()) >= 3, injected
    assert len(found["lists"]) == 1  # a create whose answer was lost never made a second list
    assert found["members"] == found["emails"]
    total = len(found["emails"]) + found["invalid"]
    summary = re.search(r"Stream 'people': (\d+) rows received, (\d+) sent, (\d+) rejected", run.stderr)
    assert summary, run.stderr[-2000:]
    received, sent, rejected = map(int, summary.groups())
    assert (received, sent, rejected) == (total, len(found["emails"]), found["invalid"])
    assert [json.loads(line) for line in run.stdout.splitlines()][-1] == {"people": "done"}
    FIGURES.lost(len(found["emails"] - found["members"]))


# -- timeouts: a hung server costs a read timeout and a retry, never a hang -----------------------


class StallFirst:
    """Replace a sandbox's fault picker: stall the first ``n`` requests, answer the rest."""

    def __init__(self, n: int) -> None:
        self.left = n

    def __call__(self):
        if self.left > 0:
            self.left -= 1
            return "timeout", 0.0
        return None, 0.0


def test_every_request_has_connect_and_read_timeouts_and_the_read_timeout_is_a_setting():
    assert KlaviyoConnection({"api_key": "pk_x"}).timeout == (10.0, 120.0)
    assert KlaviyoConnection({"api_key": "pk_x", "request_timeout": 7.5}).timeout == (10.0, 7.5)
    tap = TapKlaviyo(config={"api_key": "pk_x", "request_timeout": 3, "discover_custom_fields": False})
    for stream in tap.streams.values():  # every page is sent through the run's connection
        assert stream.connection.timeout == (10.0, 3.0)


def test_a_hung_server_is_retried_after_the_read_timeout_not_waited_for():
    with sandbox(SEED, timeout_seconds=60) as box:
        box.app.faults.pick = StallFirst(2)
        connection = KlaviyoConnection({"api_key": box.api_key, "base_url": box.base_url, "request_timeout": 0.5})
        started = time.monotonic()
        document = connection.get("/api/accounts")
        elapsed = time.monotonic() - started
        stalled = fault_counters(box)
    assert document["data"]
    assert stalled == {"fault:timeout": 2}
    assert elapsed < 10  # two read timeouts and back-off, not the server's 60 s stall
    FIGURES.add_faults(stalled)


def test_the_tap_cli_retries_a_hung_server(faults_workdir):
    with sandbox(SEED, timeout_seconds=60) as box:
        box.app.faults.pick = StallFirst(2)
        run = run_tap(tap_config(box, request_timeout=1), faults_workdir / "hung-cli", args=["--test"], timeout=60)
        stalled = fault_counters(box)
    assert run.code == 0, run.stderr[-2000:]
    assert run.elapsed < 20
    assert "Connected to Klaviyo account" in run.stderr
    assert len(re.findall(r"Retrying GET /api/accounts .*Read timed out", run.stderr)) == 2
    FIGURES.add_faults(stalled)


def test_a_server_that_never_answers_ends_in_one_line_naming_request_timeout():
    with sandbox(SEED, fault_rate=1.0, faults="timeout", timeout_seconds=60) as box:
        connection = KlaviyoConnection(
            {"api_key": box.api_key, "base_url": box.base_url, "request_timeout": 0.3}, max_tries=2
        )
        with pytest.raises(KlaviyoError) as caught:
            connection.get("/api/accounts")
        FIGURES.add("faults_ending_in_a_one_line_error", sum(fault_counters(box).values()))
    message = str(caught.value)
    assert "did not answer within 0.3 s, 2 tries in a row" in message
    assert "request_timeout" in message and "\n" not in message


def test_a_200_html_page_instead_of_json_is_retried(monkeypatch):
    """A proxy's login or error page with status 200: the body is not JSON:API, so try again."""
    with sandbox(SEED) as box:
        connection = KlaviyoConnection({"api_key": box.api_key, "base_url": box.base_url})
        real_send = connection.session.send
        calls = []

        def send(request, **kwargs):
            calls.append(request.url)
            if len(calls) == 1:
                response = requests.Response()
                response.status_code, response._content = 200, b"<html><body>Please log in</body></html>"
                response.headers["Content-Type"] = "text/html"
                response.request, response.url = request, request.url
                return response
            return real_send(request, **kwargs)

        monkeypatch.setattr(connection.session, "send", send)
        assert connection.get("/api/accounts")["data"]
    assert len(calls) == 2


# -- OAuth: the token endpoint misbehaves ------------------------------------------------------------


class FaultFirst:
    """Replace a sandbox's fault picker: the given faults for the first requests, then none."""

    def __init__(self, *kinds: str) -> None:
        self.kinds = list(kinds)

    def __call__(self):
        return (self.kinds.pop(0) if self.kinds else None), 0.5


def _oauth_config(box, workdir) -> dict:
    from klaviyo_sandbox.oauth import DEFAULT_SCOPE

    box.oauth.refresh["refresh-for-faults"] = {
        "client_id": box.config.client_id,
        "scope": DEFAULT_SCOPE,
        "active": True,
    }
    return {
        "client_id": box.config.client_id,
        "client_secret": box.config.client_secret,
        "refresh_token": "refresh-for-faults",
        "token_url": f"{box.base_url}/oauth/token",
        "base_url": box.base_url,
        "token_file": str(workdir / "tokens.json"),
        "request_timeout": 2.5,
    }


def test_a_token_refresh_that_never_reached_klaviyo_is_retried(faults_workdir):
    workdir = faults_workdir / "oauth-retry"
    with sandbox(SEED) as box:
        box.app.faults.pick = FaultFirst("reset", "503", "429")
        run = run_tap(_oauth_config(box, workdir), workdir, args=["--test"], timeout=60)
        FIGURES.add_faults(fault_counters(box))
    assert run.code == 0, run.stderr[-2000:]
    assert "Connected to Klaviyo account" in run.stderr
    assert json.loads((workdir / "tokens.json").read_text())["refresh_token"] != "refresh-for-faults"


def test_a_token_refresh_answer_lost_after_rotation_asks_for_reauthorisation_in_one_line(faults_workdir):
    """Klaviyo rotated the refresh token but the answer never arrived: only re-authorising helps.

    The sandbox rotates refresh tokens with no grace period (Klaviyo documents none), so
    the old token is refused from then on. The run must say so, and how to fix it.
    """
    workdir = faults_workdir / "oauth-lost"
    with sandbox(SEED) as box:
        box.app.faults.pick = FaultFirst("truncated")
        run = run_tap(_oauth_config(box, workdir), workdir, args=["--test"], timeout=60)
        FIGURES.add("faults_ending_in_a_one_line_error", sum(fault_counters(box).values()))
    assert run.code == 1
    assert "Traceback" not in run.stderr
    (error,) = run.error_lines
    assert "invalid_grant" in error and "Re-authorise with: klaviyo-oauth authorize --client-id" in error


# -- the sandbox itself: its faults are clean ---------------------------------------------------------


def test_sandbox_resets_and_client_hang_ups_print_no_traceback(capfd):
    """A ``reset`` fault used to print "ValueError: I/O operation on closed file"; a client
    killed mid-request printed a ConnectionResetError traceback. Neither is a server error."""
    import socket
    import struct

    with sandbox(SEED, fault_rate=1.0, faults="reset") as box:
        for _ in range(3):
            with pytest.raises(requests.exceptions.ConnectionError):
                requests.get(f"{box.base_url}/api/lists", headers={"revision": "2026-07-15"}, timeout=5)
        box.app.faults.rate = 0.0
        for _ in range(3):  # a client that dies half-way through a request: its socket closes with RST
            client = socket.create_connection(("127.0.0.1", box.port))
            client.sendall(b"GET /api/lists HTTP/1.1\r\nHost: x\r\n")
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
        time.sleep(0.3)
        resets = fault_counters(box)
    assert resets == {"fault:reset": 3}
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err and "Exception occurred" not in captured.err
