"""`now="now"` (CLI `--now now`): the sandbox's clock is the real one, as Klaviyo's is."""

from __future__ import annotations

import time

import pytest

from klaviyo_sandbox import Sandbox, SandboxConfig
from klaviyo_sandbox.util import parse_ts


def test_real_clock_dates_new_records_now_and_generated_data_before() -> None:
    with Sandbox(SandboxConfig(seed=2, scale=0.01, now="now", rate_limit_scale=0.0)) as box:
        time.sleep(1.2)
        before = time.time()
        touched = box.store.touch("profiles", 2)
        after = time.time()
        profile = box.store.get_profile(touched["touched"][0])
        updated = parse_ts(profile["attributes"]["updated"])

        assert int(before) <= updated <= after  # whole seconds, like Klaviyo's timestamps
        assert box.store.ds.now <= before  # generated data is relative to the start


def test_fixed_now_is_still_checked() -> None:
    with pytest.raises(ValueError, match="ISO-8601"):
        SandboxConfig(now="yesterday")
