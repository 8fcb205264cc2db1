"""Deep custom-field scans read windows of the past at once, and give what one cursor chain gives."""

from __future__ import annotations

import logging

import pytest

from klaviyo_core.client import KlaviyoConnection
from klaviyo_sandbox import Sandbox, SandboxConfig
from tap_klaviyo import custom_fields
from tap_klaviyo.custom_fields import PROFILE_FIELDS, CustomFieldDiscovery, _WindowedScan

PARAMS = {"fields[profile]": "properties,updated", "sort": "-updated", "page[size]": 100}


@pytest.fixture(scope="module")
def connection():
    with Sandbox(SandboxConfig(scale=1, rate_limit_scale=0)) as box:
        yield KlaviyoConnection({"api_key": box.api_key, "base_url": box.base_url}, logger=logging.getLogger())


@pytest.mark.parametrize("depth", [150, 1000, 1999, 5000])
def test_a_windowed_scan_gives_the_newest_records_of_one_chain_in_its_order(connection, depth):
    chain = [r["id"] for r in connection.paginate("/api/profiles", PARAMS)][:depth]
    windowed = [r["id"] for r in _WindowedScan(connection, "/api/profiles", PARAMS, PROFILE_FIELDS, depth).resources()]
    assert windowed[:depth] == chain
    assert len(windowed) >= min(depth, 2000)


def test_a_windowed_scan_needs_few_rounds(connection, monkeypatch):
    rounds = []
    next_round = _WindowedScan._next_round
    monkeypatch.setattr(_WindowedScan, "_next_round", lambda self, chains: rounds.append(1) or next_round(self, chains))
    CustomFieldDiscovery(connection, 1000, logging.getLogger()).schema(PROFILE_FIELDS)
    assert len(rounds) <= 4  # one chain: 10 pages one after another


def test_a_failed_prefetched_scan_fails_only_its_schema(connection):
    discovery = CustomFieldDiscovery(connection, 1000, logging.getLogger())
    broken = custom_fields.CustomFieldSource("nothing", "properties", "get_profiles", "profile", "-no_such_key")
    discovery.prefetch([broken, PROFILE_FIELDS])
    assert discovery.schema(PROFILE_FIELDS)["properties"]
    with pytest.raises(Exception, match="sort"):
        discovery.schema(broken)
