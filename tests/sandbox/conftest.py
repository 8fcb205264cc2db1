"""Fixtures: sandboxes on ephemeral ports, an HTTP client, spec-based validators."""

from __future__ import annotations

import pytest

from klaviyo_sandbox import Sandbox, SandboxConfig

from .client import Client


@pytest.fixture(scope="session")
def sb():
    """Read-mostly sandbox shared by read tests (no rate limits, small data)."""
    with Sandbox(SandboxConfig(seed=1, scale=0.05, rate_limit_scale=0.0, job_seconds=0.3)) as box:
        yield box


@pytest.fixture(scope="session")
def client(sb) -> Client:
    return Client(sb.base_url, sb.api_key)


@pytest.fixture()
def fresh():
    """A private sandbox for tests that mutate state."""
    with Sandbox(SandboxConfig(seed=7, scale=0.02, rate_limit_scale=0.0, job_seconds=0.3)) as box:
        yield box, Client(box.base_url, box.api_key)
