"""Queryable collections over the store: generated records + overlays."""

from __future__ import annotations

from typing import Any, ClassVar, cast

from .query import Source, dig
from .util import Rng, h, iso, salt

IDENT_FIELDS = ("email", "phone_number", "external_id")
PROFILE_DT = frozenset(
    {
        "created",
        "updated",
        "last_event_date",
        "joined_group_at",
        "subscriptions.email.marketing.list_suppressions.timestamp",
        "subscriptions.email.marketing.suppression.timestamp",
    }
)


def _values(conds, field):
    """Values of equals/any conditions on `field`, or None when unconstrained."""
    out: set[str] | None = None
    for c in conds:
        if c.field == field and c.op in ("equals", "any"):
            given = c.value if isinstance(c.value, list) else [c.value]
            vals = {v for v in given if isinstance(v, str)}
            out = vals if out is None else out & vals
    return out


class ProfileMixin:
    store: Any  # the Store of the Source this is mixed into

    def value(self, rec, field):
        if field.startswith("subscriptions."):
            subs = self.store.ds.subscriptions(rec.get("_i"), rec)
            return dig(subs, field[len("subscriptions.") :])
        if field == "profile_id":
            return rec["id"]
        if field in ("push_token", "_kx"):
            return None
        return Source.value(cast(Source, self), rec, field)

    def identifier_candidates(self, conds, id_field="id"):
        """Generated indices for equality filters on identifiers (no full scan)."""
        ds, found = self.store.ds, None
        for field in (id_field,) + IDENT_FIELDS:
            vals = _values(conds, field)
            if vals is None:
                continue
            if field == id_field:
                idx = {ds.profile_index(v) for v in vals}
            else:
                idx = {ds.index_from_identifier(field, v) for v in vals}
            idx.discard(None)
            found = idx if found is None else found & idx
        return None if found is None else sorted(found)


class ProfilesSource(ProfileMixin, Source):
    rtype = "profile"
    cache_key = "profiles"
    datetime_fields = PROFILE_DT
    sort_alias: ClassVar[dict] = {"id": None}

    def __init__(self, store):
        ds = store.ds
        super().__init__(ds.n_profiles, store.caches, {"created": ds.p_created, "updated": ds.p_updated})
        self.store = store

    def record(self, i):
        return self.store.ds.profile(i)

    def alive(self, i):
        return i not in self.store.profile_patch

    def overlay(self):
        with self.store.lock:
            return list(self.store.profile_patch.values()) + list(self.store.new_profiles.values())

    def version(self):
        return self.store.version

    def candidates(self, conds):
        return self.identifier_candidates(conds)


class MembersSource(ProfileMixin, Source):
    """Profiles of one list or segment, ordered by joined_group_at."""

    rtype = "profile"
    datetime_fields = PROFILE_DT
    default_sort = "joined_group_at"

    def __init__(self, store, kind: str, group_id: str):
        ds = store.ds
        self.store, self.kind, self.gid = store, kind, group_id
        j = ds.group_index(kind, group_id)
        self.group = ds.group(kind, j) if j is not None else None
        n = ds.n_profiles if self.group else 0
        mono = {"joined_group_at": (lambda i: ds.joined_at(self.group, i))} if self.group else {}
        super().__init__(n, store.caches, mono)
        self.cache_key = f"members:{kind}:{group_id}"
        self.suppressed = store.suppressed.get(group_id, set())

    def alive(self, i):
        return self.store.ds.is_member(self.group, i) and i not in self.suppressed

    def record(self, i):
        prof = self.store.profile_by_index(i)
        return member_record(prof, iso(self.store.ds.joined_at(self.group, i)))

    def overlay(self):
        store = self.store
        with store.lock:
            added = list(store.added.get(self.gid, {}).items())
        out = []
        for pid, (ts, seq) in added:
            prof = store.get_profile(pid)
            if prof is not None:
                rec = member_record(prof, iso(ts))
                rec["_seq"] = seq
                out.append(rec)
        return out

    def version(self):
        return self.store.version

    def candidates(self, conds):
        return self.identifier_candidates(conds, id_field="profile_id")


def member_record(prof: dict, joined: str) -> dict:
    return {
        "type": "profile",
        "id": prof["id"],
        "attributes": {**prof["attributes"], "joined_group_at": joined},
        "relationships": {"lists": None, "segments": None, "push-tokens": None},
        "_i": prof.get("_i"),
        "_profile": prof,
        "_seq": 0,
        "_nat": 0,
    }


class EventsSource(Source):
    rtype = "event"
    cache_key = "events"
    datetime_fields = frozenset({"datetime"})
    default_sort = "datetime"
    sort_alias: ClassVar[dict] = {"timestamp": "datetime"}

    def __init__(self, store):
        ds = store.ds
        super().__init__(ds.n_events, store.caches, {"datetime": ds.e_datetime, "timestamp": ds.e_datetime})
        self.store = store

    def record(self, i):
        return self.store.ds.event(i)

    def overlay(self):
        with self.store.lock:
            return list(self.store.new_events)

    def version(self):
        return self.store.version


