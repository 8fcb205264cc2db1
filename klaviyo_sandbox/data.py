"""Deterministic, lazily generated Klaviyo account data.

Every generated record is a pure function of (seed, kind, index): nothing is stored
per record, so memory does not grow with `scale`. Timestamps that endpoints filter or
sort on (profile created/updated, event datetime, review created, joined_group_at)
are strictly increasing in the index, so range filters become binary searches.
Records are dicts: {"type", "id", "attributes", "relationships": {name: data|None},
"_i": generated index, "_x": hidden filter values}.
"""

from __future__ import annotations

import bisect
import functools

from . import gen_catalog, gen_content, gen_events, gen_profiles
from .config import SandboxConfig
from .util import B32, B62, AffineCodec, Rng, UlidCodec, h, iso, mix, salt

DAY = 86400
YEAR = 365 * DAY

# (name, membership probability). Awkward names on purpose: case-only duplicates,
# exact duplicates, slashes, quotes, commas, emoji, padding, an empty list.
LIST_SEEDS = [
    ("Newsletter", 0.6),
    ("newsletter", 0.05),
    ("VIP / Whales 🐋", 0.04),
    ("Summer Sale ☀️ 2026", 0.3),
    ("Duplicate Name", 0.1),
    ("Duplicate Name", 0.12),
    ("Empty List", 0.0),
    ("  padded name  ", 0.02),
    ("O'Reilly's \"quoted\" list", 0.05),
    ("a,b (comma) list", 0.05),
    ("Ünïcödé Ŀïşţ", 0.1),
    ("back\\slash list", 0.03),
]
SEGMENT_SEEDS = [
    ("Engaged (90 days)", 0.35),
    ("engaged (90 days)", 0.2),
    ("Big spenders 💰", 0.05),
    ("Churn risk / win-back", 0.15),
    ("All profiles", 1.0),
    ("Empty segment", 0.0),
]


def count(base: float, scale: float, minimum: int) -> int:
    return max(minimum, round(base * scale))


def mono(i: int, n: int, start: int, end: int, s: int) -> int:
    """Strictly increasing timestamps in [start, end): grid point + jitter below one step."""
    span = end - start
    step = span // n
    jitter = mix(s ^ i) % step if step > 1 else 0
    return start + (i * span) // n + jitter


def first_index(lo: int, hi: int, pred) -> int:
    """Smallest i in [lo, hi) with pred(i) true, pred monotone False..True; hi if none."""
    while lo < hi:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


class Group:
    """A generated list or segment (small: kept as plain attributes)."""

    __slots__ = ("created", "hsalt", "id", "j", "kind", "name", "opt_in", "threshold", "updated")

    def __init__(self, kind, j, ident, name, created, updated, p, hsalt, opt_in):
        self.kind, self.j, self.id, self.name = kind, j, ident, name
        self.created, self.updated, self.opt_in = created, updated, opt_in
        self.threshold = int(p * 18446744073709551616.0)
        self.hsalt = hsalt


