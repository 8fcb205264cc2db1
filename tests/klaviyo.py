"""The loopback Klaviyo (klaviyo_sandbox) as plugin tests set it up and read it back.

``Account`` wraps a running sandbox that records its requests: lists and profiles to start
from, the membership the run left, the requests the plugin made (its scope probes kept
apart), and answers to script for the next matching request.
"""

from __future__ import annotations

import typing as t

from klaviyo_sandbox import Sandbox, SandboxConfig
from klaviyo_sandbox.script import Recorded


def sandbox_config(**overrides: t.Any) -> SandboxConfig:
    """A small account with few generated records, no rate limits, every request recorded."""
    settings: dict[str, t.Any] = {"seed": 11, "scale": 0.01, "rate_limit_scale": 0.0, "record_requests": True}
    return SandboxConfig(**{**settings, **overrides})


def is_scope_probe(request: Recorded) -> bool:
    """A one-item page or an incomplete write body: how klaviyo_core.scopes probes a scope."""
    if request.method == "GET":
        return request.query in ({"page[size]": "1"}, {"fields[metric]": "name"})
    data = request.body.get("data") if isinstance(request.body, dict) else None
    attributes = data.get("attributes") if isinstance(data, dict) else None
    if request.method == "POST" and request.path == "/api/lists":
        return attributes == {}
    if request.method == "POST" and request.path == "/api/profile-bulk-import-jobs":
        return attributes == {"profiles": {"data": []}}
    return False


def the_work(request: Recorded) -> bool:
    """Scripted answers are for the requests that do the work, not for the scope probes."""
    return not is_scope_probe(request)


class Account:
    def __init__(self, box: Sandbox) -> None:
        self.box = box
        self.store = box.store

    @property
    def base_url(self) -> str:
        return self.box.base_url

    @property
    def api_key(self) -> str:
        return self.box.api_key

    # -- what the account holds ------------------------------------------------------

    def add_list(self, name: str) -> str:
        return self.store.create_list(name, None)["id"]

    def add_profile(self, email: str, list_id: str | None = None) -> str:
        profile, _ = self.store.upsert_profile({"email": email})
        if list_id:
            self.store.add_members(list_id, [profile["id"]])
        return profile["id"]

    def created_lists(self) -> dict[str, str]:
        """Lists created since the start (by a test or a plugin): id -> name."""
        return {list_id: record["attributes"]["name"] for list_id, record in self.store.new_lists.items()}

    def members(self, list_id: str) -> set[str]:
        return set(self.store.member_ids(list_id))

    def member_emails(self, list_id: str) -> set[str]:
        return {self.store.get_profile(pid)["attributes"]["email"] for pid in self.members(list_id)}

    @property
    def jobs(self) -> dict[str, t.Any]:
        """Profile import jobs by id."""
        return self.store.jobs.jobs

    # -- what the plugin sent ---------------------------------------------------------

    @property
    def requests(self) -> list[Recorded]:
        """The requests that did the work (scope probes left out)."""
        return [r for r in self.box.requests if not is_scope_probe(r)]

    @property
    def probes(self) -> list[Recorded]:
        return [r for r in self.box.requests if is_scope_probe(r)]

    def calls(self, method: str, path_prefix: str = "/api/") -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    @property
    def writes(self) -> list[Recorded]:
        return [r for r in self.requests if r.method in ("POST", "DELETE", "PATCH")]

    # -- answers a test scripts -----------------------------------------------------

    def script(
        self,
        method: str,
        path_pattern: str,
        status: int,
        headers: dict | None = None,
        body: t.Any = None,
        when: t.Callable[[Recorded], bool] = the_work,
    ) -> None:
        """Answer the next matching request (not a scope probe) with this instead of the normal answer."""
        self.box.script(method, path_pattern, [(status, body, headers or {})], when)
