"""Klaviyo profile bulk import jobs: split, submit, wait for, and collect errors of.

``BulkImporter.submit`` sends one job and returns at once; ``wait`` polls several
jobs together. ``ImportJobs`` runs them for a whole target run: jobs are uploaded
by a background thread while the next rows are read, up to ``max_concurrency``
jobs are being uploaded or (with ``wait_for_completion``) processed by Klaviyo at
once, and ``finish`` waits for all of them. Uploads keep the input's order (one
after the other), so a profile that appears twice is sent in the order it came. The
target calls ``finish`` before it writes any STATE, so a STATE never covers rows
whose job Klaviyo has not accepted (or, when waiting, finished). Requests are paced
by the connection's limiters (job creation and job reads: 10/s and 150/min each,
scaled by ``rate_limit_share``).
"""

from __future__ import annotations

import collections
import typing as t
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from time import monotonic, sleep

from klaviyo_core.errors import KlaviyoError, json_document
from target_klaviyo.profiles import encoded_size

if t.TYPE_CHECKING:
    import logging

    from klaviyo_core.client import KlaviyoConnection
    from target_klaviyo.profiles import PreparedProfile

JOBS_PATH = "/api/profile-bulk-import-jobs"
#: Klaviyo's limits per job: 10,000 profiles and 5 MB (counted in decimal bytes, for margin).
MAX_JOB_PROFILES = 10_000
MAX_JOB_BYTES = 5_000_000
#: Job reads share 10/s and 150/m per endpoint: poll every few seconds, slower as a job runs long.
FIRST_POLL_SECONDS = 2.0
MAX_POLL_SECONDS = 15.0
FINISHED = ("complete", "cancelled")


def job_body(resources: list[dict], list_id: str | None) -> dict:
    """The request body of one job, with the list attached when there is one (membership only, no consent)."""
    data: dict[str, t.Any] = {"type": "profile-bulk-import-job", "attributes": {"profiles": {"data": resources}}}
    if list_id:
        data["relationships"] = {"lists": {"data": [{"type": "list", "id": list_id}]}}
    return {"data": data}


def split_for_jobs(
    profiles: list[PreparedProfile],
    list_id: str | None,
    *,
    max_profiles: int = MAX_JOB_PROFILES,
    max_bytes: int = MAX_JOB_BYTES,
) -> list[list[PreparedProfile]]:
    """Consecutive groups that each fit in one job, by count and by encoded size."""
    overhead = encoded_size(job_body([], list_id))
    separator = len(", ")  # how requests' JSON encoder joins array items
    groups: list[list[PreparedProfile]] = []
    current: list[PreparedProfile] = []
    size = overhead
    for profile in profiles:
        added = profile.size + (separator if current else 0)
        if current and (len(current) >= max_profiles or size + added > max_bytes):
            groups.append(current)
            current, size, added = [], overhead, profile.size
        current.append(profile)
        size += added
    if current:
        groups.append(current)
    return groups


class SentProfile(t.NamedTuple):
    """What a submitted job keeps of a row: enough to put an import error's row in the rejects file."""

    row: dict
    key: str  # identity_key of the profile as sent


@dataclass
class ImportJob:
    """One submitted job and the rows it carries (to match Klaviyo's errors back to rows)."""

    id: str
    profiles: list[PreparedProfile] | list[SentProfile]
    submitted_at: float
    status: str = "queued"
    total: int = 0
    completed: int = 0
    failed: int = 0
    errors: list[dict] = field(default_factory=list)

    def progress(self) -> str:
        return f"{self.status}, {self.completed} completed, {self.failed} failed of {self.total}"

    def update(self, attributes: t.Mapping[str, t.Any]) -> None:
        self.status = str(attributes.get("status") or self.status)
        self.total = int(attributes.get("total_count") or self.total or len(self.profiles))
        self.completed = int(attributes.get("completed_count") or 0)
        self.failed = int(attributes.get("failed_count") or 0)


