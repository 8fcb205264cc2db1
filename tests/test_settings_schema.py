"""Setting constraints live in the JSON schema; every value the schema refuses is one line naming the setting.

For each constrained setting of both plugins, a value just outside the constraint is made
up from the schema itself, so a constraint added later is covered without a new case here.
"""

from __future__ import annotations

import pytest
from singer_sdk.exceptions import ConfigValidationError

from tap_klaviyo.tap import TapKlaviyo
from target_klaviyo.target import TargetKlaviyo

KEY = "pk_0123456789abcdef0123456789abcdef01"
VALID = {TapKlaviyo: {"api_key": KEY}, TargetKlaviyo: {"api_key": KEY, "list_id": "X"}}


def bad_values(spec: dict) -> list:
    """Values just outside what ``spec`` allows."""
    values: list = []
    if "minimum" in spec:
        values.append(spec["minimum"] - 1)
    if "exclusiveMinimum" in spec:
        values.append(spec["exclusiveMinimum"])
    if "maximum" in spec:
        values.append(spec["maximum"] + 1)
    if "enum" in spec or "pattern" in spec:
        values.append("Not Valid")
    if "enum" in (spec.get("items") or {}):
        values.append(["Not Valid"])
    return values


def constrained_cases() -> list:
    cases = []
    for plugin in VALID:
        for name, spec in plugin.config_jsonschema["properties"].items():
            cases += [
                pytest.param(plugin, name, value, id=f"{plugin.name}-{name}-{value}") for value in bad_values(spec)
            ]
    return cases


CASES = constrained_cases()


def test_the_constraints_are_in_the_schema():
    names = {case.values[1] for case in CASES}
    assert {"rate_limit_share", "max_concurrency", "request_timeout", "revision", "base_url"} <= names
    assert {"operation", "wait_timeout_seconds", "consent_channels"} <= names


@pytest.mark.parametrize(("plugin", "name", "value"), CASES)
def test_a_value_the_schema_refuses_is_one_line_naming_the_setting_and_what_it_must_be(plugin, name, value):
    with pytest.raises(ConfigValidationError) as caught:
        plugin(config={**VALID[plugin], name: value})
    (message,) = caught.value.errors
    assert message.startswith(f"Setting {name} must be ") and "\n" not in message
    assert "does not match '" not in message  # the pattern's regex is not shown


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("rate_limit_share", 0, "Setting rate_limit_share must be a number above 0 and at most 1, e.g. 1.0: "),
        ("max_concurrency", 65, "Setting max_concurrency must be a whole number from 1 to 64, e.g. 8: "),
        ("request_timeout", 0, "Setting request_timeout must be a number of seconds above 0, e.g. 120.0: "),
        ("revision", "latest", "Setting revision must be a date that looks like YYYY-MM-DD, e.g. 2026-07-15 (not "),
        ("base_url", "https://a.klaviyo.com/api/", "it must not end in /api (paths add it) (not "),
        ("rate_limit_share", "half", "'half' is not of type 'number'"),
    ],
)
def test_the_wording(name, value, expected):
    with pytest.raises(ConfigValidationError) as caught:
        TargetKlaviyo(config={**VALID[TargetKlaviyo], name: value})
    assert expected in caught.value.errors[0]


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:8080", "https://proxy.example/klaviyo/", "https://x.io/apis"])
def test_good_base_urls_pass(base_url):
    TargetKlaviyo(config={**VALID[TargetKlaviyo], "base_url": base_url})
