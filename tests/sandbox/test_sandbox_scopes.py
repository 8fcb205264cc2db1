"""Keys granted only some scopes, and deleting a list."""

from __future__ import annotations

import requests

from klaviyo_sandbox import Sandbox, SandboxConfig

from .client import Client

KEY = "pk_scoped_0123456789abcdef"


def call(box: Sandbox, method: str, path: str, key: str, **kwargs) -> requests.Response:
    headers = Client(box.base_url, api_key=key).headers
    return requests.request(method, box.base_url + path, headers=headers, timeout=10, **kwargs)


def test_a_key_gets_403_permission_denied_for_an_operation_outside_its_scopes():
    with Sandbox(
        SandboxConfig(scale=0.01, rate_limit_scale=0, key_scopes={KEY: ("lists:write", "events:read")})
    ) as box:
        assert call(box, "GET", "/api/events", KEY).status_code == 200
        assert call(box, "GET", "/api/lists", KEY).status_code == 200  # lists:write includes lists:read
        denied = call(box, "GET", "/api/profiles", KEY)
        members = call(box, "GET", f"/api/lists/{box.store.ds.list_ids.id(0)}/profiles", KEY)  # needs profiles:read too
        full = call(box, "GET", "/api/profiles", box.api_key)
    assert denied.status_code == 403 and denied.json()["errors"][0]["code"] == "permission_denied"
    assert members.status_code == 403
    assert full.status_code == 200  # other keys hold every scope


def test_a_write_without_its_scope_changes_nothing_even_with_a_valid_body():
    with Sandbox(SandboxConfig(scale=0.01, rate_limit_scale=0, key_scopes={KEY: ("lists:read",)})) as box:
        body = {"data": {"type": "list", "attributes": {"name": "Not made"}}}
        answer = call(box, "POST", "/api/lists", KEY, json=body)
        assert answer.status_code == 403 and not box.store.new_lists
        incomplete = call(box, "POST", "/api/lists", box.api_key, json={"data": {"type": "list", "attributes": {}}})
        assert incomplete.status_code == 400 and not box.store.new_lists


def test_deleting_a_list_removes_it_from_lookups():
    with Sandbox(SandboxConfig(scale=0.01, rate_limit_scale=0)) as box:
        made = call(
            box, "POST", "/api/lists", box.api_key, json={"data": {"type": "list", "attributes": {"name": "Gone"}}}
        )
        list_id = made.json()["data"]["id"]
        generated = box.store.ds.list_ids.id(0)
        assert call(box, "DELETE", f"/api/lists/{list_id}", box.api_key).status_code == 204
        assert call(box, "DELETE", f"/api/lists/{generated}", box.api_key).status_code == 204
        assert call(box, "GET", f"/api/lists/{list_id}", box.api_key).status_code == 404
        assert call(box, "GET", f"/api/lists/{generated}", box.api_key).status_code == 404
        names = call(box, "GET", "/api/lists", box.api_key, params={"filter": "equals(name,'Gone')"}).json()["data"]
        ids = set()
        url = "/api/lists"
        while url:
            page = call(box, "GET", url.replace(box.base_url, ""), box.api_key).json()
            ids |= {item["id"] for item in page["data"]}
            url = page["links"].get("next")
        assert call(box, "DELETE", f"/api/lists/{list_id}", box.api_key).status_code == 404
    assert names == [] and generated not in ids and list_id not in ids


def test_every_operation_the_sandbox_serves_checks_the_scopes_the_spec_gives_it():
    # An operation missing from the table would answer any scoped key: a key without
    # templates:read, say, would seem to read templates.
    from klaviyo_core import endpoints
    from klaviyo_sandbox import api, scopes

    served = {op for _method, _path, op, _fn in api.ROUTES}
    assert served <= set(scopes.SCOPES), served - set(scopes.SCOPES)
    for op in served & set(endpoints.endpoints()):
        assert set(scopes.SCOPES[op]) == set(endpoints.endpoint(op).scopes), op
