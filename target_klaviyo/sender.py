"""Send the consent, suppression and event requests: concurrently, within the rate limit.

Up to ``max_concurrency`` requests are in flight at once (a thread pool); the connection's
limiter for each endpoint paces them to Klaviyo's burst and steady limits (scaled by
``rate_limit_share``), so more threads never mean 429s. These operations are set-like
(subscribe, unsubscribe, suppress, unsuppress) or de-duplicated by ``unique_id`` (track), so
the order in which requests reach Klaviyo does not change the outcome.

A request Klaviyo refuses as a whole (400, 413, 422: one bad row spoils it) is split in
halves and re-sent until the refused rows are found; each goes to the rejects file with
Klaviyo's detail and every other row is written. Any other failure ends the run (after
retries), before a STATE covers its rows.

Suppression requests create jobs; with ``wait_for_completion`` ``finish`` polls them until
Klaviyo has completed them, logging progress. Subscribe, unsubscribe and track answer 202
with no job to follow: their rows count as written once Klaviyo has accepted them.
"""

from __future__ import annotations

import threading
import typing as t
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from time import monotonic, sleep

from klaviyo_core.errors import KlaviyoAPIError, KlaviyoError, json_document
from target_klaviyo.jobs import FINISHED, FIRST_POLL_SECONDS, MAX_POLL_SECONDS
from target_klaviyo.rejects import RowRejected

if t.TYPE_CHECKING:
    import logging

    from klaviyo_core.client import KlaviyoConnection
    from target_klaviyo.operations import Item, Operation
    from target_klaviyo.rejects import RunReport

#: Klaviyo refused the request's content: some row in it is at fault.
REFUSED = (400, 413, 422)
PROGRESS_SECONDS = 10.0


class Batch(t.NamedTuple):
    stream: str
    operation: Operation
    group: t.Hashable
    items: list[Item]
    list_id: str | None


