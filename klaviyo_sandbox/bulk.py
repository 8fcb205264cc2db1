"""Consent, suppression and event bulk endpoints: subscribe, unsubscribe, suppress, unsuppress, events.

Every body is first checked against the operation's request schema from the spec (``validate.py``),
then against the rules the spec states in the operation descriptions:

- ``bulk_subscribe_profiles``: at most 1,000 profiles; ``historical_import`` needs ``consented_at``
  in the past on each channel, and ``consented_at`` without ``historical_import`` is an error; an
  email channel needs an email, an SMS channel a phone number (E.164); the list must exist. Removes
  UNSUBSCRIBE, SPAM_REPORT and USER_SUPPRESSED suppressions; 202 with no body.
- ``bulk_unsubscribe_profiles``: at most 100 profiles; with a list, the profiles also leave it;
  202 with no body.
- ``bulk_suppress_profiles`` / ``bulk_unsuppress_profiles``: at most 100 emails; a job document
  (202) that ``get_bulk_(un)suppress_profiles_job`` reads. Suppress creates missing profiles;
  unsuppress lifts USER_SUPPRESSED only and skips unknown emails.
- ``bulk_create_events``: at most 1,000 events and 5 MB; metric name under 128 characters; time after
  1990 and at most a year ahead; strings up to 100 KB; at most 400 event properties. A unique_id
  repeated for the same profile and metric inside one request fails the request (spec); one already
  recorded by an earlier request is not recorded again (Klaviyo's docs: only the first is kept).

Where a problem is found nothing of the request is applied (400 naming the pointer). Accepted work
is applied after ``--job-seconds`` (Klaviyo processes these asynchronously), or at once when 0.
Profiles are matched like the bulk import (id, email, phone, external_id) and created when missing.
Events recorded here are kept in ``store.tracked_events`` (not served by GET /api/events: the
sandbox's generated metrics do not include the names clients send).
"""

from __future__ import annotations

import copy
import json
import threading
from datetime import datetime

from . import validate
from .jobs import E164_RE, EMAIL_RE, MAX_BODY, Job
from .render import ApiError, bad_request, document, not_found, resource
from .util import B62, AffineCodec, iso

LIMITS = {
    "bulk_subscribe_profiles": 1000,
    "bulk_unsubscribe_profiles": 100,
    "bulk_suppress_profiles": 100,
    "bulk_unsuppress_profiles": 100,
}
MAX_EVENTS = 1000
MAX_STRING = 100 * 1024
MAX_EVENT_PROPERTIES = 400
LIFTED_BY_SUBSCRIBE = ("UNSUBSCRIBE", "SPAM_REPORT", "USER_SUPPRESSED")
CHANNELS = {
    ("email", "marketing"): "email_marketing",
    ("sms", "marketing"): "sms_marketing",
    ("sms", "transactional"): "sms_transactional",
}
PROFILES_POINTER = "/data/attributes/profiles/data"
YEAR = 365 * 86400
EPOCH_1990 = 631152000.0


class BulkWrites:
    """State of the consent/suppression/event endpoints (attached to the store as ``store.bulk``)."""

    def __init__(self, store, job_seconds: float):
        self.store, self.duration = store, job_seconds
        self.jobs: dict = {}  # suppression jobs by id
        self.codec = AffineCodec(store.ds.seed, "suppression-job", B62, 10)
        self.lock = threading.Lock()

    def later(self, apply) -> None:
        if self.duration <= 0:
            apply()
            return
        timer = threading.Timer(self.duration, apply)
        timer.daemon = True
        timer.start()


def body(req, op: str) -> dict:
    raw = req.body or b""
    if len(raw) > MAX_BODY:
        raise ApiError(413, "payload_too_large", "The maximum allowed payload size is 5MB.")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad_request("The request body is not valid JSON.", pointer="/data") from None
    found = validate.problem(op, doc)
    if found:
        raise bad_request(found[1], pointer=found[0])
    return doc


