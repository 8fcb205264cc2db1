"""--config=ENV reads typed settings (numbers, objects), as Meltano's `test` command passes them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from klaviyo_core.env_config import env_config

SCHEMA = {
    "properties": {
        "rate_limit_share": {"type": ["number", "null"]},
        "max_concurrency": {"type": ["integer", "null"]},
        "discover_custom_fields": {"type": ["boolean", "null"]},
        "stream_maps": {"type": ["object", "null"]},
        "start_date": {"type": ["string", "null"], "format": "date-time"},
    }
}


def test_values_get_their_schema_type() -> None:
    environ = {
        "TAP_X_RATE_LIMIT_SHARE": "0.5",
        "TAP_X_MAX_CONCURRENCY": "3",
        "TAP_X_DISCOVER_CUSTOM_FIELDS": "false",
        "TAP_X_STREAM_MAPS": '{"events": {"x": "1"}}',
        "TAP_X_START_DATE": "2024-01-01",
        "OTHER": "1",
    }

    assert env_config(SCHEMA, "TAP_X_", environ) == {
        "rate_limit_share": 0.5,
        "max_concurrency": 3,
        "discover_custom_fields": False,
        "stream_maps": {"events": {"x": "1"}},
        "start_date": "2024-01-01",
    }


def test_text_that_does_not_parse_stays_text_for_validation_to_name() -> None:
    assert env_config(SCHEMA, "T_", {"T_MAX_CONCURRENCY": "eight", "T_RATE_LIMIT_SHARE": "half"}) == {
        "max_concurrency": "eight",
        "rate_limit_share": "half",
    }


def test_the_tap_accepts_typed_settings_from_the_environment(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAP_KLAVIYO", "TARGET_KLAVIYO"))}
    env.update(
        {
            "TAP_KLAVIYO_API_KEY": "pk_" + "0" * 34,
            "TAP_KLAVIYO_RATE_LIMIT_SHARE": "0.5",
            "TAP_KLAVIYO_MAX_CONCURRENCY": "65",
        }
    )
    done = subprocess.run(
        [str(Path(sys.executable).parent / "tap-klaviyo"), "--config=ENV", "--discover"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )

    assert done.returncode == 1
    assert "max_concurrency must be a whole number from 1 to 64" in done.stderr, "65 was read as a number"
    assert "not of type" not in done.stderr


def test_number_settings_given_as_text_are_numbers(tmp_path: Path) -> None:
    """As Meltano passes settings declared `kind: string` (its `decimal` kind fails with environment variables)."""
    config = tmp_path / "config.json"
    config.write_text('{"api_key": "pk_' + "0" * 34 + '", "rate_limit_share": "1.5", "request_timeout": " 30 "}')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAP_KLAVIYO", "TARGET_KLAVIYO"))}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "tap-klaviyo"), "--config", str(config), "--discover"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )

    assert done.returncode == 1
    assert "rate_limit_share must be a number above 0 and at most 1" in done.stderr, "1.5 was read as a number"