class BulkImporter:
    """Submits jobs (for one list, or none: a plain upsert) and waits for them."""

    def __init__(self, connection: KlaviyoConnection, list_id: str | None, logger: logging.Logger) -> None:
        self.connection = connection
        self.list_id = list_id
        self.logger = logger

    def submit(self, profiles: list[PreparedProfile]) -> ImportJob:
        """Send one job; a failure raises (so the SDK emits no state for these rows)."""
        body = job_body([p.resource for p in profiles], self.list_id)
        size = encoded_size(body)
        if size > MAX_JOB_BYTES:  # split_for_jobs keeps this from happening; never send it anyway
            raise KlaviyoError(f"Internal error: an import job of {size} bytes exceeds Klaviyo's 5 MB limit")
        document = json_document(self.connection.request("POST", JOBS_PATH, json=body))
        del body  # the job keeps rows and emails only, not the profiles as sent
        sent = [SentProfile(p.row, p.key) for p in profiles]
        job = ImportJob(id=document["data"]["id"], profiles=sent, submitted_at=monotonic())
        job.update(document["data"].get("attributes") or {})
        self.logger.info(
            "Submitted Klaviyo import job %s: %d profiles, %d bytes, list %s",
            job.id, len(profiles), size, self.list_id or "(none)",
        )  # fmt: skip
        return job

    def wait(
        self, jobs: list[ImportJob], timeout: float, *, until_any: bool = False, executor: Executor | None = None
    ) -> list[ImportJob]:
        """Poll until every job (``until_any``: at least one) has finished; fetch the errors of
        those with failures; return the finished ones.

        Each job may take ``timeout`` seconds from its submission; the first that does
        not finish in time raises, naming the job so the user can look it up. With an
        ``executor`` the jobs of one round are polled concurrently (paced by the limiter
        of job reads), so a round takes one answer's time, not one per job.
        """
        pending = list(jobs)
        finished: list[ImportJob] = []
        interval = FIRST_POLL_SECONDS
        while pending and not (until_any and finished):
            now = monotonic()
            deadline = min(job.submitted_at + timeout for job in pending)
            sleep(max(0.0, min(interval, deadline - now)))
            polled = list(pending)
            if executor is not None and len(polled) > 1:
                list(executor.map(self.refresh, polled))  # every answer in (the first failure raised)
            else:
                for job in polled:
                    self.refresh(job)
            for job in polled:
                if job.status in FINISHED:
                    pending.remove(job)
                    self._finished(job)
                    finished.append(job)
                elif monotonic() >= job.submitted_at + timeout:
                    raise KlaviyoError(
                        f"Klaviyo import job {job.id} did not finish within {timeout:.0f} s ({job.progress()}). "
                        "Klaviyo may still complete it; raise wait_timeout_seconds or turn wait_for_completion off."
                    )
            interval = min(interval * 1.5, MAX_POLL_SECONDS)
        return finished

    def refresh(self, job: ImportJob) -> None:
        document = self.connection.get(f"{JOBS_PATH}/{job.id}")
        job.update((document.get("data") or {}).get("attributes") or {})
        self.logger.info("Klaviyo import job %s: %s", job.id, job.progress())

    def _finished(self, job: ImportJob) -> None:
        if job.status == "cancelled":
            raise KlaviyoError(
                f"Klaviyo import job {job.id} was cancelled ({job.progress()}); run again to import its rows."
            )
        if job.failed:
            params = {"page[size]": 100}
            job.errors = list(self.connection.paginate(f"{JOBS_PATH}/{job.id}/import-errors", params))


OnFinished = t.Callable[[ImportJob], None]
#: Jobs waiting for (or in) the upload, at most.
QUEUED_UPLOADS = 2


class ImportJobs:
    """Every import job of one target run, uploaded in the background and waited for together.

    ``submit`` returns at once unless ``max_concurrency`` jobs are already being
    submitted or (with ``wait_for_completion``) processed; it then first waits for
    the oldest submission, or for a running job to finish. ``on_finished`` is called
    (in the caller's thread) with each finished job when waiting for completion.
    A failure is raised by the next ``submit`` or by ``finish``.
    """

    def __init__(
        self,
        *,
        max_concurrency: int,
        wait_for_completion: bool,
        timeout: float,
    ) -> None:
        self.max_concurrency = max(1, max_concurrency)
        self.wait_for_completion = wait_for_completion
        self.timeout = timeout
        self._executor: ThreadPoolExecutor | None = None
        self._submitting: collections.deque[tuple[Future[ImportJob], BulkImporter, OnFinished]] = collections.deque()
        self._running: list[tuple[ImportJob, BulkImporter, OnFinished]] = []
        self._poller: ThreadPoolExecutor | None = None
        self.submitted = 0

    def submit(self, importer: BulkImporter, profiles: list[PreparedProfile], on_finished: OnFinished) -> None:
        self._make_room()
        if self._executor is None:
            # One uploader: jobs reach Klaviyo in input order; Klaviyo then runs them side by side.
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="klaviyo-import")
        self._submitting.append((self._executor.submit(importer.submit, profiles), importer, on_finished))
        self.submitted += 1

    @property
    def pending(self) -> int:
        """Jobs being submitted, or submitted and not yet finished (when waiting)."""
        return len(self._submitting) + len(self._running)

    def finish(self) -> None:
        """Return once every job is submitted (and finished, when waiting); raise the first failure."""
        try:
            while self._submitting:
                self._collect(self._submitting.popleft())
            while self._running:
                self._wait(until_any=False)
        except BaseException:
            self._abandon()
            raise

    def _make_room(self) -> None:
        try:
            # Uploads are one at a time: a job ready behind the one uploading is enough,
            # and each queued job holds its rows in memory.
            while len(self._submitting) >= QUEUED_UPLOADS or (
                self._submitting and self.pending >= self.max_concurrency
            ):
                self._collect(self._submitting.popleft())
            while self.pending >= self.max_concurrency:
                self._wait(until_any=True)
        except BaseException:
            self._abandon()
            raise

    def _collect(self, item: tuple[Future[ImportJob], BulkImporter, OnFinished]) -> None:
        future, importer, on_finished = item
        job = future.result()  # the submission's failure, if any, is raised here
        if self.wait_for_completion:
            self._running.append((job, importer, on_finished))
        else:
            job.profiles = []

    def _wait(self, *, until_any: bool) -> None:
        jobs = [job for job, _, _ in self._running]
        importer = self._running[0][1]  # any importer polls any job (the job's path names it)
        if self._poller is None:  # kept for the run: each thread keeps its keep-alive connection
            self._poller = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="klaviyo-poll")
        finished = {id(job) for job in importer.wait(jobs, self.timeout, until_any=until_any, executor=self._poller)}
        still = []
        for job, owner, on_finished in self._running:
            if id(job) in finished:
                on_finished(job)
            else:
                still.append((job, owner, on_finished))
        self._running = still

    def _abandon(self) -> None:
        """After a failure: no new submissions; those under way finish on their own."""
        for future, _, _ in self._submitting:
            future.cancel()
        self._submitting.clear()
        self._running.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