class BatchSender:
    """The run's consent, suppression and event requests (one per target run)."""

    def __init__(
        self,
        connection: KlaviyoConnection,
        report: RunReport,
        logger: logging.Logger,
        *,
        max_concurrency: int,
        wait_for_completion: bool,
        timeout: float,
    ) -> None:
        self.connection = connection
        self.report = report
        self.logger = logger
        self.max_concurrency = max(1, max_concurrency)
        self.wait_for_completion = wait_for_completion
        self.timeout = timeout
        self._executor: ThreadPoolExecutor | None = None
        self._futures: set[Future[None]] = set()
        self._jobs: list[tuple[Operation, str, float]] = []  # (operation, job id, submitted at)
        self._lock = threading.Lock()  # counters and job ids (worker threads)
        self._queue_lock = threading.RLock()  # submit/finish: sinks may drain in parallel threads
        self.requests = 0
        self.rows_sent = 0
        self._summarised = 0
        self._last_progress = monotonic()

    def submit(self, batch: Batch) -> None:
        """Queue one request; waits while twice ``max_concurrency`` are queued (memory stays bounded)."""
        with self._queue_lock:
            self._raise_failures(block=len(self._futures) >= 2 * self.max_concurrency)
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="klaviyo-send")
            self._futures.add(self._executor.submit(self._send, batch))

    def finish(self) -> None:
        """Return once every request is answered (and every job finished, when waiting); raise the first failure."""
        with self._queue_lock:
            while self._futures:
                self._raise_failures(block=True)
            if self.wait_for_completion and self._jobs:
                self._wait_for_jobs()
            if self.requests != self._summarised:  # finish runs at every STATE and at the end
                self._summarised = self.requests
                self.logger.info("Klaviyo accepted %d rows in %d requests", self.rows_sent, self.requests)

    def _raise_failures(self, *, block: bool) -> None:
        if not self._futures:
            return
        done, pending = wait(self._futures, timeout=None if block else 0, return_when=FIRST_COMPLETED)
        self._futures = set(pending)
        for future in done:
            try:
                future.result()
            except BaseException:
                self._abandon()
                raise
        self._log_progress()

    def _abandon(self) -> None:
        for future in self._futures:
            future.cancel()
        self._futures.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    def _log_progress(self) -> None:
        now = monotonic()
        if now - self._last_progress >= PROGRESS_SECONDS:
            self._last_progress = now
            self.logger.info("Progress: Klaviyo accepted %d rows in %d requests so far", self.rows_sent, self.requests)

    # -- in a worker thread ------------------------------------------------------------

    def _send(self, batch: Batch) -> None:
        """One request; a refused one is split until the refused rows are found."""
        body = batch.operation.body(batch.items, batch.group, batch.list_id)
        try:
            response = self.connection.request("POST", batch.operation.path, json=body)
        except KlaviyoAPIError as exc:
            if exc.status not in REFUSED:
                raise
            self._split(batch, exc)
            return
        with self._lock:
            self.requests += 1
            self.rows_sent += len(batch.items)
            if batch.operation.job_path:
                job_id = json_document(response)["data"]["id"]
                self._jobs.append((batch.operation, job_id, monotonic()))
        self.report.sent(batch.stream, len(batch.items))

    def _split(self, batch: Batch, exc: KlaviyoAPIError) -> None:
        if len(batch.items) == 1:
            reason = f"Klaviyo refused it ({exc.status}): {exc}"
            self.report.reject(batch.stream, batch.items[0].row, RowRejected("refused by Klaviyo", reason))
            return
        self.logger.warning(
            "Klaviyo refused a %s request of %d rows (%d); re-sending in halves to find the rows at fault",
            batch.operation.name, len(batch.items), exc.status,
        )  # fmt: skip
        middle = len(batch.items) // 2
        for half in (batch.items[:middle], batch.items[middle:]):
            self._send(batch._replace(items=half))

    # -- jobs --------------------------------------------------------------------------

    def _wait_for_jobs(self) -> None:
        """Poll every suppression job (``max_concurrency`` at a time) until Klaviyo has completed it."""
        pending = list(self._jobs)
        self._jobs.clear()
        interval = FIRST_POLL_SECONDS
        with ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="klaviyo-poll") as pool:
            while pending:
                sleep(interval)
                answers = list(pool.map(self._job_attributes, pending))
                still = [job for job, attributes in zip(pending, answers) if not self._finished(job, attributes)]
                done = len(pending) - len(still)
                self.logger.info("Klaviyo %s jobs: %d of %d complete", pending[0][0].name, done, len(pending))
                pending = still
                interval = min(interval * 1.5, MAX_POLL_SECONDS)

    def _job_attributes(self, job: tuple[Operation, str, float]) -> dict:
        operation, job_id, _ = job
        job_path = t.cast(str, operation.job_path)  # only operations with a job path make jobs
        return self.connection.get(job_path.format(id=job_id))["data"]["attributes"]

    def _finished(self, job: tuple[Operation, str, float], attributes: dict) -> bool:
        """Whether the job is complete; raise when it was cancelled or ran out of time."""
        operation, job_id, submitted = job
        status = attributes.get("status")
        progress = f"{status}, {attributes.get('completed_count') or 0} of {attributes.get('total_count')}"
        if status == "cancelled":
            raise KlaviyoError(f"Klaviyo {operation.name} job {job_id} was cancelled ({progress}); run again.")
        if status in FINISHED:
            self.logger.info("Klaviyo %s job %s: %s, %d skipped (no such profile, or nothing to change)",
                             operation.name, job_id, progress, attributes.get("skipped_count") or 0)  # fmt: skip
            return True
        if monotonic() >= submitted + self.timeout:
            raise KlaviyoError(
                f"Klaviyo {operation.name} job {job_id} did not finish within {self.timeout:.0f} s "
                f"({progress}). Raise wait_timeout_seconds or turn wait_for_completion off."
            )
        return False