def _profiles(doc: dict, op: str) -> list:
    items = ((doc["data"]["attributes"].get("profiles") or {}).get("data")) or []
    if not items:
        raise bad_request("`profiles.data` must be a non-empty array.", pointer=PROFILES_POINTER)
    if len(items) > LIMITS[op]:
        raise bad_request(
            f"A maximum of {LIMITS[op]} profiles is allowed per request; got {len(items)}.", pointer=PROFILES_POINTER
        )
    return items


def _list_id(req, doc: dict) -> str | None:
    rel = ((doc["data"].get("relationships") or {}).get("list") or {}).get("data")
    if not rel:
        return None
    if req.store.group_record("list", rel["id"]) is None:
        raise not_found(f"A list with id {rel['id']} does not exist.")
    return rel["id"]


def _identifiers(k: int, attrs: dict, channels: set) -> None:
    email, phone = attrs.get("email"), attrs.get("phone_number")
    pointer = f"{PROFILES_POINTER}/{k}/attributes"
    if email is not None and not EMAIL_RE.match(email):
        raise bad_request(f"Invalid email address: {email!r}.", pointer=f"{pointer}/email")
    if phone is not None and not E164_RE.match(phone):
        raise bad_request(
            f"Invalid phone number {phone!r}: phone numbers must be in E.164 format.", pointer=f"{pointer}/phone_number"
        )
    if not (email or phone):
        raise bad_request("Either email or phone_number is required.", pointer=pointer)
    if "email" in channels and not email:
        raise bad_request("An email subscription needs an email address.", pointer=f"{pointer}/email")
    if "sms" in channels and not phone:
        raise bad_request("An SMS subscription needs a phone number.", pointer=f"{pointer}/phone_number")


def _consent_changes(subscriptions: dict) -> dict:
    """{email_marketing|sms_marketing|sms_transactional: parameters} of a subscriptions object."""
    out = {}
    for (channel, kind), name in CHANNELS.items():
        params = (subscriptions.get(channel) or {}).get(kind)
        if params:
            out[name] = params
    return out


# ---------------------------------------------------------------- subscribe / unsubscribe
def subscribe(req):
    doc = body(req, "bulk_subscribe_profiles")
    items = _profiles(doc, "bulk_subscribe_profiles")
    attrs = doc["data"]["attributes"]
    historical = bool(attrs.get("historical_import"))
    list_id = _list_id(req, doc)
    now, work = req.store.now(), []
    for k, item in enumerate(items):
        a = item["attributes"]
        changes = _consent_changes(a["subscriptions"])
        _identifiers(k, a, {name.split("_")[0] for name in changes})
        for name, params in changes.items():
            _check_consented_at(k, name, params.get("consented_at"), historical, now)
        work.append((item.get("id"), a, changes))
    store = req.store

    def apply():
        ids = []
        for pid, a, changes in work:
            ident = {key: a.get(key) for key in ("email", "phone_number")}
            rec, _ = store.upsert_profile({k: v for k, v in ident.items() if v}, pid=pid)
            ids.append(rec["id"])
            stamp = {name: (params.get("consented_at") or iso(store.now())) for name, params in changes.items()}
            store.change_consent(
                rec["id"],
                {name: ("SUBSCRIBED", stamp[name]) for name in changes},
                lift=LIFTED_BY_SUBSCRIBE if "email_marketing" in changes else (),
            )
        if list_id:
            store.add_members(list_id, ids)

    store.bulk.later(apply)
    return 202, b""


def _check_consented_at(k: int, name: str, value, historical: bool, now: float) -> None:
    channel, kind = name.split("_")
    pointer = f"{PROFILES_POINTER}/{k}/attributes/subscriptions/{channel}/{kind}/consented_at"
    if value is not None and not historical:
        raise bad_request("consented_at may only be given with historical_import.", pointer=pointer)
    if historical:
        if value is None:
            raise bad_request("consented_at is required when historical_import is true.", pointer=pointer)
        if datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() > now:
            raise bad_request("consented_at must be in the past.", pointer=pointer)


