"""The content streams against the sandbox (Klaviyo's rules: filters, page sizes, includes, limits).

In-process syncs of a loopback sandbox; every request the tap sends is recorded, so the
requests per stream, their parameters and their pacing are asserted, not assumed.
"""

from __future__ import annotations

import collections
import io
import json
import threading
import time
import typing as t
from contextlib import redirect_stdout
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from klaviyo_core import endpoints
from klaviyo_core.errors import KlaviyoAPIError
from klaviyo_core.scopes import _READ_PROBES
from klaviyo_sandbox import Sandbox, SandboxConfig, gen_content
from tap_klaviyo import streams
from tap_klaviyo.tap import TapKlaviyo
from tests.tap.conftest import CONFIG, run_sync
from tests.tap.fake_klaviyo import BASE_URL, PROBE, FakeKlaviyo, resource, to_many, to_one
from tests.tap.test_custom_fields import Run, assert_records_fit_their_schema_messages, select

CONTENT = (
    "campaign_messages",
    "flow_actions",
    "flow_messages",
    "templates",
    "tags",
    "tag_groups",
    "catalog_items",
    "catalog_variants",
    "catalog_categories",
    "coupons",
    "coupon_codes",
    "forms",
    "images",
)
INCREMENTAL = {"templates": "updated", "forms": "updated_at", "images": "updated_at", "flow_messages": "updated"}


@pytest.fixture(scope="module")
def box() -> t.Iterator[Sandbox]:
    with Sandbox(SandboxConfig(seed=5, scale=0.05, rate_limit_scale=0.0)) as sandbox:
        yield sandbox