class Dataset:
    def __init__(self, cfg: SandboxConfig):
        self.cfg = cfg
        self.seed = seed = cfg.seed
        self.now = cfg.now_ts
        sc = cfg.scale
        self.n_profiles = count(2000, sc, 20)
        self.n_events = count(20000, sc, 50)
        self.n_campaigns = count(30, sc, 9)  # 3 per channel, one archived
        self.n_flows = count(10, sc, 5)  # one archived at least
        self.n_lists = count(25, sc, len(LIST_SEEDS))
        self.n_segments = count(12, sc, len(SEGMENT_SEEDS))
        self.n_metrics = count(40, sc, len(gen_catalog.METRIC_NAMES))  # every named metric at any scale
        self.n_reviews = count(300, sc, 10)
        self.profile_ids = UlidCodec(seed, "profile")
        self.event_ids = AffineCodec(seed, "event", B62, 10)
        self.campaign_ids = UlidCodec(seed, "campaign")
        self.message_ids = UlidCodec(seed, "campaign-message")
        self.flow_ids = AffineCodec(seed, "flow", B62, 6)
        self.list_ids = AffineCodec(seed, "list", B62, 6)
        self.segment_ids = AffineCodec(seed, "segment", B62, 6)
        self.metric_ids = AffineCodec(seed, "metric", B62, 6)
        self.review_ids = AffineCodec(seed, "review", B32, 13, prefix="rv")
        self.account_id = AffineCodec(seed, "account", B62, 6).id(0)
        self.t_start = self.now - 3 * YEAR  # account "opened"
        self._rng_keys: dict = {}
        self._s_pc, self._s_pu, self._s_ev, self._s_rv = (h(seed, k) for k in (11, 12, 21, 31))
        # Zipf-like metric popularity for events: a few metrics dominate, like real accounts.
        acc, self.metric_cdf = 0.0, []
        for k in range(self.n_metrics):
            acc += 1.0 / (k + 1)
            self.metric_cdf.append(acc)
        self.profile = functools.lru_cache(maxsize=4096)(self._profile)
        self.profile_id = functools.lru_cache(maxsize=1 << 16)(self._profile_id)
        self.metric_id = functools.lru_cache(maxsize=1 << 12)(self.metric_ids.id)
        self.event = functools.lru_cache(maxsize=256)(self._event)
        self.event_payload = functools.lru_cache(maxsize=8192)(lambda k, v: gen_events.payload(self, k, v))
        self.small = functools.lru_cache(maxsize=8192)(self._small)
        self.group = functools.lru_cache(maxsize=4096)(self._group)
        self._member_counts: dict = {}
        self.content = gen_content.Content(self)  # messages, flow actions, templates, catalog... (gen_content)

    def clear_caches(self):
        """Drop the bounded LRU caches (memory measurements, benchmarks)."""
        for fn in (
            self.profile,
            self.profile_id,
            self.metric_id,
            self.event,
            self.event_payload,
            self.small,
            self.group,
        ):
            fn.cache_clear()

    def rng(self, kind: str, i: int) -> Rng:
        """Per-record RNG for (seed, kind, i): one hash per record."""
        key = self._rng_keys.get(kind)
        if key is None:
            key = self._rng_keys[kind] = h(self.seed, salt(kind))
        return Rng(mix(key ^ i))

    # ------------------------------------------------------------ profiles
    def p_created(self, i: int) -> int:
        return mono(i, self.n_profiles, self.t_start, self.now - 30 * DAY, self._s_pc)

    def p_updated(self, i: int) -> int:
        u = mono(i, self.n_profiles, self.now - 2 * YEAR, self.now - DAY, self._s_pu)
        return max(u, self.p_created(i))  # max of two increasing sequences is increasing

    def _profile_id(self, i: int) -> str:
        return self.profile_ids.id(i, self.p_created(i))

    def profile_index(self, ident: str) -> int | None:
        i = self.profile_ids.index(ident)
        if i is None or i >= self.n_profiles or self.profile_id(i) != ident:
            return None
        return i

    def _profile(self, i: int) -> dict:
        return gen_profiles.profile(self, i)

    def subscriptions(self, i: int | None, rec: dict) -> dict:
        return gen_profiles.subscriptions(self, i, rec)

    def predictive(self, i: int | None) -> dict:
        return gen_profiles.predictive(self, i)

    def index_from_identifier(self, field: str, value: str) -> int | None:
        """Generated profile index owning an email/phone/external_id, else None."""
        i = gen_profiles.parse_identifier(field, value)
        if i is None or i >= self.n_profiles:
            return None
        own = self.profile(i)["attributes"].get(field)
        return i if own is not None and own.lower() == value.lower() else None

    # ------------------------------------------------------------ events
    def e_datetime(self, i: int) -> int:
        if i == self.n_events - 1:
            return self.now + YEAR  # deliberately future-dated (clock skew / bad source data)
        return mono(i, self.n_events - 1, self.now - YEAR, self.now - 3600, self._s_ev)

    def event_index(self, ident: str) -> int | None:
        i = self.event_ids.index(ident)
        return i if i is not None and i < self.n_events else None

    def _event(self, i: int) -> dict:
        return gen_events.event(self, i)

    def metric_for(self, r: Rng) -> int:
        return min(bisect.bisect(self.metric_cdf, r.u() * self.metric_cdf[-1]), self.n_metrics - 1)

    # ------------------------------------------------------------ reviews
    def r_created(self, i: int) -> int:
        return mono(i, self.n_reviews, self.now - 2 * YEAR, self.now - DAY, self._s_rv)

    # ------------------------------------------------------------ small collections
    def _small(self, kind: str, i: int) -> dict:
        return gen_catalog.GENERATORS[kind](self, i)

    def small_count(self, kind: str) -> int:
        return {
            "campaign": self.n_campaigns,
            "flow": self.n_flows,
            "metric": self.n_metrics,
            "review": self.n_reviews,
            "list": self.n_lists,
            "segment": self.n_segments,
        }[kind]

    # ------------------------------------------------------------ lists & segments
    def group_codec(self, kind: str) -> AffineCodec:
        return self.list_ids if kind == "list" else self.segment_ids

    def group_index(self, kind: str, ident: str) -> int | None:
        j = self.group_codec(kind).index(ident)
        n = self.n_lists if kind == "list" else self.n_segments
        return j if j is not None and j < n else None

    def _group(self, kind: str, j: int) -> Group:
        seeds = LIST_SEEDS if kind == "list" else SEGMENT_SEEDS
        r = self.rng(kind, j)
        if j < len(seeds):
            name, p = seeds[j]
        else:
            audience = r.choice(["Leads", "Buyers", "Repeat", "Region EU", "Region US", "Prospects"])
            name = f"{'List' if kind == 'list' else 'Segment'} {j:03d} {audience}"
            p = r.choice([0.01, 0.03, 0.08, 0.15, 0.25, 0.4])
        created = self.t_start + r.int(0, 2 * YEAR)
        updated = created + r.int(0, self.now - DAY - created)
        opt_in = r.choice(["single_opt_in", "double_opt_in"]) if kind == "list" else None
        return Group(
            kind,
            j,
            self.group_codec(kind).id(j),
            name,
            created,
            updated,
            p,
            h(self.seed, salt(kind + "-members"), j),
            opt_in,
        )

    def is_member(self, g: Group, i: int) -> bool:
        return mix(g.hsalt ^ i) < g.threshold

    def joined_at(self, g: Group, i: int) -> int:
        """Join time, increasing in i, within [group created, now - 1 day]."""
        return mono(i, self.n_profiles, g.created, self.now - DAY, g.hsalt)

    def member_count(self, g: Group) -> int:
        """Generated members of a group (O(n_profiles) once, then cached)."""
        key = (g.kind, g.j)
        if key not in self._member_counts:
            self._member_counts[key] = sum(1 for i in range(self.n_profiles) if self.is_member(g, i))
        return self._member_counts[key]

    def iso(self, ts: float) -> str:
        return iso(ts)
