"""Query engine: filter + sort + keyset pagination over generated and overlay records.

A collection is two ordered streams merged on a composite key (sort value, source, tiebreak):
  * generated records, addressed by index. When the sort field is increasing in the index
    (or order is natural), the stream is an index range narrowed by binary search on
    range filters, so a page costs O(page) regardless of scale;
  * overlay records (touched, imported, created), small, filtered and sorted per request.
The cursor is the last key emitted, so concurrent mutations don't shift pages.
"""

from __future__ import annotations

import base64
import json
import threading
import zlib
from collections import OrderedDict
from typing import ClassVar

from .data import first_index
from .filters import RANGE_OPS, Cond, compile_cond, range_bounds
from .render import bad_request
from .util import parse_ts


class Caches:
    """Per-store LRU caches (sorted permutations, filtered overlays)."""

    def __init__(self, size: int = 64):
        self.lock = threading.Lock()
        self.data: OrderedDict = OrderedDict()
        self.size = size

    def get(self, key):
        with self.lock:
            hit = self.data.get(key)
            if hit is not None:
                self.data.move_to_end(key)
            return hit

    def put(self, key, value):
        with self.lock:
            self.data[key] = value
            while len(self.data) > self.size:
                self.data.popitem(last=False)


class Source:
    """Base class for a queryable collection; subclasses fill in the data hooks.

    `cache_key` must identify the collection stably (e.g. "members:list:Xy12Ab") and
    `version()` must change whenever its overlay changes (None = don't cache).
    """

    rtype = ""
    cache_key = ""
    datetime_fields: frozenset = frozenset()
    fold_case: frozenset = frozenset({"email"})
    default_sort: str | None = None  # None = natural (index) order
    sort_alias: ClassVar[dict] = {}
    ignore_sort = False  # campaigns: Klaviyo returns them unsorted

    def __init__(self, n: int, caches: Caches, mono: dict | None = None):
        self.n = n
        self.caches = caches
        self.mono = mono or {}

    # hooks -------------------------------------------------------------
    def record(self, i: int) -> dict:
        raise NotImplementedError

    def alive(self, i: int) -> bool:
        return True

    def overlay(self) -> list:
        return []

    def version(self):
        return 0

    def candidates(self, conds: list) -> list | None:
        return None

    def natural(self, i: int) -> int:
        return i

    def natural_perm(self) -> list | None:
        return None

    def value(self, rec: dict, field: str):
        if field == "id":
            return rec["id"]
        x = rec.get("_x")
        if x and field in x:
            return x[field]
        return dig(rec["attributes"], field)


def dig(obj, path: str):
    """Dotted-path lookup; lists along the path map over their items."""
    for part in path.split("."):
        if isinstance(obj, list):
            obj = [o.get(part) if isinstance(o, dict) else None for o in obj]
        elif isinstance(obj, dict):
            obj = obj.get(part)
        else:
            return None
    return obj


def _norm(v, is_dt: bool):
    if v is None:
        return (0, 0)
    if is_dt and isinstance(v, str):
        return (1, parse_ts(v) or 0)
    if isinstance(v, list):
        v = min((x for x in v if x is not None), default=None)
        return (0, 0) if v is None else _norm(v, is_dt)
    return (1, v.lower() if isinstance(v, str) else v)


class _RangeSeq:
    def __init__(self, lo, hi, desc, keyfn):
        self.lo, self.hi, self.desc, self.keyfn = lo, hi, desc, keyfn
        self.len = max(0, hi - lo)

    def idx(self, p):
        return self.hi - 1 - p if self.desc else self.lo + p

    def key(self, p):
        i = self.idx(p)
        return (self.keyfn(i), 0, i)


class _PermSeq:
    def __init__(self, pairs, desc):  # pairs: sorted [(sortvalue, i)]
        self.pairs, self.desc, self.len = pairs, desc, len(pairs)

    def _at(self, p):
        return self.pairs[self.len - 1 - p] if self.desc else self.pairs[p]

    def idx(self, p):
        return self._at(p)[1]

    def key(self, p):
        sv, i = self._at(p)
        return (sv, 0, i)