def scope_probe(url: str) -> bool:
    """One of the one-item requests that check a read scope before a sync (klaviyo_core.scopes)."""
    path, params = urlsplit(url).path, query(url)
    return any(
        probe_path == path and {k: str(v) for k, v in probe_params.items()} == params
        for _, probe_path, probe_params, _ in _READ_PROBES.values()
    )


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, str]]:
    """(monotonic time, URL) of every request the tap sends to sync (its scope probes left out)."""
    seen: list[tuple[float, str]] = []
    real_send = requests.Session.send

    def send(session: requests.Session, request: requests.PreparedRequest, **kwargs: t.Any) -> requests.Response:
        if not scope_probe(request.url or ""):
            seen.append((time.monotonic(), request.url or ""))
        return real_send(session, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", send)
    return seen


def run(box: Sandbox, names: t.Iterable[str], state: dict | None = None, **settings: t.Any) -> Run:
    """Sync the named streams in-process; every record is checked against its SCHEMA message."""
    cfg = {**CONFIG, "api_key": box.api_key, "base_url": box.base_url, "start_date": None, **settings}
    cfg = {key: value for key, value in cfg.items() if value is not None}  # no start_date: everything
    catalog = select(TapKlaviyo(config=cfg, setup_mapper=False).catalog_dict, *names)
    out = io.StringIO()
    with redirect_stdout(out):
        TapKlaviyo(config=cfg, catalog=catalog, state=state).sync_all()
    result = Run([json.loads(line) for line in out.getvalue().splitlines() if line.strip()])
    assert_records_fit_their_schema_messages(result.messages)
    return result


def operation(url: str) -> str | None:
    found = endpoints.match("GET", urlsplit(url).path)
    return found.operation_id if found else None


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def first_page(url: str) -> bool:
    """A pass's first request (the next ones follow ``links.next`` verbatim)."""
    return "page[cursor]" not in query(url)


def truth(box: Sandbox) -> dict[str, set[str]]:
    """Every id of every content stream, as the sandbox's generated account holds them."""
    ds, content = box.store.ds, box.store.ds.content
    campaigns = [ds.small("campaign", k) for k in range(ds.n_campaigns)]
    flows = [ds.small("flow", k) for k in range(ds.n_flows)]
    actions = [gen_content.flow_action(ds, f, a) for f in flows for a in range(content.n_actions(f["_i"]))]
    ids = {
        "campaign_messages": {m["id"] for c in campaigns for m in c["relationships"]["campaign-messages"]},
        "flow_actions": {a["id"] for a in actions},
        "flow_messages": {m["id"] for a in actions for m in a["relationships"]["flow-messages"]},
    }
    for stream in CONTENT:
        if stream not in ids:
            ids[stream] = {r["id"] for r in content.records(stream.replace("_", "-"))}
    return ids


@pytest.fixture(scope="module")
def full(box):
    """One sync of every content stream, with the requests it sent."""
    mp = pytest.MonkeyPatch()
    seen: list[tuple[float, str]] = []
    real_send = requests.Session.send

    def send(session, request, **kwargs):
        if not scope_probe(request.url or ""):
            seen.append((0.0, request.url or ""))
        return real_send(session, request, **kwargs)

    mp.setattr(requests.Session, "send", send)
    try:
        result = run(box, CONTENT)
    finally:
        mp.undo()
    return result, [url for _, url in seen]


@pytest.mark.slow
@pytest.mark.parametrize("stream", CONTENT)
def test_a_full_sync_reads_every_record_once_and_each_fits_the_schema(box, full, stream):
    result, _ = full
    ids = [r["id"] for r in result.records(stream)]
    assert len(ids) == len(set(ids)), "a record was emitted twice"
    assert set(ids) == truth(box)[stream]
    assert ids, "the demo account has records of every stream"


@pytest.mark.slow
def test_children_carry_their_parents_ids(box, full):
    result, _ = full
    ds = box.store.ds
    for record in result.records("campaign_messages"):
        campaign = next(
            c for k in range(ds.n_campaigns) if (c := ds.small("campaign", k))["id"] == record["campaign_id"]
        )
        assert record["channel"] == campaign["_x"]["messages.channel"] == record["definition"]["channel"]
    actions = {r["id"]: r for r in result.records("flow_actions")}
    assert all(r["flow_id"] for r in actions.values())
    assert {r["flow_action_id"] for r in result.records("flow_messages")} <= set(actions)
    coupons = {r["id"] for r in result.records("coupons")}
    assert {r["coupon_id"] for r in result.records("coupon_codes")} <= coupons
    tags = {r["id"] for r in result.records("tags")}
    assert {r["tag_group_id"] for r in result.records("tags")} <= {r["id"] for r in result.records("tag_groups")}
    assert tags and any(r.get("campaign_ids") for r in result.records("tags"))


@pytest.mark.slow
def test_requests_use_includes_the_largest_pages_and_only_the_children_that_exist(box, full):
    _, urls = full
    per_operation = collections.Counter(operation(url) for url in urls)
    ds, content = box.store.ds, box.store.ds.content
    # Messages and actions come with their parents' pages, never one request per parent.
    tap = TapKlaviyo(config={**CONFIG, "api_key": box.api_key, "base_url": box.base_url}, setup_mapper=False)
    assert per_operation["get_campaigns"] == len(tap.streams["campaigns"].partitions)  # one page per pass
    assert per_operation["get_flows"] == len(tap.streams["flows"].partitions or [None])
    assert not [url for url in urls if "/campaign-messages" in url or url.endswith("/flow-actions")]
    message_actions = sum(
        1
        for f in range(ds.n_flows)
        for a in range(content.n_actions(f))
        if content.action_type(f, a) in ("send-email", "send-sms")
    )
    assert per_operation["get_flow_action_messages"] == message_actions < sum(map(content.n_actions, range(ds.n_flows)))
    assert per_operation["get_coupon_codes"] >= content.n_coupons + 2  # a coupon with 230 codes takes 3 pages
    for url in urls:
        params, op = query(url), operation(url)
        if not first_page(url):
            continue  # links.next, verbatim
        if op == "get_campaigns":
            assert params["include"] == "campaign-messages" and "messages.channel" in params["filter"]
        if op == "get_flows":
            assert params["include"] == "flow-actions"
        if op == "get_templates":
            assert params["additional-fields[template]"] == "definition"
        if op == "get_coupon_codes":
            assert params["filter"].startswith('equals(coupon.id,"')
        assert params.get("page[size]") == str(endpoints.page_size_max(op)), url


@pytest.mark.slow
def test_several_pages_are_followed(box, full):
    _, urls = full
    per_operation = collections.Counter(operation(url) for url in urls if not first_page(url))
    assert per_operation["get_templates"] >= 1  # 12 templates, 10 a page
    assert per_operation["get_catalog_variants"] >= 1
    assert per_operation["get_coupon_codes"] >= 2


@pytest.mark.parametrize("stream", sorted(INCREMENTAL))
def test_a_first_sync_filters_from_start_date_and_a_resumed_one_from_the_bookmark(box, sent, stream):
    key = INCREMENTAL[stream]
    first = run(box, [stream], start_date="2024-01-01T00:00:00Z")
    op = {
        "templates": "get_templates",
        "forms": "get_forms",
        "images": "get_images",
        "flow_messages": "get_flow_action_messages",
    }[stream]
    first_urls = [url for _, url in sent if operation(url) == op and first_page(url)]
    assert f"greater-or-equal({key},2024-01-01T00:00:00+00:00)" in query(first_urls[0])["filter"]
    records = first.records(stream)
    assert all(r[key] >= "2024-01-01" for r in records) and records
    state = [m["value"] for m in first.messages if m["type"] == "STATE"][-1]

    sent.clear()
    again = run(box, [stream], state=state, start_date="2024-01-01T00:00:00Z")
    bookmarks = state["bookmarks"][stream]
    marks = [p["replication_key_value"] for p in bookmarks.get("partitions", [])] or [
        bookmarks["replication_key_value"]
    ]
    urls = [url for _, url in sent if operation(url) == op and first_page(url)]
    if stream == "flow_messages":  # one pass per action, each from its own bookmark
        assert sorted(query(url)["filter"] for url in urls) == sorted(
            f"greater-or-equal({key},{mark})" for mark in marks
        )
    else:  # the main pass from the bookmark (a tail pass reads what is dated after the run's start)
        assert query(urls[0])["filter"].startswith(f"greater-or-equal({key},{marks[0]})")
    # From the state: only what shares a bookmark's second is read again, nothing older.
    assert {r["id"] for r in again.records(stream)} == {r["id"] for r in records if r[key] in marks}


def test_flow_messages_keep_a_bookmark_per_action_and_are_paced_at_three_a_second(box, sent):
    result = run(box, ["flow_messages"])
    partitions = [m["value"] for m in result.messages if m["type"] == "STATE"][-1]["bookmarks"]["flow_messages"]
    assert {p["context"]["flow_action_id"] for p in partitions["partitions"]} == {
        r["flow_action_id"] for r in result.records("flow_messages")
    }
    times = [when for when, url in sent if operation(url) == "get_flow_action_messages"]
    assert len(times) > 3
    for index in range(len(times) - 3):  # any four consecutive requests span more than a second
        assert times[index + 3] - times[index] >= 1.0


def test_archived_passes_of_the_parents_are_followed_and_stay_out_of_the_records(box, sent, monkeypatch):
    """Campaigns and flows read archived records in passes of their own (``equals(archived,...)``):
    their messages and actions come along, once each, and the pass keys are not record fields."""

    def passes(stream: t.Any) -> list[dict]:
        if isinstance(stream, streams.CampaignsStream):
            return [{"channel": c, **a} for c in streams.CAMPAIGN_CHANNELS for a in ({}, {"archived": True})]
        return [{"archived": False}, {"archived": True}]

    def conditions(stream: t.Any, context: t.Any, window: t.Any) -> list:
        archived = streams.filters.condition("equals", "archived", bool((context or {}).get("archived")))
        base = (
            [streams.filters.condition("equals", "messages.channel", context["channel"])]
            if isinstance(stream, streams.CampaignsStream)
            else []
        )
        return [*base, archived]

    for parent in (streams.CampaignsStream, streams.FlowsStream):
        monkeypatch.setattr(parent, "partitions", property(passes))
        monkeypatch.setattr(parent, "filter_conditions", conditions)
    result = run(box, ["campaign_messages", "flow_actions", "flow_messages"])
    expected = truth(box)
    for stream in ("campaign_messages", "flow_actions", "flow_messages"):
        ids = [r["id"] for r in result.records(stream)]
        assert sorted(ids) == sorted(expected[stream])
        assert not any("archived" in r for r in result.records(stream))
    filters = {query(url)["filter"] for _, url in sent if operation(url) in ("get_campaigns", "get_flows")}
    assert {"equals(archived,true)", "equals(archived,false)"} <= filters
    assert sum(1 for f in filters if "equals(archived,true)" in f) == 4  # 3 channels + flows


def test_campaign_messages_read_every_pass_the_campaigns_stream_reads(box, sent):
    """Archived campaigns included: the messages stream is the campaigns stream with an include."""
    run(box, ["campaigns", "campaign_messages"])
    campaigns, messages = [], []
    for _, url in sent:
        if operation(url) == "get_campaigns" and first_page(url):
            params = query(url)
            (messages if "include" in params else campaigns).append(params["filter"])
    assert len(messages) == len(campaigns) >= 3
    for campaign_filter, message_filter in zip(campaigns, messages):
        assert campaign_filter.startswith(message_filter)  # the same pass, less the updated_at window
    assert issubclass(streams.CampaignMessagesStream, streams.CampaignsStream)
    assert issubclass(streams.FlowActionsStream, streams.FlowsStream)


# -- scopes -----------------------------------------------------------------------------------------


SCOPES = {
    "campaign_messages": "campaigns:read",
    "flow_actions": "flows:read",
    "flow_messages": "flows:read",
    "templates": "templates:read",
    "tags": "tags:read",
    "tag_groups": "tags:read",
    "catalog_items": "catalogs:read",
    "catalog_variants": "catalogs:read",
    "catalog_categories": "catalogs:read",
    "coupons": "coupons:read",
    "coupon_codes": "coupon-codes:read",
    "forms": "forms:read",
    "images": "images:read",
}


@pytest.mark.parametrize("stream", CONTENT)
def test_each_stream_declares_its_read_scope_from_the_spec(stream):
    tap = TapKlaviyo(config=CONFIG, setup_mapper=False)
    assert SCOPES[stream] in tap.streams[stream].required_scopes


@pytest.mark.parametrize("stream", CONTENT)
def test_a_403_names_the_scope_the_stream_needs(mocker, stream):
    fake = FakeKlaviyo(mocker)
    action = resource(
        "flow-action", "A1", {"created": None, "updated": None, "definition": {"type": "send-email", "data": {}}}
    )
    flows = {
        "data": [resource("flow", "F1", {"name": "f"}, {"flow-actions": to_many("flow-action", "A1")})],
        "included": [action],
        "links": {"self": "x"},
    }
    mocker.get(f"{BASE_URL}/api/flows", json=flows)
    fake.add("/api/coupons", resource("coupon", "C1", {"external_id": "C1"}))
    denied = {
        "errors": [{"id": "1", "code": "permission_denied", "title": "t", "detail": "You do not have permission."}]
    }
    path = {
        "flow_messages": "/api/flow-actions/A1/flow-messages",
        "coupon_codes": "/api/coupon-codes",
        "flow_actions": "/api/flows",
    }.get(stream)
    if path:  # that request is refused (a child's after its parent's succeeded)
        mocker.get(f"{BASE_URL}{path}", status_code=403, json=denied)
        mocker.get(PROBE, text=fake._serve_probe)  # the scope check passes: the refusal comes mid-sync
    else:
        fake.fail_next(403, body=denied)
    with pytest.raises(KlaviyoAPIError, match=f"grant {SCOPES[stream]}"):
        run_sync(stream)


def test_flow_actions_from_an_include_keep_the_flow_of_the_relationship(mocker):
    """Klaviyo may leave the included action's back link out: the flow's relationship is the truth."""
    action = resource(
        "flow-action", "A1", {"created": None, "updated": None, "definition": None}, {"flow": to_one("flow", "OTHER")}
    )
    flows = {
        "data": [
            resource("flow", "F1", {"name": "f"}, {"flow-actions": to_many("flow-action", "A1")}),
            resource("flow", "F2", {"name": "g"}, {"flow-actions": to_many("flow-action")}),
        ],
        "included": [action],
        "links": {"self": "x"},
    }
    no_flows = {"data": [], "links": {"self": "x"}}
    mocker.get(f"{BASE_URL}/api/flows", [{"json": flows}, {"json": no_flows}])  # live pass, then archived pass
    mocker.get(PROBE, json=no_flows)  # the scope check before the sync takes neither answer
    (record,) = run_sync("flow_actions").records
    assert record["id"] == "A1" and record["flow_id"] == "F1"


def test_child_contexts_first_pages_are_fetched_ahead_giving_the_messages_of_a_sequential_sync(box, monkeypatch):
    """flow_messages (per flow action) and coupon_codes (per coupon): the same RECORD and STATE
    messages, in the same order, whether each context waits for its own request or not."""
    names = ("flow_actions", "flow_messages", "coupons", "coupon_codes")
    one = run(box, names, max_concurrency=1)
    threads: list[str] = []
    real_send = requests.Session.send

    def send(session: requests.Session, request: requests.PreparedRequest, **kwargs: t.Any) -> requests.Response:
        threads.append(threading.current_thread().name)
        return real_send(session, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", send)
    eight = run(box, names, max_concurrency=8)

    def singer(result: Run) -> list[tuple]:
        return [(m["type"], m.get("stream"), m.get("record"), m.get("value")) for m in result.messages]

    assert singer(eight) == singer(one) and eight.records("flow_messages") and eight.records("coupon_codes")
    # flow_actions comes after coupons: the tap's prefetch (tap_klaviyo/prefetch.py) fetched them first
    assert any(name.startswith(("flow_messages-ahead", "prefetch-")) for name in threads)
    assert any(name.startswith("coupon_codes-ahead") for name in threads)
