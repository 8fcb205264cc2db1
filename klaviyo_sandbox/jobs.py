"""Bulk profile import jobs (POST /api/profile-bulk-import-jobs) and their lifecycle.

A job is queued for the first 20% of `job_seconds`, processing until `job_seconds`, then
complete. Its rows are applied (upserted, added to the attached lists) exactly once, by a
timer at completion or by the first read that observes it complete, whichever comes first.
"""

from __future__ import annotations

import json
import re
import threading

from . import validate
from .render import ApiError, bad_request
from .util import B62, AffineCodec, iso

MAX_BODY = 5 * 1024 * 1024
MAX_PROFILES = 10_000
MAX_PROFILE_BYTES = 100 * 1024
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
E164_RE = re.compile(r"^\+[1-9]\d{1,14}$")
PROFILE_POINTER = "/data/attributes/profiles/data/{k}"


class Job:
    # Set on import jobs of other kinds (klaviyo_sandbox.bulk): the job type, rows skipped.
    kind: str
    skipped: int

    def __init__(self, jid, created, duration, rows, errors, lists):
        self.id, self.created, self.duration = jid, created, duration
        self.rows, self.errors, self.lists = rows, errors, lists
        self.total = len(rows) + len(errors)
        self.profile_ids: list = []
        self.applied = False
        self.lock = threading.Lock()
        self.seq = 0

    def timeline(self, now: float):
        started, done = self.created + 0.2 * self.duration, self.created + self.duration
        if now < started:
            return "queued", 0.0, None, None
        if now < done:
            return "processing", (now - started) / max(done - started, 1e-9), started, None
        return "complete", 1.0, started, done


