"""The sandbox's mutable state: small overlays on top of the generated dataset.

Generated data never changes; everything a client (or a test) does lands in overlays:
patched records (touch, imports), new profiles/events/lists, membership adds/removals,
bulk import jobs, OAuth grants, plus a bounded request log and counters.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from collections import Counter, deque
from typing import Any, cast

from . import gen_events
from .config import SandboxConfig
from .data import Dataset
from .query import Caches
from .sources import EventsSource, MembersSource, ProfilesSource, SmallSource
from .util import Rng, h, iso, salt, uuid_from

PROFILE_ATTRS = (
    "email",
    "phone_number",
    "external_id",
    "first_name",
    "last_name",
    "organization",
    "locale",
    "title",
    "image",
)
UPDATED_FIELD = {"campaign": "updated_at"}
STREAM_KINDS = {
    "profiles": "profile",
    "events": "event",
    "campaigns": "campaign",
    "flows": "flow",
    "lists": "list",
    "segments": "segment",
    "metrics": "metric",
    "reviews": "review",
}
# Content collections (gen_content) a touch can change: their change-time attribute.
CONTENT_TOUCH = {"templates": "updated", "forms": "updated_at", "images": "updated_at"}


class Store:
    def __init__(self, cfg: SandboxConfig):
        self.cfg = cfg
        self.ds = Dataset(cfg)
        self.lock = threading.RLock()
        self.caches = Caches()
        self.version = 0  # bumped on every mutation; keys the overlay caches
        self._t0 = time.monotonic()
        self.skipped = 0.0  # seconds tests moved the clock forward (advance)
        self._seq = itertools.count(1)
        self.profile_patch: dict = {}  # generated index -> patched profile record
        self.new_profiles: dict = {}  # id -> profile record created by imports
        self.identifiers: dict[str, dict] = {f: {} for f in ("email", "phone_number", "external_id")}  # value -> id
        self.new_events: list = []
        self.small_patch: dict[str, dict] = {k: {} for k in ("campaign", "flow", "list", "segment", "metric", "review")}
        self.new_lists: dict = {}  # id -> list record created via POST /api/lists
        self.content_patch: dict[str, dict] = {k: {} for k in CONTENT_TOUCH}  # content kind -> index -> touched record
        self.deleted_lists: set = set()  # ids of generated lists deleted via DELETE /api/lists/{id}
        self.added: dict = {}  # list id -> {profile id: (joined ts, seq)}
        self.suppressed: dict = {}  # list id -> {generated profile index} hidden from the base set
        self.request_log: deque[dict] = deque(maxlen=cfg.request_log_size)
        self.counters: Counter = Counter()
        self.touches = 0
        self.jobs: Any = None  # set by the server (JobManager)
        self.bulk: Any = None  # set by the server (bulk.BulkWrites: consent, suppression, event jobs)
        self.consent: dict = {}  # profile id -> {channel: {consent, timestamp}, "suppression": [...]}
        self.tracked_events: list = []  # events from bulk_create_events
        self.tracked_keys: set = set()  # (profile id, metric name, unique_id) already recorded
        self.oauth: Any = None  # set by the server (OAuthServer)

    # ------------------------------------------------------------ clock
    def now(self) -> float:
        """Virtual clock: `--now` plus real time elapsed since start (always after generated data);
        with `--now now`, the real clock."""
        if self.cfg.real_clock:
            return time.time() + self.skipped
        return self.ds.now + (time.monotonic() - self._t0) + self.skipped

    def advance(self, seconds: float) -> None:
        """Move the data clock forward (a test's way to let minutes pass: import jobs progress and finish).
        OAuth tokens age by `oauth.clock`, which a test sets itself."""
        self.skipped += seconds

    def _bump(self):
        self.version += 1

    def next_seq(self) -> int:
        return next(self._seq)

    # ------------------------------------------------------------ sources
    def source(self, stream: str, group_id: str | None = None):
        if stream == "profiles":
            return ProfilesSource(self)
        if stream == "events":
            return EventsSource(self)
        if stream in ("list-members", "segment-members"):
            return MembersSource(self, stream.split("-")[0], cast(str, group_id))  # the API passes the id
        return SmallSource(self, STREAM_KINDS[stream])

    # ------------------------------------------------------------ profiles
    def profile_by_index(self, i: int) -> dict:
        return self.profile_patch.get(i) or self.ds.profile(i)

    def get_profile(self, pid: str) -> dict | None:
        rec = self.new_profiles.get(pid)
        if rec is not None:
            return rec
        i = self.ds.profile_index(pid)
        return None if i is None else self.profile_by_index(i)

    def find_profile(self, field: str, value: str) -> dict | None:
        """Look a profile up by email / phone_number / external_id (case-insensitive)."""
        if not isinstance(value, str):
            return None
        pid = self.identifiers[field].get(value.lower())
        if pid is not None:
            rec = self.get_profile(pid)
            if rec is not None and (rec["attributes"].get(field) or "").lower() == value.lower():
                return rec
        i = self.ds.index_from_identifier(field, value)
        if i is not None:
            rec = self.profile_by_index(i)
            if (rec["attributes"].get(field) or "").lower() == value.lower():
                return rec
        return None

    def upsert_profile(self, attrs: dict, pid: str | None = None, unset: tuple = ()) -> tuple[dict, bool]:
        """Bulk-import upsert: match by id, email, phone, external_id; nulls never clear fields;
        ``unset`` (meta.patch_properties.unset) removes custom properties."""
        with self.lock:
            rec = self.get_profile(pid) if pid else None
            for field in ("email", "phone_number", "external_id"):
                if rec is None and attrs.get(field):
                    rec = self.find_profile(field, attrs[field])
            now = self.now()
            created = rec is None
            rec = self._new_profile(now) if rec is None else copy.deepcopy(rec)
            a = rec["attributes"]
            for k in PROFILE_ATTRS:
                if attrs.get(k) is not None:
                    a[k] = attrs[k].lower() if k == "email" else attrs[k]
            for k in ("location", "properties"):
                if isinstance(attrs.get(k), dict):
                    merged = dict(a.get(k) or {})
                    merged.update({kk: v for kk, v in attrs[k].items() if v is not None})
                    a[k] = merged
            if unset:
                a["properties"] = {k: v for k, v in (a.get("properties") or {}).items() if k not in unset}
            a["updated"] = iso(now)
            self._store_profile(rec)
            return rec, created

    def _new_profile(self, now: float) -> dict:
        seq = self.next_seq()
        pid = self.ds.profile_ids.id(self.ds.n_profiles + seq, now)
        attrs = dict.fromkeys(PROFILE_ATTRS)
        attrs.update(created=iso(now), updated=iso(now), last_event_date=None, location=None, properties={})
        return {
            "type": "profile",
            "id": pid,
            "attributes": attrs,
            "relationships": {},
            "_i": None,
            "_seq": seq,
            "_nat": self.ds.n_profiles + seq,
        }

    def _store_profile(self, rec: dict):
        rec["_seq"] = self.next_seq()  # re-sequenced so its new position sorts after older edits
        if rec.get("_i") is not None:
            rec["_nat"] = rec["_i"]
            self.profile_patch[rec["_i"]] = rec
        else:
            self.new_profiles[rec["id"]] = rec
        for field in self.identifiers:
            value = rec["attributes"].get(field)
            if value:
                self.identifiers[field][value.lower()] = rec["id"]
        self._bump()

    # ------------------------------------------------------------ consent (bulk.py)
    def change_consent(self, pid: str, channels: dict, *, lift: tuple = (), add_suppression: str | None = None):
        """Set {channel: (consent, timestamp)}; lift email suppressions with these reasons; add one."""
        with self.lock:
            state = self.consent.setdefault(pid, {"suppression": []})
            for channel, (consent, stamp) in channels.items():
                state[channel] = {"consent": consent, "timestamp": stamp}
            state["suppression"] = [s for s in state["suppression"] if s["reason"] not in lift]
            if add_suppression and not any(s["reason"] == add_suppression for s in state["suppression"]):
                state["suppression"].append({"reason": add_suppression, "timestamp": iso(self.now())})
            self._bump()

    def subscriptions(self, prof: dict) -> dict:
        """The profile's `subscriptions`: generated, with what consent operations changed on top."""
        subs = self.ds.subscriptions(prof.get("_i"), prof)
        state = self.consent.get(prof["id"])
        if not state:
            return subs
        subs = copy.deepcopy(subs)
        email = subs["email"]["marketing"]
        if "email_marketing" in state:
            change = state["email_marketing"]
            email.update(
                consent=change["consent"],
                consent_timestamp=change["timestamp"],
                last_updated=change["timestamp"],
                method="API",
            )
        email["suppression"] = state["suppression"]
        email["can_receive_email_marketing"] = email.get("consent") == "SUBSCRIBED" and not state["suppression"]
        for name, kind in (("sms_marketing", "marketing"), ("sms_transactional", "transactional")):
            if name in state:
                change = state[name]
                subs["sms"][kind] = {
                    **(subs["sms"].get(kind) or {}),
                    "consent": change["consent"],
                    "consent_timestamp": change["timestamp"],
                    "last_updated": change["timestamp"],
                    "method": "API",
                    "method_detail": "",
                    f"can_receive_sms_{kind}": change["consent"] == "SUBSCRIBED",
                }
        return subs

    # ------------------------------------------------------------ events
    def add_event(
        self,
        profile_id: str | None = None,
        metric_index: int | None = None,
        at: float | None = None,
        properties: dict | None = None,
    ) -> dict:
        """A new event, dated now or at `at` (a late-arriving event: written now, dated earlier);
        ``properties`` replaces the generated ones (tests set attribution)."""
        with self.lock:
            seq = self.next_seq()
            ds, now = self.ds, self.now() if at is None else at
            r = Rng(h(ds.seed, salt("new-event"), seq))
            k = metric_index if metric_index is not None else ds.metric_for(r)
            pid = profile_id or ds.profile_id(r.int(0, ds.n_profiles - 1))
            name = ds.small("metric", k)["attributes"]["name"]
            eid = ds.event_ids.id(ds.n_events + seq)
            rec = {
                "type": "event",
                "id": eid,
                "attributes": {
                    "timestamp": int(now),
                    "event_properties": properties
                    if properties is not None
                    else gen_events.attributed(ds, name, r, seq),
                    "datetime": iso(now),
                    "uuid": uuid_from(r.bits64(), r.bits64()),
                },
                "relationships": {
                    "profile": {"type": "profile", "id": pid},
                    "metric": {"type": "metric", "id": ds.metric_ids.id(k)},
                    "attributions": None,
                },
                "_i": None,
                "_seq": seq,
                "_nat": ds.n_events + seq,
                "_x": {"metric_id": ds.metric_ids.id(k), "profile_id": pid, "profile": 1, "metric": 1},
            }
            self.new_events.append(rec)
            self._bump()
            return rec

    # ------------------------------------------------------------ lists & segments
    def group_record(self, kind: str, gid: str) -> dict | None:
        if kind == "list" and gid in self.new_lists:
            return self.new_lists[gid]
        if kind == "list" and gid in self.deleted_lists:
            return None
        j = self.ds.group_index(kind, gid)
        if j is None:
            return None
        return self.small_patch[kind].get(j) or self.ds.small(kind, j)

    def small_record(self, kind: str, k: int) -> dict:
        """A campaign, flow... as served now (touched ones included)."""
        return self.small_patch[kind].get(k) or self.ds.small(kind, k)

    def create_list(self, name: str, opt_in_process: str | None) -> dict:
        with self.lock:
            seq, now = self.next_seq(), self.now()
            lid = self.ds.list_ids.id(self.ds.n_lists + seq)
            rec = {
                "type": "list",
                "id": lid,
                "attributes": {
                    "name": name,
                    "created": iso(now),
                    "updated": iso(now),
                    "opt_in_process": opt_in_process,
                },
                "relationships": {"profiles": None, "tags": None, "flow-triggers": None},
                "_i": None,
                "_seq": seq,
                "_nat": self.ds.n_lists + seq,
            }
            self.new_lists[lid] = rec
            self._bump()
            return rec

    def delete_list(self, gid: str) -> bool:
        """Delete a list (created or generated); False when there is no such list."""
        with self.lock:
            if gid in self.new_lists:
                del self.new_lists[gid]
            elif self.group_record("list", gid) is not None:
                self.deleted_lists.add(gid)
            else:
                return False
            self.added.pop(gid, None)
            self._bump()
            return True

    def _base_member(self, gid: str, pid: str) -> int | None:
        """Generated profile index if `pid` is in the generated membership of list `gid`."""
        j = self.ds.group_index("list", gid)
        i = self.ds.profile_index(pid)
        if j is None or i is None or not self.ds.is_member(self.ds.group("list", j), i):
            return None
        return i

    def is_member(self, gid: str, pid: str) -> bool:
        if pid in self.added.get(gid, {}):
            return True
        i = self._base_member(gid, pid)
        return i is not None and i not in self.suppressed.get(gid, ())

    def add_members(self, gid: str, pids: list) -> int:
        """Set semantics: adding an existing member keeps its original joined_group_at."""
        with self.lock:
            changed = 0
            for pid in pids:
                if self.is_member(gid, pid):
                    continue
                i = self._base_member(gid, pid)
                if i is not None:  # re-added after removal: it joins again, now
                    self.suppressed.setdefault(gid, set()).add(i)
                self.added.setdefault(gid, {})[pid] = (self.now(), self.next_seq())
                changed += 1
            if changed:
                self._bump()
            return changed

    def remove_members(self, gid: str, pids: list) -> int:
        with self.lock:
            changed = 0
            for pid in pids:
                was = self.is_member(gid, pid)
                self.added.get(gid, {}).pop(pid, None)
                i = self._base_member(gid, pid)
                if i is not None:
                    self.suppressed.setdefault(gid, set()).add(i)
                changed += was
            if changed:
                self._bump()
            return changed

    def member_count(self, gid: str) -> int:
        j = self.ds.group_index("list", gid)
        base = self.ds.member_count(self.ds.group("list", j)) if j is not None else 0
        return base - len(self.suppressed.get(gid, ())) + len(self.added.get(gid, {}))

    def member_ids(self, gid: str, kind: str = "list") -> list:
        """All member profile ids (test helper; scans the generated profiles)."""
        src = self.source(f"{kind}-members", gid)
        ids = [src.record(i)["id"] for i in range(src.n) if src.alive(i)]
        return ids + [r["id"] for r in src.overlay()]

    # ------------------------------------------------------------ touch
    def touch(self, stream: str, n: int) -> dict:
        """Set `updated` of n records to now (profiles & small collections) and add n events."""
        if stream in CONTENT_TOUCH:
            return self._touch_content(stream, n)
        kind = STREAM_KINDS.get(stream)
        if kind is None:
            raise ValueError(f"unknown stream {stream!r}; choose from {', '.join([*STREAM_KINDS, *CONTENT_TOUCH])}")
        with self.lock:
            self.touches += 1
            r = Rng(h(self.ds.seed, salt("touch"), self.touches))
            touched: list = []
            if kind == "profile":
                for i in (
                    r.sample(range(self.ds.n_profiles), n)
                    if self.ds.n_profiles <= 100_000
                    else [r.int(0, self.ds.n_profiles - 1) for _ in range(n)]
                ):
                    rec = copy.deepcopy(self.profile_by_index(i))
                    rec["attributes"]["updated"] = iso(self.now())
                    props = rec["attributes"].setdefault("properties", {})
                    props["lifetime_orders"] = int(props.get("lifetime_orders") or 0) + 1
                    self._store_profile(rec)
                    touched.append(rec["id"])
            elif kind != "event":
                touched = self._touch_small(kind, r, n)
            profiles = touched if kind == "profile" else [None] * n
            events = [
                self.add_event(profile_id=profiles[k % len(profiles)] if profiles else None)["id"] for k in range(n)
            ]
            return {"stream": stream, "touched": touched, "events": events}

    def archive(self, stream: str, n: int) -> list:
        """Archive n live campaigns or flows, as Klaviyo's UI does: `archived` true, updated now."""
        kind = {"campaigns": "campaign", "flows": "flow"}.get(stream)
        if kind is None:
            raise ValueError(f"only campaigns and flows can be archived, not {stream!r}")
        with self.lock:
            self.touches += 1
            r = Rng(h(self.ds.seed, salt("archive"), self.touches))
            live = [
                j
                for j in range(self.ds.small_count(kind))
                if not (self.small_patch[kind].get(j) or self.ds.small(kind, j))["attributes"]["archived"]
            ]
            field, natural = UPDATED_FIELD.get(kind, "updated"), SmallSource(self, kind).natural
            out = []
            for j in r.sample(live, min(n, len(live))):
                rec = copy.deepcopy(self.small_patch[kind].get(j) or self.ds.small(kind, j))
                rec["attributes"].update({"archived": True, field: iso(self.now())})
                rec["_seq"], rec["_nat"] = self.next_seq(), natural(j)
                self.small_patch[kind][j] = rec
                out.append(rec["id"])
            self._bump()
            return out

    def content_records(self, kind: str) -> list:
        """A content collection as served now: generated records, touched ones replaced."""
        records = self.ds.content.records(kind)
        patch = self.content_patch.get(kind)
        return [patch.get(rec["_i"], rec) for rec in records] if patch else records

    def _touch_content(self, stream: str, n: int) -> dict:
        """Set the change time of n templates/forms/images to now (no events)."""
        with self.lock:
            self.touches += 1
            r = Rng(h(self.ds.seed, salt("touch"), self.touches))
            records = self.content_records(stream)
            touched = []
            for rec in r.sample(records, min(n, len(records))):
                rec = copy.deepcopy(rec)
                rec["attributes"][CONTENT_TOUCH[stream]] = iso(self.now())
                rec["_seq"] = len(records) + self.next_seq()  # after every generated record of its second
                self.content_patch[stream][rec["_i"]] = rec
                touched.append(rec["id"])
            self._bump()
            return {"stream": stream, "touched": touched, "events": []}

    def _touch_small(self, kind: str, r: Rng, n: int) -> list:
        field = UPDATED_FIELD.get(kind, "updated")
        total = self.ds.small_count(kind)
        natural = SmallSource(self, kind).natural  # campaigns keep their shuffled position
        out = []
        for j in r.sample(range(total), min(n, total)):
            rec = copy.deepcopy(self.small_patch[kind].get(j) or self.ds.small(kind, j))
            rec["attributes"][field] = iso(self.now())
            rec["_seq"], rec["_nat"] = self.next_seq(), natural(j)
            self.small_patch[kind][j] = rec
            out.append(rec["id"])
        self._bump()
        return out

    # ------------------------------------------------------------ observability
    def log_request(
        self, method: str, path: str, status: int, op: str | None, fault: str | None, account: str | None = None
    ):
        self.request_log.append(
            {
                "t": round(self.now(), 3),
                "method": method,
                "path": path,
                "status": status,
                "op": op,
                "fault": fault,
                "account": account,
            }
        )
        self.counters[f"status:{status}"] += 1
        if op:
            self.counters[f"op:{op}"] += 1
        if fault:
            self.counters[f"fault:{fault}"] += 1