class Page:
    __slots__ = ("next_key", "prev_key", "records")

    def __init__(self, records, next_key, prev_key):
        self.records, self.next_key, self.prev_key = records, next_key, prev_key


class Query:
    """One request's view: compiled predicate, ordered streams, cursor handling."""

    def __init__(self, src: Source, conds: list, sort: str | None):
        self.src, self.conds = src, conds
        if src.ignore_sort or not sort:
            sort, desc = src.default_sort, False
        else:
            desc = sort.startswith("-")
            sort = sort.lstrip("-")
            sort = src.sort_alias.get(sort, sort)  # e.g. profiles: id order == natural order
        self.field, self.desc = sort, desc
        self.is_dt = sort in src.datetime_fields
        self.preds = [(c.field, self._compile(c)) for c in conds]

    def _compile(self, c: Cond):
        base = compile_cond(c, c.field in self.src.datetime_fields, c.field in self.src.fold_case)
        if c.op in ("contains-any", "contains-all") or c.op == "has":
            return base
        return lambda v: any(base(x) for x in v) if isinstance(v, list) else base(v)

    def matches(self, rec, skip=()) -> bool:
        value = self.src.value
        return all(pred(value(rec, f)) for f, pred in self.preds if f not in skip)

    def sortval(self, rec):
        if self.field is None:
            return (1, rec["_nat"])
        return _norm(self.src.value(rec, self.field), self.is_dt)

    # ------------------------------------------------------------ streams
    def _gen_seq(self):
        """Ordered generated stream plus the fields whose filters it already enforces."""
        src = self.src
        cands = src.candidates(self.conds)
        if cands is not None:
            pairs = sorted((self._gen_sortval(i), i) for i in cands if 0 <= i < src.n)
            return _PermSeq(pairs, self.desc), ()
        perm = src.natural_perm() if self.field is None else None
        if perm is not None:
            return _PermSeq([((1, r), i) for r, i in perm], self.desc), ()
        if self.field is None or self.field in src.mono:
            lo, hi, done = self._narrow()
            fn = src.mono[self.field] if self.field else src.natural  # the field is in mono here
            return _RangeSeq(lo, hi, self.desc, lambda i: (1, fn(i))), done
        return _PermSeq(self._sorted_all(), self.desc), ()

    def _gen_sortval(self, i):
        if self.field is None:
            return (1, self.src.natural(i))
        if self.field in self.src.mono:
            return (1, self.src.mono[self.field](i))
        return self.sortval(self.src.record(i))

    def _narrow(self):
        lo, hi, done = 0, self.src.n, []
        # The lambdas below are called at once by first_index, inside the iteration that made them.
        for fld, fn in self.src.mono.items():
            a, a_inc, b, b_inc = range_bounds(self.conds, fld)
            if a is None and b is None:
                continue
            if a is not None:
                lo = max(lo, first_index(lo, hi, (lambda i: fn(i) >= a) if a_inc else (lambda i: fn(i) > a)))  # noqa: B023
            if b is not None:
                hi = min(hi, first_index(lo, hi, (lambda i: fn(i) > b) if b_inc else (lambda i: fn(i) >= b)))  # noqa: B023
            if all(c.op in RANGE_OPS for c in self.conds if c.field == fld):
                done.append(fld)
        return lo, max(lo, hi), tuple(done)

    def _sorted_all(self):
        """Full permutation for a sort field not monotone in the index (small collections)."""
        key = ("perm", self.src.cache_key, self.field)
        hit = self.src.caches.get(key)
        if hit is None:
            hit = sorted((self.sortval(self.src.record(i)), i) for i in range(self.src.n))
            self.src.caches.put(key, hit)
        return hit

    def _overlay(self):
        """Filtered + sorted overlay records and their keys (cached per overlay version)."""
        src = self.src
        version = src.version()
        key = ("ov", src.cache_key, version, repr(self.conds), self.field, self.desc)
        hit = src.caches.get(key) if version is not None else None
        if hit is not None:
            return hit
        recs = [r for r in src.overlay() if self.matches(r)]
        items = sorted(((self.sortval(r), 1, r["_seq"]), r) for r in recs)
        if self.desc:
            items.reverse()
        out = ([k for k, _ in items], [r for _, r in items])
        if version is not None:
            src.caches.put(key, out)
        return out

    # ------------------------------------------------------------ paging
    def page(self, size: int, cursor: tuple | None) -> Page:
        seq, done = self._gen_seq()
        ov_keys, ov_recs = self._overlay()
        backward = cursor is not None and cursor[0] == "p"
        after = (lambda a, b: a < b) if self.desc != backward else (lambda a, b: a > b)
        ckey = cursor[1] if cursor else None
        if backward:
            seq = _Reversed(seq)
            ov_keys, ov_recs = ov_keys[::-1], ov_recs[::-1]
        p = first_index(0, seq.len, lambda q: after(seq.key(q), ckey)) if ckey is not None else 0
        o = first_index(0, len(ov_keys), lambda q: after(ov_keys[q], ckey)) if ckey is not None else 0
        got = self._walk(seq, p, ov_keys, ov_recs, o, size + 1, after, done)
        more = len(got) > size
        got = got[:size]
        if backward:
            got.reverse()
            first_more, last_more = more, True
        else:
            first_more, last_more = cursor is not None, more
        recs = [r for _, r in got]

        def key(item):
            return item[0] if isinstance(item[0], tuple) else seq.key(item[0])

        next_key = key(got[-1]) if got and last_more else None
        prev_key = key(got[0]) if got and first_more else None
        return Page(recs, next_key, prev_key)

    def _walk(self, seq, p, ov_keys, ov_recs, o, want, after, done):
        """Merge the two streams; generated items carry their position (keys computed lazily)."""
        src, out, n_ov = self.src, list[tuple](), len(ov_keys)
        check = bool(self.preds) and any(f not in done for f, _ in self.preds)
        matches, alive, record, idx, length = self.matches, src.alive, src.record, seq.idx, seq.len
        while len(out) < want:
            rec = None
            while p < length:
                i = idx(p)
                if alive(i):
                    rec = record(i)
                    if rec is not None and (not check or matches(rec, done)):
                        break
                    rec = None
                p += 1
            if rec is None and o >= n_ov:
                break
            if rec is not None and (o >= n_ov or after(ov_keys[o], seq.key(p))):
                out.append((p, rec))
                p += 1
            else:
                out.append((ov_keys[o], ov_recs[o]))
                o += 1
        return out


class _Reversed:
    def __init__(self, seq):
        self.seq, self.len = seq, seq.len

    def idx(self, p):
        return self.seq.idx(self.len - 1 - p)

    def key(self, p):
        return self.seq.key(self.len - 1 - p)


# ---------------------------------------------------------------- cursors
def query_hash(path: str, params: dict) -> int:
    sig = json.dumps([path, params.get("filter"), params.get("sort")])
    return zlib.crc32(sig.encode())


def encode_cursor(direction: str, key, qhash: int) -> str:
    raw = json.dumps([direction, key, qhash], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, list) else x


def decode_cursor(text: str, qhash: int):
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        direction, key, qh = json.loads(raw)
        if direction not in ("n", "p") or not isinstance(key, list) or len(key) != 3:
            raise ValueError
    except (ValueError, TypeError, json.JSONDecodeError, UnicodeDecodeError):
        raise bad_request("Invalid page cursor.", parameter="page[cursor]") from None
    if qh != qhash:
        raise bad_request(
            "The page cursor does not belong to this query (filter or sort changed).", parameter="page[cursor]"
        )
    return direction, _tuples(key)
