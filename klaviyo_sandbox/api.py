"""Endpoint handlers for /api/*: parameter validation, collection paging, writes."""

from __future__ import annotations

import json
import re
from typing import cast
from urllib.parse import quote

from klaviyo_core import endpoints as core_endpoints

from . import bulk, filters, gen_catalog, gen_content, reports
from .endpoints import ENDPOINTS, METRICS_PAGE
from .query import Query, decode_cursor, encode_cursor, query_hash
from .render import bad_request, collection_document, document, dumps, not_found, resource, resource_json
from .sources import ContentSource, ListSource

CHANNEL_REQUIRED = (
    "A channel filter is required to list campaigns. Please try adding either "
    "`equals(messages.channel,'email')`, `equals(messages.channel,'sms')` or "
    "`equals(messages.channel,'mobile_push')` to your filter."
)
# Klaviyo leaves archived campaigns and flows out unless the filter asks for them with
# equals(archived,true) (developers.klaviyo.com, get_campaigns / get_flows; the spec allows
# only `equals` on `archived`). Without a condition on `archived` these hide archived records.
HIDES_ARCHIVED = ("get_campaigns", "get_flows")
# Includes the sandbox has no resources for (on records without such data): relationship data is an
# empty list, nothing included.
EMPTY_INCLUDES = {"tags", "flow-triggers", "attributions", "events", "push-tokens", "conversations"}
# Klaviyo's own words for a coupon-code read without its required filter (the spec's description).
COUPON_FILTER_REQUIRED = (
    "A coupon/coupons or a profile/profiles must be provided as required filter params: "
    "add `equals(coupon.id,'...')` or `any(profile.id,[...])` to your filter."
)


class Request:
    def __init__(self, app, method, path, raw_query, params, headers, body, base):
        self.app, self.store = app, app.store
        self.method, self.path, self.raw_query = method, path, raw_query
        self.params, self.headers, self.body, self.base = params, headers, body, base
        self.q = dict(params)
        self.match: dict = {}
        self.op = None

    @property
    def ep(self):
        return ENDPOINTS[cast(str, self.op)]  # set by the router before a handler runs

    def list_param(self, name: str) -> list:
        raw = self.q.get(name)
        return [v.strip() for v in raw.split(",") if v.strip()] if raw else []


# ---------------------------------------------------------------- parameters
def check_params(req: Request, allowed_extra: tuple = ()):
    ep = req.ep
    seen = set()
    for key, _ in req.params:
        if key in seen:
            raise bad_request(f"Query parameter '{key}' was given more than once.", parameter=key)
        seen.add(key)
        ok = key in allowed_extra or key.startswith("fields[")
        ok = ok or (key == "filter" and ep.filters) or (key == "sort" and ep.sorts)
        ok = ok or (key == "include" and ep.includes) or (key == "page[cursor]" and (ep.page or ep.op == "get_metrics"))
        ok = ok or (key == "page[size]" and ep.page) or (key.startswith("additional-fields[") and ep.additional)
        if not ok:
            raise bad_request(f"'{key}' is not a valid query parameter for this endpoint.", parameter=key)
    for name in req.list_param("include"):
        if name not in ep.includes:
            raise bad_request(
                f"'{name}' is not a valid include. Valid values are: {', '.join(ep.includes)}.", parameter="include"
            )
    for key in req.q:
        if key.startswith("additional-fields["):
            for name in req.list_param(key):
                if key != f"additional-fields[{ep.rtype}]" or name not in ep.additional:
                    raise bad_request(f"'{name}' is not a valid value for {key}.", parameter=key)


def page_size(req: Request) -> int:
    ep = req.ep
    if ep.page is None:
        return METRICS_PAGE
    default, lo, hi = ep.page
    raw = req.q.get("page[size]")
    if raw is None:
        return default
    try:
        size = int(raw)
    except ValueError:
        raise bad_request(f"page[size] must be an integer; got {raw!r}.", parameter="page[size]") from None
    if not lo <= size <= hi:
        raise bad_request(f"page[size] must be between {lo} and {hi}; got {size}.", parameter="page[size]")
    return size


