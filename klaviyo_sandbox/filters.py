"""Klaviyo's `filter=` language: parse, validate against an endpoint, compile to predicates.

Grammar (what the official SDK's FilterBuilder emits, plus `and(...)`):
    expr  := cond ("," cond)*                      -- comma = AND
    cond  := op "(" field ["," value] ")" | "and(" expr ")"
    value := 'str' | "str" | [value, ...] | true | false | null | number | ISO datetime
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn

from .endpoints import FieldSpec
from .util import parse_ts

OPERATORS = {
    "equals",
    "less-than",
    "less-or-equal",
    "greater-than",
    "greater-or-equal",
    "contains",
    "contains-any",
    "contains-all",
    "ends-with",
    "starts-with",
    "any",
    "has",
}
RANGE_OPS = {"greater-than", "greater-or-equal", "less-than", "less-or-equal"}
_NUM = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?$")
_SPACED_OFFSET = re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+ \d\d:\d\d$")
_IDENT = re.compile(r"[A-Za-z0-9_.$-]+")


class FilterError(ValueError):
    """Invalid filter; message is the Klaviyo-like `detail` of a 400."""


@dataclass(frozen=True)
class Dt:
    """An unquoted datetime literal; `ts` is epoch seconds."""

    ts: float
    text: str


@dataclass(frozen=True)
class Cond:
    op: str
    field: str
    value: object = None
    has_value: bool = True


class _Parser:
    def __init__(self, text: str):
        self.s, self.i = text, 0

    def fail(self, msg: str) -> NoReturn:
        raise FilterError(f"Invalid filter provided: {msg} (at position {self.i} of {self.s!r}).")

    def ws(self):
        while self.i < len(self.s) and self.s[self.i] in " \t\r\n":
            self.i += 1

    def peek(self) -> str:
        self.ws()
        return self.s[self.i] if self.i < len(self.s) else ""

    def expect(self, ch: str):
        if self.peek() != ch:
            self.fail(f"expected {ch!r}")
        self.i += 1

    def expr(self, closing: str = "") -> list[Cond]:
        conds = self.cond()
        while self.peek() == ",":
            self.i += 1
            conds += self.cond()
        if self.peek() != closing:
            self.fail("unexpected trailing input")
        return conds

    def cond(self) -> list[Cond]:
        self.ws()
        m = re.compile(r"[a-z-]+").match(self.s, self.i)
        if not m:
            self.fail("expected an operator")
        op = m.group(0)
        self.i = m.end()
        self.expect("(")
        if op == "and":
            conds = self.expr(")")
            self.i += 1
            return conds
        if op not in OPERATORS:
            raise FilterError(f"Invalid filter provided: unknown operator '{op}'.")
        self.ws()
        m = _IDENT.match(self.s, self.i)
        if not m:
            self.fail("expected a field name")
        fld = m.group(0)
        self.i = m.end()
        if self.peek() == ")":
            self.i += 1
            return [Cond(op, fld, None, False)]
        self.expect(",")
        value = self.value()
        self.expect(")")
        return [Cond(op, fld, value, True)]

    def value(self):
        ch = self.peek()
        if ch in ("'", '"'):
            return self.string(ch)
        if ch == "[":
            self.i += 1
            items: list = []
            if self.peek() == "]":
                self.i += 1
                return items
            while True:
                items.append(self.value())
                if self.peek() == ",":
                    self.i += 1
                    continue
                self.expect("]")
                return items
        return self.bare()

    def string(self, quote: str) -> str:
        self.i += 1
        out = []
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == "\\" and self.i + 1 < len(self.s):
                out.append(self.s[self.i + 1])
                self.i += 2
                continue
            if c == quote:
                self.i += 1
                return "".join(out)
            out.append(c)
            self.i += 1
        self.fail("unterminated string")

    def bare(self):
        start = self.i
        while self.i < len(self.s) and self.s[self.i] not in ",)]":
            self.i += 1
        tok = self.s[start : self.i].strip()
        if _SPACED_OFFSET.match(tok):  # an unencoded '+' in the URL arrived as a space
            tok = tok[:-6] + "+" + tok[-5:]
        if tok in ("true", "false"):
            return tok == "true"
        if tok == "null":
            return None
        if _NUM.match(tok):
            return float(tok) if any(c in tok for c in ".eE") else int(tok)
        ts = parse_ts(tok)
        if ts is not None:
            return Dt(ts, tok)
        self.i = start
        self.fail(f"invalid value {tok!r} (strings must be quoted)")


def parse(text: str) -> list[Cond]:
    if not text or not text.strip():
        raise FilterError("Invalid filter provided: the filter is empty.")
    return _Parser(text).expr()


# ---------------------------------------------------------------- validation
def _coerce(value, spec: FieldSpec, fld: str):
    t = spec.type
    if t == "datetime":
        if isinstance(value, Dt):
            return value
        ts = parse_ts(value) if isinstance(value, str) else None
        if ts is None:  # quoted datetimes are accepted leniently; anything else is not
            raise FilterError(f"Invalid filter provided: '{fld}' expects a datetime, got {value!r}.")
        return Dt(ts, value)
    if t == "boolean":
        if not isinstance(value, bool):
            raise FilterError(f"Invalid filter provided: '{fld}' expects a boolean, got {value!r}.")
        return value
    if t in ("number", "integer"):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (t == "integer" and isinstance(value, float))
        ):
            raise FilterError(f"Invalid filter provided: '{fld}' expects a {t}, got {value!r}.")
        return value
    if not isinstance(value, str):
        raise FilterError(f"Invalid filter provided: '{fld}' expects a string, got {value!r}.")
    if spec.enum and value not in spec.enum:
        raise FilterError(
            f"Invalid filter provided: {value!r} is not a valid value for '{fld}'. "
            f"Valid values are: {', '.join(spec.enum)}."
        )
    return value


def validate(conds: list[Cond], specs: dict, rtype: str) -> list[Cond]:
    """Check fields/operators/value types like Klaviyo; returns normalised conditions."""
    out = []
    for c in conds:
        spec = specs.get(c.field)
        if spec is None:
            raise FilterError(
                f"Invalid filter provided: '{c.field}' is not a valid field for the resource "
                f"'{rtype}'. Valid fields are: {', '.join(sorted(specs)) or 'none'}."
            )
        if not c.has_value:
            allowed, value = spec.none, None
        elif isinstance(c.value, list):
            allowed = spec.list
            value = [_coerce(v, spec, c.field) for v in c.value]
        else:
            # Klaviyo's spec advertises list-only `equals(name,[...])`, but the scalar form is
            # widely used and accepted, so a scalar is allowed wherever the list form is.
            allowed = spec.single + tuple(o for o in spec.list if o not in spec.single)
            value = _coerce(c.value, spec, c.field)
            if c.op in spec.list and c.op not in spec.single:
                value = [value]
        if c.op not in allowed:
            ops = sorted(set(spec.single) | set(spec.list) | set(spec.none))
            raise FilterError(
                f"Invalid filter provided: operator '{c.op}' is not supported for the field "
                f"'{c.field}'. Supported operators are: {', '.join(ops)}."
            )
        out.append(Cond(c.op, c.field, value, c.has_value))
    return out


# ---------------------------------------------------------------- evaluation
def _scalar(v):
    return v.ts if isinstance(v, Dt) else v


def _as_ts(v):
    if isinstance(v, str):
        return parse_ts(v)
    return v


def compile_cond(c: Cond, datetime_field: bool, fold_case: bool):
    """Return a predicate over the record's field value."""
    op = c.op
    if op == "has":
        return lambda v: v is not None
    norm = _as_ts if datetime_field else (lambda v: v.lower() if fold_case and isinstance(v, str) else v)
    target = c.value
    if isinstance(target, list):
        wanted = {_scalar(x).lower() if fold_case and isinstance(x, str) else _scalar(x) for x in target}
        if op in ("any", "equals"):
            return lambda v: norm(v) in wanted
        if op == "contains-any":
            return lambda v: isinstance(v, list) and any(x in wanted for x in v)
        if op == "contains-all":
            return lambda v: isinstance(v, list) and wanted.issubset(v)
    t = _scalar(target)
    if fold_case and isinstance(t, str):
        t = t.lower()
    if op == "equals":
        return lambda v: norm(v) == t
    if op in RANGE_OPS:
        cmp = {
            "greater-than": lambda a: a > t,
            "greater-or-equal": lambda a: a >= t,
            "less-than": lambda a: a < t,
            "less-or-equal": lambda a: a <= t,
        }[op]

        def ranged(v):
            v = norm(v)
            return v is not None and not isinstance(v, str) and cmp(v)

        return ranged
    tl = str(t).lower()
    if op == "contains":
        return lambda v: (tl in v.lower()) if isinstance(v, str) else (isinstance(v, list) and t in v)
    if op == "starts-with":
        return lambda v: isinstance(v, str) and v.lower().startswith(tl)
    if op == "ends-with":
        return lambda v: isinstance(v, str) and v.lower().endswith(tl)
    raise FilterError(f"Invalid filter provided: operator '{op}' cannot be applied here.")


def range_bounds(conds: list[Cond], fld: str):
    """(lo, lo_inclusive, hi, hi_inclusive) in epoch seconds from range conditions on `fld`."""
    lo = hi = None
    lo_inc = hi_inc = True
    for c in conds:
        if c.field != fld or (c.op not in RANGE_OPS and c.op != "equals") or isinstance(c.value, list):
            continue
        v = _scalar(c.value)
        if c.op in ("greater-than", "greater-or-equal", "equals"):
            inc = c.op != "greater-than"
            if lo is None or v > lo or (v == lo and not inc):
                lo, lo_inc = v, inc
        if c.op in ("less-than", "less-or-equal", "equals"):
            inc = c.op != "less-than"
            if hi is None or v < hi or (v == hi and not inc):
                hi, hi_inc = v, inc
    return lo, lo_inc, hi, hi_inc