def unsubscribe(req):
    doc = body(req, "bulk_unsubscribe_profiles")
    items = _profiles(doc, "bulk_unsubscribe_profiles")
    list_id = _list_id(req, doc)
    work = []
    for k, item in enumerate(items):
        a = item["attributes"]
        changes = _consent_changes(a["subscriptions"])
        _identifiers(k, a, {name.split("_")[0] for name in changes})
        work.append((a, changes))
    store = req.store

    def apply():
        ids = []
        for a, changes in work:
            ident = {key: a.get(key) for key in ("email", "phone_number") if a.get(key)}
            rec, _ = store.upsert_profile(ident)
            ids.append(rec["id"])
            store.change_consent(rec["id"], {name: ("UNSUBSCRIBED", iso(store.now())) for name in changes})
        if list_id:
            store.remove_members(list_id, ids)

    store.bulk.later(apply)
    return 202, b""


# ---------------------------------------------------------------- suppress / unsuppress (jobs)
JOB_TYPES = {
    "bulk_suppress_profiles": "profile-suppression-bulk-create-job",
    "bulk_unsuppress_profiles": "profile-suppression-bulk-delete-job",
}
JOB_PATHS = {
    "profile-suppression-bulk-create-job": "profile-suppression-bulk-create-jobs",
    "profile-suppression-bulk-delete-job": "profile-suppression-bulk-delete-jobs",
}


def suppression(op: str):
    suppress = op == "bulk_suppress_profiles"

    def handler(req):
        doc = body(req, op)
        if doc["data"].get("relationships") or {}:
            # The sandbox does not take whole lists or segments (the target never sends them).
            raise bad_request("The sandbox supports suppression by email only.", pointer="/data/relationships")
        items = _profiles(doc, op)
        emails = []
        for k, item in enumerate(items):
            email = item["attributes"]["email"]
            if not EMAIL_RE.match(email):
                raise bad_request(
                    f"Invalid email address: {email!r}.", pointer=f"{PROFILES_POINTER}/{k}/attributes/email"
                )
            emails.append(email)
        store, bulk = req.store, req.store.bulk
        with store.lock:
            seq = store.next_seq()
            job = Job(bulk.codec.id(seq), store.now(), bulk.duration, emails, [], [])
            job.seq, job.kind, job.skipped = seq, JOB_TYPES[op], 0
            bulk.jobs[job.id] = job

        def apply():
            for email in emails:
                rec = store.find_profile("email", email)
                if suppress:
                    rec = rec or store.upsert_profile({"email": email})[0]
                    store.change_consent(rec["id"], {}, add_suppression="USER_SUPPRESSED")
                elif rec is None:
                    job.skipped += 1
                else:
                    store.change_consent(rec["id"], {}, lift=("USER_SUPPRESSED",))
            job.applied = True

        bulk.later(apply)
        return 202, document(
            resource(_job_record(store, job), req.base), {"self": f"{req.base}/api/{JOB_PATHS[job.kind]}/{job.id}/"}
        )

    return handler


def get_suppression_job(kind: str):
    def handler(req):
        job = req.store.bulk.jobs.get(req.match["id"])
        if job is None or job.kind != kind:
            raise not_found(f"A job with id {req.match['id']} does not exist.")
        return 200, document(
            resource(_job_record(req.store, job), req.base), {"self": f"{req.base}/api/{JOB_PATHS[kind]}/{job.id}/"}
        )

    return handler


def _job_record(store, job) -> dict:
    status, progress, _, done = job.timeline(store.now())
    if status == "complete" and not job.applied:
        status, progress, done = "processing", 0.99, None  # the timer has not run yet
    return {
        "type": job.kind,
        "id": job.id,
        "attributes": {
            "status": status,
            "created_at": iso(job.created),
            "total_count": job.total,
            "completed_count": int(job.total * progress),
            "completed_at": iso(done) if done else None,
            "skipped_count": job.skipped if status == "complete" else 0,
        },
        "relationships": {"lists": [], "segments": []},
    }