def parse_filter(req: Request) -> list:
    ep, text = req.ep, req.q.get("filter")
    if text is None:
        if ep.filter_required:  # the spec marks `filter` required for campaigns and coupon codes
            required = COUPON_FILTER_REQUIRED if ep.op == "get_coupon_codes" else CHANNEL_REQUIRED
            raise bad_request(required, parameter="filter")
        return hide_archived(ep.op, [])
    try:
        conds = filters.validate(filters.parse(text), ep.filters, ep.rtype)
    except filters.FilterError as exc:
        raise bad_request(str(exc), parameter="filter") from None
    if ep.op == "get_campaigns" and not any(c.field == "messages.channel" for c in conds):
        raise bad_request(CHANNEL_REQUIRED, parameter="filter")
    conds = hide_archived(ep.op, conds)
    # Reviews: status 'all' means "no status restriction".
    return [c for c in conds if not (ep.op == "get_reviews" and c.field == "status" and c.value == "all")]


def hide_archived(op: str, conds: list) -> list:
    """Campaigns and flows: archived ones only when the filter names `archived`."""
    if op in HIDES_ARCHIVED and not any(c.field == "archived" for c in conds):
        return [*conds, filters.Cond("equals", "archived", False)]
    return conds


def check_sort(req: Request):
    sort = req.q.get("sort")
    if sort is not None and sort.lstrip("-") not in req.ep.sorts:
        raise bad_request(
            f"'{sort}' is not a valid sort. Valid values are: "
            f"{', '.join(s for f in req.ep.sorts for s in (f, '-' + f))}.",
            parameter="sort",
        )
    return sort


# ---------------------------------------------------------------- rendering
def self_link(req: Request) -> str:
    return f"{req.base}{req.path}" + (f"?{req.raw_query}" if req.raw_query else "")


def page_link(req: Request, cursor: str) -> str:
    params = [(k, v) for k, v in req.params if k != "page[cursor]"] + [("page[cursor]", cursor)]
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)
    return f"{req.base}{req.path}?{query}"


class View:
    """How records of one request are rendered (sparse fields, additional fields, includes)."""

    def __init__(self, req: Request, ids_only: bool = False):
        self.req, self.ids_only = req, ids_only
        self.fields = {k[7:-1]: req.list_param(k) for k in req.q if k.startswith("fields[")}
        self.additional = set(req.list_param(f"additional-fields[{req.ep.rtype}]")) if req.ep.additional else set()
        self.includes = req.list_param("include")
        self.fast = not (self.fields or self.additional or self.includes)

    def attributes(self, rec: dict) -> dict:
        attrs = rec["attributes"]
        if self.additional:
            ds, prof = self.req.store.ds, rec.get("_profile", rec)
            attrs = dict(attrs)
            if "subscriptions" in self.additional:
                attrs["subscriptions"] = self.req.store.subscriptions(prof)
            if "predictive_analytics" in self.additional:
                attrs["predictive_analytics"] = ds.predictive(prof.get("_i"))
            if "definition" in self.additional:  # templates: drag-and-drop ones have a definition
                attrs["definition"] = rec.get("_definition")
        return attrs

    def one(self, rec: dict) -> dict:
        base = self.req.base
        if self.includes:
            rec = {**rec, "relationships": dict(rec.get("relationships") or {})}
            for name in self.includes:
                if name in EMPTY_INCLUDES and rec["relationships"].get(name) is None:
                    rec["relationships"][name] = []
        return resource(rec, base, self.attributes(rec), self.fields.get(rec["type"]))

    def items_json(self, recs: list) -> list:
        if self.ids_only:
            return [f'{{"type":"profile","id":"{r["id"]}"}}' for r in recs]
        if self.fast:
            return [resource_json(r, self.req.base) for r in recs]
        return [dumps(self.one(r)) for r in recs]

    def included(self, recs: list):
        if not self.includes:
            return None
        store, out, seen = self.req.store, [], set()
        for rec in recs:
            for name in self.includes:
                data = (rec.get("relationships") or {}).get(name)
                for ref in data if isinstance(data, list) else [data] if data else []:
                    key = (ref["type"], ref["id"])
                    if key in seen:
                        continue
                    seen.add(key)
                    target = lookup(store, ref["type"], ref["id"])
                    if target is not None:
                        out.append(resource(target, self.req.base, None, self.fields.get(ref["type"])))
        return out