class SmallSource(Source):
    """Campaigns, flows, lists, segments, metrics, reviews: generated + patched + created."""

    DT: ClassVar[dict[str, set[str]]] = {
        "campaign": {"created_at", "updated_at", "scheduled_at"},
        "flow": {"created", "updated"},
        "list": {"created", "updated"},
        "segment": {"created", "updated"},
        "review": {"created", "updated"},
        "metric": {"created", "updated"},
    }

    def __init__(self, store, kind: str):
        ds = store.ds
        mono = {"created": ds.r_created} if kind == "review" else {}
        super().__init__(ds.small_count(kind), store.caches, mono)
        self.store, self.kind, self.rtype = store, kind, kind
        self.cache_key = f"small:{kind}"
        self.datetime_fields = frozenset(self.DT[kind])
        self.ignore_sort = kind == "campaign"
        self.patch = store.small_patch[kind]

    def record(self, i):
        return self.store.ds.small(self.kind, i)

    def alive(self, i):
        if (
            self.kind == "list"
            and self.store.deleted_lists
            and self.store.ds.small(self.kind, i)["id"] in self.store.deleted_lists
        ):
            return False
        return i not in self.patch

    def overlay(self):
        with self.store.lock:
            recs = list(self.patch.values())
            if self.kind == "list":
                recs = [r for r in recs if r["id"] not in self.store.deleted_lists]
                recs += list(self.store.new_lists.values())
        return recs

    def version(self):
        return self.store.version

    def value(self, rec, field):
        if self.kind == "review" and field == "status":  # {"value": "published", ...} -> "published"
            return (rec["attributes"].get("status") or {}).get("value")
        return Source.value(cast(Source, self), rec, field)

    def candidates(self, conds):
        vals = _values(conds, "id")
        if vals is None:
            return None
        codec = {
            "list": self.store.ds.list_ids,
            "segment": self.store.ds.segment_ids,
            "flow": self.store.ds.flow_ids,
            "metric": self.store.ds.metric_ids,
            "review": self.store.ds.review_ids,
        }.get(self.kind)
        if codec is None:
            return None
        return sorted({i for i in (codec.index(v) for v in vals) if i is not None and i < self.n})

    def natural(self, i):
        return self._ranks()[i] if self.kind == "campaign" else i

    def natural_perm(self):
        if self.kind != "campaign":
            return None
        ranks = self._ranks()
        return sorted((r, i) for i, r in enumerate(ranks))

    def _ranks(self):
        """Deterministic shuffle: Klaviyo returns campaigns in no particular order."""
        key = ("ranks", self.store.ds.seed, self.n)
        hit = self.caches.get(key)
        if hit is None:
            order = list(range(self.n))
            r = Rng(h(self.store.ds.seed, salt("campaign-order")))
            for k in range(self.n - 1, 0, -1):
                m = r.int(0, k)
                order[k], order[m] = order[m], order[k]
            hit = [0] * self.n
            for rank, i in enumerate(order):
                hit[i] = rank
            self.caches.put(key, hit)
        return hit


class ListSource(Source):
    """A plain in-memory list of records (jobs, import errors)."""

    def __init__(self, store, rtype: str, recs: list, datetime_fields=(), version=None, key=""):
        super().__init__(0, store.caches)
        self.rtype, self.recs, self._version = rtype, recs, version
        self.datetime_fields = frozenset(datetime_fields)
        self.cache_key = key

    def overlay(self):
        return self.recs

    def version(self):
        return self._version


CONTENT_DT = {
    "templates": ("created", "updated"),
    "images": ("updated_at",),
    "forms": ("created_at", "updated_at"),
    "catalog-items": ("created", "updated"),
    "catalog-variants": ("created", "updated"),
    "catalog-categories": ("updated",),
    "coupon-codes": ("expires_at",),
    "flow-messages": ("created", "updated"),
}


class ContentSource(Source):
    """A generated content collection (klaviyo_sandbox.gen_content), filtered and sorted per request.

    Small collections, so the records are one in-memory list; `sort=created` on catalog
    resources and every other sort work on it, unsorted requests keep generation order.
    """

    def __init__(self, store, kind: str, recs: list | None = None, key: str | None = None):
        super().__init__(0, store.caches)
        self.store, self.kind = store, kind
        self.rtype = kind.rstrip("s") if kind != "catalog-categories" else "catalog-category"
        self.recs = recs if recs is not None else store.content_records(kind)
        self.datetime_fields = frozenset(CONTENT_DT.get(kind, ()))
        self.cache_key = key or f"content:{kind}"

    def overlay(self):
        for rec in self.recs:
            rec.setdefault("_seq", rec["_i"])
            rec.setdefault("_nat", rec["_i"])
        return self.recs

    def version(self):
        return self.store.version
