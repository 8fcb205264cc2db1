"""Pages kept as JSON until read (tap_klaviyo.records): same records, same errors."""

from __future__ import annotations

import json
import mmap

import lz4.block
import pytest
import requests

from klaviyo_core.errors import KlaviyoRetriableError
from tap_klaviyo.records import (
    LZ4_ACCELERATION,
    LazyRecords,
    PackedRecords,
    decode_page,
    flat_records,
    lazy_records,
    return_large_blocks_to_the_os,
)
from tap_klaviyo.stream import flatten

RESOURCES = [
    {"type": "event", "id": f"e{i}", "attributes": {"datetime": f"2026-01-0{i}T00:00:00+00:00", "n": i, "x": [1, {}]},
     "relationships": {"profile": {"data": {"type": "profile", "id": f"p{i}"}}}}
    for i in range(1, 4)
]  # fmt: skip


def answer(body: bytes) -> requests.Response:
    response = requests.Response()
    response.status_code = 200
    response._content = body
    response.url = "https://a.klaviyo.com/api/events"
    return response


def test_records_read_from_the_raw_page_are_those_of_the_decoded_document():
    body = json.dumps({"data": RESOURCES, "links": {"next": "https://next"}, "included": []}).encode()
    page = decode_page(answer(body))
    records = LazyRecords(page.data, flatten)
    assert page.links is not None and page.links.next == "https://next"
    assert len(records) == 3
    assert list(records) == [flatten(r) for r in RESOURCES] == list(records)  # read twice: the same
    assert records[0] == flatten(RESOURCES[0]) and records[-1] == flatten(RESOURCES[-1])
    assert records[1:] == [flatten(r) for r in RESOURCES[1:]]


ODD_RESOURCES = [
    *RESOURCES,
    {"type": "profile", "id": "p1", "attributes": {"id": "shadowed", "email": "a@b.c"},
     "relationships": {"lists": {"data": [{"type": "list", "id": "L1"}, {"type": "list", "id": "L2"}]},
                       "push-tokens": {"data": None}, "metric": {"links": {"self": "x"}},
                       "odd": "not an object"}},
    {"type": "event", "id": 7, "attributes": None},
    {"type": "event", "id": "e9"},
    {"type": "event", "id": "e10", "attributes": {"n": 1}, "relationships": None, "links": {"self": "x"}},
]  # fmt: skip


def test_records_decoded_in_one_pass_are_those_flatten_makes():
    body = json.dumps({"data": ODD_RESOURCES}).encode()
    records = flat_records(decode_page(answer(body)), flatten)
    assert list(records) == [flatten(r) for r in ODD_RESOURCES]
    assert records[3] == flatten(ODD_RESOURCES[3]) and records[-2:] == [flatten(r) for r in ODD_RESOURCES[-2:]]


def test_realistic_sandbox_events_decoded_in_one_pass_are_those_flatten_makes():
    from klaviyo_sandbox import gen_events
    from klaviyo_sandbox.util import Rng

    rng = Rng(7)
    properties = gen_events.properties
    resources = [
        {"type": "event", "id": str(i), "attributes": {"event_properties": properties(rng, name, i, "realistic")},
         "relationships": {"profile": {"data": {"type": "profile", "id": f"p{i}"}, "links": {"self": "x"}}}}
        for i, name in enumerate(["Placed Order", "Viewed Product", "Active on Site", "Ordered Product"] * 25)
    ]  # fmt: skip
    body = json.dumps({"data": resources}).encode()
    assert list(flat_records(decode_page(answer(body)), flatten)) == [flatten(r) for r in resources]


def test_packed_records_are_the_pages_records_held_in_a_fraction_of_its_bytes():
    from klaviyo_sandbox import gen_events
    from klaviyo_sandbox.util import Rng

    rng, properties = Rng(3), gen_events.properties
    resources = [
        {"type": "event", "id": str(i), "attributes": {"event_properties": properties(rng, name, i, "realistic")},
         "relationships": {"profile": {"data": {"type": "profile", "id": f"p{i}"}, "links": {"self": "x"}}}}
        for i, name in enumerate(["Placed Order", "Viewed Product", "Active on Site"] * 30)
    ] + ODD_RESOURCES  # fmt: skip
    body = json.dumps({"data": resources, "links": {"next": "https://a.klaviyo.com/api/events?page%5Bcursor%5D=x"}})
    body = body.encode()
    whole = len(lz4.block.compress(body, mode="fast", acceleration=LZ4_ACCELERATION))
    made_from = [
        (flat_records(decode_page(answer(body)), flatten, body), whole),  # the body itself is compressed
        (lazy_records(decode_page(answer(body)), flatten, body), whole),
        (flat_records(decode_page(answer(body)), flatten), None),  # no body: the spans are copied first
        (lazy_records(decode_page(answer(body)), flatten), None),
    ]
    for made, expected_size in made_from:
        assert isinstance(made, LazyRecords)
        packed, size = made.packed()
        assert isinstance(packed, PackedRecords) and size == packed.size < len(body) / 3
        assert expected_size is None or size == expected_size
        assert isinstance(packed._packed, mmap.mmap)  # a mapping of its own, not the malloc arenas'
        assert len(packed) == len(resources)
        assert list(packed) == list(made) == [flatten(r) for r in resources]
        assert packed[5] == made[5] and packed[-2:] == made[-2:]


@pytest.mark.parametrize(
    "body", [b'{"data": [{"type": "event", "id": "e1"}, {"type": "ev', b"<html>502 Bad Gateway</html>", b"[1, 2]"]
)
def test_a_truncated_or_foreign_body_is_retried(body):
    with pytest.raises(KlaviyoRetriableError):
        decode_page(answer(body))


@pytest.mark.parametrize(
    ("document", "count", "next_url"),
    [
        ({"data": None, "links": None}, 0, None),
        ({}, 0, None),
        ({"data": [{"id": "x"}], "links": {"next": None}}, 1, None),
    ],
)
def test_unusual_but_valid_documents(document, count, next_url):
    page = decode_page(answer(json.dumps(document).encode()))
    assert len(page.data) == count
    assert (page.links.next if page.links else None) == next_url


def test_large_blocks_go_back_to_the_os_with_glibc():
    import platform
    import sys

    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert return_large_blocks_to_the_os() is glibc