# ---------------------------------------------------------------- events
def create_events(req):
    doc = body(req, "bulk_create_events")
    items = doc["data"]["attributes"]["events-bulk-create"]["data"]
    count = sum(len(item["attributes"]["events"]["data"]) for item in items)
    pointer = "/data/attributes/events-bulk-create/data"
    if not items or count == 0:
        raise bad_request("At least one event is required.", pointer=pointer)
    if count > MAX_EVENTS:
        raise bad_request(f"A maximum of {MAX_EVENTS} events is allowed per request; got {count}.", pointer=pointer)
    store, now, work, seen = req.store, req.store.now(), [], set()
    for k, item in enumerate(items):
        profile = item["attributes"]["profile"]["data"]
        key = _event_profile(k, profile)
        for j, event in enumerate(item["attributes"]["events"]["data"]):
            where = f"{pointer}/{k}/attributes/events/data/{j}/attributes"
            a = event["attributes"]
            _check_event(a, where, now)
            unique = a.get("unique_id") or a.get("time") or iso(now)
            name = a["metric"]["data"]["attributes"]["name"]
            if (key, name, unique) in seen:
                raise bad_request(
                    "unique_id is repeated for the same profile and metric; no events were processed.",
                    pointer=f"{where}/unique_id",
                )
            seen.add((key, name, unique))
            work.append((profile, name, unique, a))

    def apply():
        with store.lock:
            for profile, name, unique, a in work:
                rec = _event_profile_record(store, profile)
                dedup = (rec["id"], name, unique)
                if dedup in store.tracked_keys:
                    continue
                store.tracked_keys.add(dedup)
                store.tracked_events.append(
                    {
                        "profile_id": rec["id"],
                        "metric": name,
                        "unique_id": unique,
                        "time": a.get("time") or iso(store.now()),
                        "value": a.get("value"),
                        "value_currency": a.get("value_currency"),
                        "properties": copy.deepcopy(a["properties"]),
                    }
                )

    store.bulk.later(apply)
    return 202, b""


def _event_profile(k: int, profile: dict) -> tuple:
    a = profile["attributes"]
    key = tuple(a.get(f) for f in ("email", "phone_number", "external_id")) + (profile.get("id"),)
    pointer = f"/data/attributes/events-bulk-create/data/{k}/attributes/profile/data"
    if not any(key):
        raise bad_request("A profile identifier (id, email, phone_number or external_id) is required.", pointer=pointer)
    if a.get("email") is not None and not EMAIL_RE.match(a["email"]):
        raise bad_request(f"Invalid email address: {a['email']!r}.", pointer=f"{pointer}/attributes/email")
    if a.get("phone_number") is not None and not E164_RE.match(a["phone_number"]):
        raise bad_request("Phone numbers must be in E.164 format.", pointer=f"{pointer}/attributes/phone_number")
    return key


def _event_profile_record(store, profile: dict) -> dict:
    a = profile["attributes"]
    attrs = {k: v for k, v in a.items() if k not in ("properties",) and v is not None}
    if isinstance(a.get("properties"), dict):
        attrs["properties"] = a["properties"]
    rec, _ = store.upsert_profile(attrs, pid=profile.get("id"))
    return rec


def _check_event(a: dict, where: str, now: float) -> None:
    name = a["metric"]["data"]["attributes"]["name"]
    if not name or len(name) >= 128:
        raise bad_request(
            "The metric name must be 1 to 127 characters.", pointer=f"{where}/metric/data/attributes/name"
        )
    if a.get("time") is not None:
        ts = datetime.fromisoformat(a["time"].replace("Z", "+00:00"))
        if ts.tzinfo is None:
            raise bad_request("time must include a time zone offset.", pointer=f"{where}/time")
        if not EPOCH_1990 < ts.timestamp() <= now + YEAR:
            raise bad_request("time must be after 1990 and at most 1 year in the future.", pointer=f"{where}/time")
    if len(a["properties"]) > MAX_EVENT_PROPERTIES:
        raise bad_request("An event may have at most 400 properties.", pointer=f"{where}/properties")
    if any(isinstance(s, str) and len(s.encode()) > MAX_STRING for s in _strings(a["properties"])):
        raise bad_request("A string may not exceed 100KB.", pointer=f"{where}/properties")


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