def lookup(store, rtype: str, rid: str):
    ds = store.ds
    if rtype == "profile":
        return store.get_profile(rid)
    if rtype == "metric":
        k = ds.metric_ids.index(rid)
        return (
            store.small_patch["metric"].get(k) or ds.small("metric", k) if k is not None and k < ds.n_metrics else None
        )
    if rtype == "list":
        return store.group_record("list", rid)
    return lookup_content(store, rtype, rid)


def lookup_content(store, rtype: str, rid: str):
    """Included content resources: campaign messages, flow actions, tags, variants, coupons."""
    ds = store.ds
    if rtype == "campaign-message":
        n = ds.message_ids.index(rid)
        if n is None or n // 4 >= ds.n_campaigns:
            return None
        campaign = store.small_record("campaign", n // 4)
        found = n % 4 < len(campaign["relationships"]["campaign-messages"])
        return gen_content.campaign_message(ds, campaign, n % 4) if found else None
    if rtype == "flow-action":
        found = ds.content.action_index(rid)
        return None if found is None else gen_content.flow_action(ds, store.small_record("flow", found[0]), found[1])
    kinds = {"tag": "tags", "tag-group": "tag-groups", "catalog-variant": "catalog-variants", "coupon": "coupons"}
    if rtype in kinds:
        return next((r for r in ds.content.records(kinds[rtype]) if r["id"] == rid), None)
    return None


def paged(req: Request, src, conds: list, sort, view: View):
    size = page_size(req)
    qh = query_hash(req.path, req.q)
    cursor = decode_cursor(req.q["page[cursor]"], qh) if req.q.get("page[cursor]") else None
    page = Query(src, conds, sort).page(size, cursor)
    links = {"self": self_link(req)}
    if page.next_key is not None:
        links["next"] = page_link(req, encode_cursor("n", page.next_key, qh))
    if page.prev_key is not None:
        links["prev"] = page_link(req, encode_cursor("p", page.prev_key, qh))
    return 200, collection_document(view.items_json(page.records), links, view.included(page.records))


# ---------------------------------------------------------------- GET handlers
def collection(stream: str):
    def handler(req: Request):
        check_params(req)
        conds, sort = parse_filter(req), check_sort(req)
        return paged(req, req.store.source(stream), conds, sort, View(req))

    return handler


def members(kind: str, ids_only: bool):
    def handler(req: Request):
        gid = req.match["id"]
        if req.store.group_record(kind, gid) is None:
            raise not_found(f"A {kind} with id {gid} does not exist.")
        check_params(req)
        conds, sort = parse_filter(req), check_sort(req)
        return paged(req, req.store.source(f"{kind}-members", gid), conds, sort, View(req, ids_only))

    return handler


def content(kind: str):
    """A content collection (templates, tags, catalog, coupons, forms, images...)."""

    def handler(req: Request):
        check_params(req)
        conds, sort = parse_filter(req), check_sort(req)
        if kind == "coupon-codes" and not any(c.field in ("coupon.id", "profile.id") for c in conds):
            raise bad_request(COUPON_FILTER_REQUIRED, parameter="filter")
        return paged(req, ContentSource(req.store, kind), conds, sort, View(req))

    return handler


def flow_action_messages(req: Request):
    ds, rid = req.store.ds, req.match["id"]
    found = ds.content.action_index(rid)
    if found is None:
        raise not_found(f"A flow action with id {rid} does not exist.")
    check_params(req)
    conds, sort = parse_filter(req), check_sort(req)
    action = gen_content.flow_action(ds, req.store.small_record("flow", found[0]), found[1])
    messages = [gen_content.flow_message(ds, action, m) for m in range(len(action["relationships"]["flow-messages"]))]
    src = ContentSource(req.store, "flow-messages", messages, key=f"flow-messages:{rid}")
    return paged(req, src, conds, sort, View(req))


def get_accounts(req: Request):
    check_params(req)
    view = View(req)
    acc = gen_catalog.account(req.store.ds)
    return 200, document([view.one(acc)], {"self": self_link(req)})


def get_list(req: Request):
    check_params(req)
    rec = req.store.group_record("list", req.match["id"])
    if rec is None:
        raise not_found(f"A list with id {req.match['id']} does not exist.")
    view = View(req)
    out = view.one(rec)
    if "profile_count" in view.additional:
        out["attributes"] = {**out["attributes"], "profile_count": req.store.member_count(rec["id"])}
    return 200, document(out, {"self": self_link(req)}, view.included([rec]))


# ---------------------------------------------------------------- writes
def read_json(req: Request) -> dict:
    try:
        doc = json.loads(req.body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise bad_request("The request body is not valid JSON.", pointer="/") from None
    if not isinstance(doc, dict) or "data" not in doc:
        raise bad_request("The request body must be a JSON:API document with `data`.", pointer="/data")
    return doc


def create_list(req: Request):
    check_params(req)
    data = read_json(req)["data"]
    if not isinstance(data, dict) or data.get("type") != "list":
        raise bad_request("`data.type` must be 'list'.", pointer="/data/type")
    attrs = data.get("attributes") or {}
    name = attrs.get("name")
    if not isinstance(name, str) or not name.strip():
        raise bad_request("`name` is required and must be a non-empty string.", pointer="/data/attributes/name")
    opt_in = attrs.get("opt_in_process")
    if opt_in not in (None, "single_opt_in", "double_opt_in"):
        raise bad_request(
            "`opt_in_process` must be 'single_opt_in' or 'double_opt_in'.", pointer="/data/attributes/opt_in_process"
        )
    rec = req.store.create_list(name, opt_in)
    return 201, document(resource(rec, req.base), {"self": f"{req.base}/api/lists/{rec['id']}/"})


def delete_list(req: Request):
    """DELETE /api/lists/{id}: 204 with no body (spec), 404 for an unknown list."""
    check_params(req)
    if not req.store.delete_list(req.match["id"]):
        raise not_found(f"A list with id {req.match['id']} does not exist.")
    return 204, b""


def change_members(add: bool):
    def handler(req: Request):
        store, gid = req.store, req.match["id"]
        if store.group_record("list", gid) is None:
            raise not_found(f"A list with id {gid} does not exist.")
        data = read_json(req)["data"]
        if not isinstance(data, list) or not data:
            raise bad_request("`data` must be a non-empty array of profile identifiers.", pointer="/data")
        if len(data) > 1000:
            raise bad_request(f"A maximum of 1000 profiles is allowed per call; got {len(data)}.", pointer="/data")
        ids = []
        for k, item in enumerate(data):
            if not isinstance(item, dict) or item.get("type") != "profile" or not isinstance(item.get("id"), str):
                raise bad_request("Each item must be {'type': 'profile', 'id': '...'}.", pointer=f"/data/{k}")
            # Choice: unknown profile ids reject the whole call (nothing applied) so target bugs surface.
            if store.get_profile(item["id"]) is None:
                raise bad_request(f"Profile {item['id']!r} does not exist.", pointer=f"/data/{k}/id")
            ids.append(item["id"])
        (store.add_members if add else store.remove_members)(gid, ids)
        return 204, b""

    return handler


def create_job(req: Request):
    check_params(req)
    job = req.store.jobs.create(req.body or b"")
    rec = req.store.jobs.record(job)
    return 202, document(resource(rec, req.base), {"self": f"{req.base}/api/profile-bulk-import-jobs/{job.id}/"})


def _job(req: Request):
    job = req.store.jobs.get(req.match["id"])
    if job is None:
        raise not_found(f"An import job with id {req.match['id']} does not exist.")
    return job


def get_job(req: Request):
    check_params(req)
    jobs, view = req.store.jobs, View(req)
    rec = jobs.record(_job(req))
    return 200, document(view.one(rec), {"self": self_link(req)}, view.included([rec]))


def get_jobs(req: Request):
    check_params(req)
    conds, sort = parse_filter(req), check_sort(req)
    jobs = req.store.jobs
    recs = [jobs.record(jobs.get(jid)) for jid in list(jobs.jobs)]
    src = ListSource(req.store, "profile-bulk-import-job", recs, ("created_at",), key="jobs")
    return paged(req, src, conds, sort, View(req))


def get_job_errors(req: Request):
    check_params(req)
    job = _job(req)
    done = req.store.jobs.record(job)["attributes"]["status"] == "complete"
    recs = job.errors if done else []  # errors surface once the job has processed its rows
    src = ListSource(req.store, "import-error", recs, version=(job.id, done), key=f"errors:{job.id}")
    return paged(req, src, [], None, View(req))


# The operations the sandbox serves and their handlers; method and path come from the plugins' generated
# endpoint table (klaviyo_core/endpoints.json), so a path is written nowhere by hand.
HANDLERS = [
    ("get_accounts", get_accounts),
    ("get_campaigns", collection("campaigns")),
    ("get_events", collection("events")),
    ("get_flows", collection("flows")),
    ("get_lists", collection("lists")),
    ("create_list", create_list),
    ("get_list", get_list),
    ("delete_list", delete_list),
    ("get_metrics", collection("metrics")),
    ("get_profiles", collection("profiles")),
    ("get_reviews", collection("reviews")),
    ("get_segments", collection("segments")),
    ("get_profiles_for_list", members("list", False)),
    ("get_profile_ids_for_list", members("list", True)),
    ("add_profiles_to_list", change_members(True)),
    ("remove_profiles_from_list", change_members(False)),
    ("get_profiles_for_segment", members("segment", False)),
    ("get_profile_ids_for_segment", members("segment", True)),
    ("get_bulk_import_profiles_jobs", get_jobs),
    ("bulk_import_profiles", create_job),
    ("get_bulk_import_profiles_job", get_job),
    ("get_errors_for_bulk_import_profiles_job", get_job_errors),
    ("get_flow_action_messages", flow_action_messages),
    ("get_templates", content("templates")),
    ("get_tags", content("tags")),
    ("get_tag_groups", content("tag-groups")),
    ("get_catalog_items", content("catalog-items")),
    ("get_catalog_variants", content("catalog-variants")),
    ("get_catalog_categories", content("catalog-categories")),
    ("get_coupons", content("coupons")),
    ("get_coupon_codes", content("coupon-codes")),
    ("get_forms", content("forms")),
    ("get_images", content("images")),
    ("bulk_subscribe_profiles", bulk.subscribe),
    ("bulk_unsubscribe_profiles", bulk.unsubscribe),
    ("bulk_suppress_profiles", bulk.suppression("bulk_suppress_profiles")),
    ("get_bulk_suppress_profiles_job", bulk.get_suppression_job("profile-suppression-bulk-create-job")),
    ("bulk_unsuppress_profiles", bulk.suppression("bulk_unsuppress_profiles")),
    ("get_bulk_unsuppress_profiles_job", bulk.get_suppression_job("profile-suppression-bulk-delete-job")),
    ("bulk_create_events", bulk.create_events),
    ("query_campaign_values", reports.report("query_campaign_values")),
    ("query_flow_values", reports.report("query_flow_values")),
    ("query_flow_series", reports.report("query_flow_series")),
    ("query_form_series", reports.report("query_form_series")),
    ("query_segment_series", reports.report("query_segment_series")),
    ("query_metric_aggregates", reports.metric_aggregates),
]


def path_pattern(path: str) -> str:
    """A spec path as a regular expression: its one parameter ({id}, {job_id}) captured as ``id``."""
    return re.sub(r"\\\{[^}]+\\\}", "(?P<id>[^/]+)", re.escape(path))


ROUTES = [
    (endpoint.method, path_pattern(endpoint.path), op, fn)
    for op, fn in HANDLERS
    for endpoint in [core_endpoints.endpoint(op)]
]
COMPILED = [(m, re.compile(p + "$"), op, fn) for m, p, op, fn in ROUTES]


def route(method: str, path: str):
    """(op, handler, path params) | ('405', None, {}) | None."""
    path_known = False
    for m, rx, op, fn in COMPILED:
        hit = rx.match(path)
        if hit:
            if m == method:
                return op, fn, hit.groupdict()
            path_known = True
    return ("405", None, {}) if path_known else None
