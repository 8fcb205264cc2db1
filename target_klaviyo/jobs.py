"""Klaviyo profile bulk import jobs: split, submit, wait for, and collect errors of.

``BulkImporter.submit`` sends one job and returns at once, so several jobs can be
in flight; ``wait`` polls all of them together. A later change can submit from a
thread pool without touching the waiting or the error handling.
"""

from __future__ import annotations

import typing as t
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


def job_body(resources: list[dict], list_id: str) -> dict:
    """The request body of one job, with the list attached (membership only, no consent)."""
    return {
        "data": {
            "type": "profile-bulk-import-job",
            "attributes": {"profiles": {"data": resources}},
            "relationships": {"lists": {"data": [{"type": "list", "id": list_id}]}},
        }
    }


def split_for_jobs(
    profiles: list[PreparedProfile],
    list_id: str,
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


@dataclass
class ImportJob:
    """One submitted job and the rows it carries (to match Klaviyo's errors back to rows)."""

    id: str
    profiles: list[PreparedProfile]
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
    """Submits jobs for one list and waits for them."""

    def __init__(self, connection: KlaviyoConnection, list_id: str, logger: logging.Logger) -> None:
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
        job = ImportJob(id=document["data"]["id"], profiles=profiles, submitted_at=monotonic())
        job.update(document["data"].get("attributes") or {})
        self.logger.info(
            "Submitted Klaviyo import job %s: %d profiles, %d bytes, list %s", job.id, len(profiles), size, self.list_id
        )
        return job

    def wait(self, jobs: list[ImportJob], timeout: float) -> None:
        """Poll until every job has finished, then fetch the errors of those with failures.

        Each job may take ``timeout`` seconds from its submission; the first that does
        not finish in time raises, naming the job so the user can look it up.
        """
        pending = list(jobs)
        interval = FIRST_POLL_SECONDS
        while pending:
            now = monotonic()
            deadline = min(job.submitted_at + timeout for job in pending)
            sleep(max(0.0, min(interval, deadline - now)))
            for job in list(pending):
                self.refresh(job)
                if job.status in FINISHED:
                    pending.remove(job)
                    self._finished(job)
                elif monotonic() >= job.submitted_at + timeout:
                    raise KlaviyoError(
                        f"Klaviyo import job {job.id} did not finish within {timeout:.0f} s ({job.progress()}). "
                        "Klaviyo may still complete it; raise wait_timeout_seconds or turn wait_for_completion off."
                    )
            interval = min(interval * 1.5, MAX_POLL_SECONDS)

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
