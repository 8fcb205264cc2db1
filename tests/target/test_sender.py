"""BatchSender: concurrent requests, a refused request split until the bad rows are found, failures raised."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from klaviyo_core.errors import KlaviyoAPIError, KlaviyoError
from target_klaviyo.operations import Options, Suppress, split
from target_klaviyo.rejects import RunReport
from target_klaviyo.sender import Batch, BatchSender


class FakeConnection:
    """Refuses (400) any request carrying a poisoned email; counts requests in flight at once."""

    def __init__(self, poisoned=(), status=400, delay=0.0):
        self.poisoned, self.status, self.delay = set(poisoned), status, delay
        self.bodies: list[list[str]] = []
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()

    def request(self, method, path, *, json=None, params=None):
        emails = [p["attributes"]["email"] for p in json["data"]["attributes"]["profiles"]["data"]]
        with self.lock:
            self.bodies.append(emails)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)
            if self.poisoned & set(emails):
                raise KlaviyoAPIError(f"POST {path}: Invalid email address.", status=self.status)
            return _Answer(len(self.bodies))
        finally:
            with self.lock:
                self.in_flight -= 1


class _Answer:
    def __init__(self, n):
        self.n = n


@pytest.fixture(autouse=True)
def _job_document(monkeypatch):
    import target_klaviyo.sender as sender

    monkeypatch.setattr(sender, "json_document", lambda answer: {"data": {"id": f"job{answer.n}"}})


def send(connection, rows, tmp_path, *, concurrency=4):
    report = RunReport(tmp_path / "rejects.jsonl")
    op = Suppress(Options())
    items = [op.prepare(row) for row in rows]
    sender = BatchSender(
        connection,
        report,
        logging.getLogger("test"),
        max_concurrency=concurrency,
        wait_for_completion=False,
        timeout=300,
    )
    for group, batch in split(items, op, None):
        sender.submit(Batch("s", op, group, batch, None))
    sender.finish()
    report.close()
    return sender, report


def test_a_refused_request_is_halved_until_only_the_bad_row_is_rejected(tmp_path):
    rows = [{"email": f"p{i}@example.com"} for i in range(100)]
    connection = FakeConnection(poisoned={"p37@example.com"})

    sender, report = send(connection, rows, tmp_path)

    assert sender.rows_sent == 99
    assert report.rejected_total == 1
    assert '"p37@example.com"' in (tmp_path / "rejects.jsonl").read_text()
    assert len(connection.bodies) == 1 + 2 * 6  # 100, 50, 25, 13, 6, 3, then 1: both halves sent at each level


def test_requests_run_concurrently_up_to_max_concurrency(tmp_path):
    rows = [{"email": f"p{i}@example.com"} for i in range(1000)]  # 10 requests of 100
    connection = FakeConnection(delay=0.05)

    sender, _ = send(connection, rows, tmp_path, concurrency=4)

    assert sender.requests == 10
    assert 2 <= connection.most_in_flight <= 4


def test_a_failure_that_is_not_the_rows_fault_ends_the_run(tmp_path):
    rows = [{"email": f"p{i}@example.com"} for i in range(10)]
    connection = FakeConnection(poisoned={"p1@example.com"}, status=403)

    with pytest.raises(KlaviyoError, match="Invalid email"):
        send(connection, rows, tmp_path)
