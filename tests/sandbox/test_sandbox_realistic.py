"""``--data realistic`` (integrations' property shapes), HTTPS and gzip: what the benchmarks rely on."""

from __future__ import annotations

import gzip
import json

import pytest
import requests

from klaviyo_core.client import new_session
from klaviyo_sandbox import Sandbox, SandboxConfig
from klaviyo_sandbox.__main__ import build_parser, config_from_args
from klaviyo_sandbox.server import accepts_gzip, self_signed_certificate

from .client import REVISION

HEADERS = {"revision": REVISION}


def _get(box: Sandbox, path: str, **kwargs) -> requests.Response:
    headers = {**HEADERS, "Authorization": f"Klaviyo-API-Key {box.api_key}", **kwargs.pop("headers", {})}
    return requests.get(box.base_url + path, headers=headers, timeout=10, **kwargs)


def _events(seed: int, data: str) -> list[dict]:
    with Sandbox(SandboxConfig(seed=seed, scale=0.2, rate_limit_scale=0.0, data=data)) as box:
        return _get(box, "/api/events?page[size]=1000").json()["data"]


def test_realistic_events_have_many_shapes_nested_items_and_varying_types():
    events = _events(3, "realistic")
    keys: set[str] = set()
    types: dict[str, set[str]] = {}
    for event in events:
        for key, value in event["attributes"]["event_properties"].items():
            keys.add(key)
            types.setdefault(key, set()).add(type(value).__name__)
    assert len(keys) >= 45, sorted(keys)
    orders = [
        e["attributes"]["event_properties"] for e in events if "BillingAddress" in e["attributes"]["event_properties"]
    ]
    assert orders, "no Placed Order with Shopify's shape"
    item = orders[0]["Items"][0]
    assert {"ProductID", "SKU", "Quantity", "Variant"} <= set(item) and isinstance(item["Variant"]["options"], dict)
    varying = {key for key, seen in types.items() if len(seen - {"NoneType"}) > 1}
    assert {"$value", "ProductID", "Tags"} <= varying


def test_realistic_data_is_deterministic_and_standard_data_unchanged():
    first, again = _events(5, "realistic"), _events(5, "realistic")
    assert [(e["id"], e["attributes"]) for e in first] == [(e["id"], e["attributes"]) for e in again]
    standard = _events(5, "standard")
    assert not any("BillingAddress" in e["attributes"]["event_properties"] for e in standard)


def test_realistic_profiles_carry_more_typed_custom_fields():
    with Sandbox(SandboxConfig(seed=2, scale=0.05, rate_limit_scale=0.0, data="realistic")) as box:
        profiles = _get(box, "/api/profiles?page[size]=100").json()["data"]
    properties = [p["attributes"]["properties"] for p in profiles]
    assert all({"plan", "total_spent", "last_order", "quiz"} <= set(each) for each in properties)
    assert {type(each["total_spent"]).__name__ for each in properties} >= {"str"}
    assert all(isinstance(each["last_order"]["items"], list) for each in properties)


def test_bad_data_kind_is_refused():
    with pytest.raises(ValueError, match="data must be one of"):
        SandboxConfig(data="huge")


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory) -> str:
    directory = str(tmp_path_factory.mktemp("tls"))
    self_signed_certificate(directory)
    return directory


def test_https_with_gzip_when_the_client_accepts_it(tls_dir, monkeypatch):
    args = build_parser().parse_args(["--port", "0", "--tls", tls_dir, "--gzip", "--rate-limit-scale", "0"])
    with Sandbox(config_from_args(args)) as box:
        assert box.base_url.startswith("https://127.0.0.1:")
        with pytest.raises(requests.exceptions.SSLError):  # verification stays on: an unknown CA fails
            _get(box, "/api/events")
        cert = f"{tls_dir}/cert.pem"
        zipped = _get(box, "/api/events?page[size]=200", verify=cert, stream=True)
        assert zipped.headers["Content-Encoding"] == "gzip"
        body = zipped.raw.read(decode_content=False)
        assert len(json.loads(gzip.decompress(body))["data"]) == 200
        plain = _get(box, "/api/events?page[size]=200", verify=cert, headers={"Accept-Encoding": "identity"})
        assert "Content-Encoding" not in plain.headers and len(plain.json()["data"]) == 200
        assert plain.json()["links"]["next"].startswith(box.base_url)  # links name the https origin
        # the tap's sessions trust REQUESTS_CA_BUNDLE (requests' Session.send alone ignores it)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)
        answer = new_session().send(requests.Request("GET", box.base_url + "/api/accounts", headers={
            **HEADERS, "Authorization": f"Klaviyo-API-Key {box.api_key}"}).prepare(), timeout=10)  # fmt: skip
        assert answer.status_code == 200


@pytest.mark.parametrize(
    ("header", "expected"),
    [("gzip, deflate", True), ("br;q=1.0, gzip;q=0.8", True), ("gzip;q=0", False), ("identity", False), (None, False)],
)
def test_accept_encoding(header, expected):
    assert accepts_gzip(header) is expected