class JobManager:
    def __init__(self, store, job_seconds: float):
        self.store, self.duration = store, job_seconds
        self.jobs: dict = {}
        self.codec = AffineCodec(store.ds.seed, "import-job", B62, 10)
        self._timers: list = []

    # ------------------------------------------------------------ create
    def create(self, body: bytes) -> Job:
        if len(body) > MAX_BODY:
            raise ApiError(413, "payload_too_large", "The maximum allowed payload size is 5MB.")
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise bad_request("The request body is not valid JSON.", pointer="/data") from None
        data = doc.get("data") if isinstance(doc, dict) else None
        found = validate.problem("bulk_import_profiles", doc) if isinstance(data, dict) else None
        if found:
            raise bad_request(found[1], pointer=found[0])
        if not isinstance(data, dict) or data.get("type") != "profile-bulk-import-job":
            raise bad_request("`data.type` must be 'profile-bulk-import-job'.", pointer="/data/type")
        profiles = ((data.get("attributes") or {}).get("profiles") or {}).get("data")
        if not isinstance(profiles, list) or not profiles:
            raise bad_request("`profiles.data` must be a non-empty array.", pointer="/data/attributes/profiles/data")
        if len(profiles) > MAX_PROFILES:
            raise bad_request(
                f"A maximum of {MAX_PROFILES} profiles is allowed per request; got {len(profiles)}.",
                pointer="/data/attributes/profiles/data",
            )
        lists = self._lists(data)
        rows, errors = [], []
        for k, item in enumerate(profiles):
            if (
                not isinstance(item, dict)
                or item.get("type") != "profile"
                or not isinstance(item.get("attributes"), dict)
            ):
                raise bad_request(
                    "Each profile must be {'type': 'profile', 'attributes': {...}}.",
                    pointer=PROFILE_POINTER.format(k=k),
                )
            problem = row_problem(item)
            if problem:
                errors.append(self._error(k, item, *problem))
            else:
                rows.append((item.get("id"), item["attributes"], unset_properties(item)))
        with self.store.lock:
            seq = self.store.next_seq()
            job = Job(self.codec.id(seq), self.store.now(), self.duration, rows, errors, lists)
            job.seq = seq
            self.jobs[job.id] = job
        self._schedule(job)
        return job

    def _lists(self, data: dict) -> list:
        rel = ((data.get("relationships") or {}).get("lists") or {}).get("data") or []
        if not isinstance(rel, list):
            raise bad_request("`relationships.lists.data` must be an array.", pointer="/data/relationships/lists/data")
        out = []
        for k, item in enumerate(rel):
            lid = item.get("id") if isinstance(item, dict) else None
            if not isinstance(item, dict) or item.get("type") != "list" or self.store.group_record("list", lid) is None:
                raise bad_request(f"List {lid!r} does not exist.", pointer=f"/data/relationships/lists/data/{k}/id")
            out.append(lid)
        return out

    def _error(self, k: int, item: dict, field: str | None, detail: str) -> dict:
        pointer = PROFILE_POINTER.format(k=k) + "/attributes" + (f"/{field}" if field else "")
        return {
            "type": "import-error",
            "id": f"{k:05d}",
            "attributes": {
                "code": "invalid",
                "title": "Invalid input.",
                "detail": detail,
                "source": {"pointer": pointer},
                "original_payload": item.get("attributes"),
            },
            "_seq": k,
            "_nat": k,
        }

    def _schedule(self, job: Job):
        if self.duration <= 0:
            self.ensure_applied(job)
            return
        t = threading.Timer(self.duration, self.ensure_applied, args=(job,))
        t.daemon = True
        t.start()
        self._timers.append(t)

    def shutdown(self):
        for t in self._timers:
            t.cancel()

    # ------------------------------------------------------------ apply & read
    def ensure_applied(self, job: Job):
        with job.lock:
            if job.applied:
                return
            ids = []
            for pid, attrs, unset in job.rows:
                rec, _ = self.store.upsert_profile(attrs, pid=pid, unset=unset)
                ids.append(rec["id"])
            for lid in job.lists:
                self.store.add_members(lid, ids)
            job.profile_ids = ids
            job.applied = True

    def get(self, jid: str) -> Job | None:
        job = self.jobs.get(jid)
        if job is not None and job.timeline(self.store.now())[0] == "complete":
            self.ensure_applied(job)
        return job

    def record(self, job: Job) -> dict:
        status, progress, started, done = job.timeline(self.store.now())
        ok, bad = len(job.rows), len(job.errors)
        attrs = {
            "status": status,
            "created_at": iso(job.created),
            "total_count": job.total,
            "completed_count": int(ok * progress),
            "failed_count": int(bad * progress),
            "completed_at": iso(done) if done else None,
            "expires_at": iso(job.created + 7 * 86400),
            "started_at": iso(started) if started else None,
        }
        return {
            "type": "profile-bulk-import-job",
            "id": job.id,
            "attributes": attrs,
            "relationships": {
                "lists": [{"type": "list", "id": lid} for lid in job.lists],
                "profiles": None,
                "import-errors": None,
            },
            "_seq": job.seq,
            "_nat": job.seq,
            "_x": {"status": status},
        }


def unset_properties(item: dict) -> tuple:
    """Names in ``meta.patch_properties.unset`` (a name or a list of names): properties to remove."""
    unset = (((item.get("meta") or {}).get("patch_properties") or {}).get("unset")) or ()
    return (unset,) if isinstance(unset, str) else tuple(unset)


def row_problem(item: dict):
    """(field, detail) describing why a row can't be imported, or None."""
    a = item["attributes"]
    if len(json.dumps(item)) > MAX_PROFILE_BYTES:
        return None, "The maximum allowed payload size per profile is 100KB."
    email, phone = a.get("email"), a.get("phone_number")
    if email is not None and (not isinstance(email, str) or not EMAIL_RE.match(email)):
        return "email", f"Invalid email address: {email!r}."
    if phone is not None and (not isinstance(phone, str) or not E164_RE.match(phone)):
        return "phone_number", (
            f"Invalid phone number {phone!r}: phone numbers must be in E.164 format (for example +12345678901)."
        )
    if not (email or phone or a.get("external_id") or item.get("id")):
        return None, "A profile must have at least one identifier: email, phone_number, external_id or id."
    return None
