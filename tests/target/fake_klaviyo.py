"""A small Klaviyo on a loopback port: just the endpoints target-klaviyo calls.

It keeps lists, profiles, list membership and import jobs in memory, records
every request, and can be told to misbehave (scripted responses, jobs that never
finish, profiles that fail to import). Tests read it like a real account.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import typing as t
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

API_KEY = "pk_test_0123456789abcdef"
_FILTER = re.compile(r"^(equals|any)\(([\w.]+),(.*)\)$", re.S)


def _is_scope_probe(request: Recorded) -> bool:
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


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    body: t.Any
    raw_size: int
    at: float
    content_type: str | None = None


@dataclass
class Job:
    id: str
    list_ids: list[str]
    total: int
    failed_emails: list[str]
    polls: int = 0


@dataclass
class FakeKlaviyo:
    """State and behaviour; ``serve()`` puts it on a port."""

    lists: dict[str, str] = field(default_factory=dict)  # id -> name
    profiles: dict[str, dict] = field(default_factory=dict)  # id -> attributes
    members: dict[str, set[str]] = field(default_factory=dict)  # list id -> profile ids
    jobs: dict[str, Job] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    #: the target's scope probes (klaviyo_core.scopes), kept apart from the requests that do the work
    probes: list[Recorded] = field(default_factory=list)
    #: polls before a job reports "complete"; None: never
    job_polls_to_complete: int | None = 1
    #: emails whose profiles fail to import (reported as import errors)
    failing_emails: set[str] = field(default_factory=set)
    #: list creations that succeed but answer 503, as when the answer is lost in transit
    lose_create_answers: int = 0
    #: (method, path regex) -> list of (status, headers, body) served before normal handling
    scripted: list[tuple[str, str, int, dict, t.Any]] = field(default_factory=list)
    _ids: t.Iterator[int] = field(default_factory=lambda: itertools.count(1))
    base_url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- helpers for tests -------------------------------------------------------

    def add_list(self, name: str, list_id: str | None = None) -> str:
        list_id = list_id or f"L{next(self._ids):05d}"
        self.lists[list_id] = name
        self.members.setdefault(list_id, set())
        return list_id

    def add_profile(self, email: str, list_id: str | None = None, profile_id: str | None = None) -> str:
        profile_id = profile_id or f"P{next(self._ids):06d}"
        self.profiles[profile_id] = {"email": email}
        if list_id:
            self.members[list_id].add(profile_id)
        return profile_id

    def member_emails(self, list_id: str) -> set[str]:
        return {self.profiles[pid]["email"] for pid in self.members.get(list_id, set())}

    def script(self, method: str, path_pattern: str, status: int, headers: dict | None = None, body: t.Any = None):
        """Serve this answer once, instead of the normal one, to the next matching request."""
        self.scripted.append((method, path_pattern, status, headers or {}, body))

    def calls(self, method: str, path_prefix: str = "/api/") -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    @property
    def writes(self) -> list[Recorded]:
        return [r for r in self.requests if r.method in ("POST", "DELETE", "PATCH")]

    # -- request handling -------------------------------------------------------------

    def handle(self, method: str, url: str, headers: t.Mapping[str, str], raw: bytes) -> tuple[int, dict, t.Any]:
        with self._lock:  # the target drains streams in threads
            return self._handle(method, url, headers, raw)

    def _handle(self, method: str, url: str, headers: t.Mapping[str, str], raw: bytes) -> tuple[int, dict, t.Any]:
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        body = json.loads(raw) if raw else None
        recorded = Recorded(method, parts.path, query, body, len(raw), time.monotonic(), headers.get("Content-Type"))
        probe = _is_scope_probe(recorded)
        (self.probes if probe else self.requests).append(recorded)
        if headers.get("Authorization") != f"Klaviyo-API-Key {API_KEY}":
            return _error(401, "not_authenticated", "Missing or invalid private key.")
        if probe:  # scripted answers are for the requests that do the work
            return self.route(method, parts.path, query, body)
        for i, (m, pattern, status, extra, answer) in enumerate(self.scripted):
            if m == method and re.fullmatch(pattern, parts.path):
                del self.scripted[i]
                return status, extra, answer
        return self.route(method, parts.path, query, body)

    def route(self, method: str, path: str, query: dict, body: t.Any) -> tuple[int, dict, t.Any]:
        routes = [
            ("GET", r"/api/lists", self.get_lists),
            ("POST", r"/api/lists", self.create_list),
            ("GET", r"/api/lists/([^/]+)", self.get_list),
            ("DELETE", r"/api/lists/([^/]+)/relationships/profiles", self.remove_members),
            ("GET", r"/api/profiles", self.get_profiles),
            ("POST", r"/api/profile-bulk-import-jobs", self.create_job),
            ("GET", r"/api/profile-bulk-import-jobs/([^/]+)", self.get_job),
            ("GET", r"/api/profile-bulk-import-jobs/([^/]+)/import-errors", self.get_import_errors),
        ]
        for route_method, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if route_method == method and match:
                return handler(*match.groups(), query=query, body=body)
        return _error(404, "not_found", f"No route {method} {path}")

    def _page(self, path: str, query: dict, items: list[dict], max_size: int) -> tuple[int, dict, t.Any]:
        size = min(int(query.get("page[size]", max_size)), max_size)
        start = int(query.get("page[cursor]", 0))
        document: dict = {"data": items[start : start + size], "links": {"self": self.base_url + path}}
        if start + size < len(items):
            document["links"]["next"] = f"{self.base_url}{path}?" + urlencode({**query, "page[cursor]": start + size})
        return 200, {}, document

    def get_lists(self, *, query: dict, body: t.Any) -> tuple[int, dict, t.Any]:
        names = _filter_values(query.get("filter", ""), "name")
        wanted = {name.lower() for name in names or []}  # looser than needed: the target compares exactly
        items = [_list_resource(i, n) for i, n in self.lists.items() if names is None or n.lower() in wanted]
        return self._page("/api/lists", query, items, 10)

    def create_list(self, *, query: dict, body: t.Any) -> tuple[int, dict, t.Any]:
        if not (body["data"].get("attributes") or {}).get("name"):  # like Klaviyo (the target's scope probe)
            return _error(400, "invalid", "`name` is required.", pointer="/data/attributes/name")
        list_id = self.add_list(body["data"]["attributes"]["name"])
        if self.lose_create_answers:
            self.lose_create_answers -= 1
            return _error(503, "unavailable", "Service unavailable.")
        return 201, {}, {"data": _list_resource(list_id, self.lists[list_id])}

    def get_list(self, list_id: str, *, query: dict, body: t.Any) -> tuple[int, dict, t.Any]:
        if list_id not in self.lists:
            return _error(404, "not_found", f"A list with id {list_id} does not exist.")
        return 200, {}, {"data": _list_resource(list_id, self.lists[list_id])}

    def remove_members(self, list_id: str, *, query: dict, body: t.Any) -> tuple[int, dict, t.Any]:
        if len(body["data"]) > 1000:
            return _error(400, "invalid", "At most 1000 profiles per request.")
        for k, item in enumerate(body["data"]):  # like Klaviyo: one unknown id refuses the whole call
            if item["id"] not in self.profiles:
                return _error(400, "invalid", f"Profile {item['id']!r} does not exist.", pointer=f"/data/{k}/id")
        for item in body["data"]:
            self.members.get(list_id, set()).discard(item["id"])
        return 204, {}, None

    def get_profiles(self, *, query: dict, body: t.Any) -> tuple[int, dict, t.Any]:
        emails = {e.lower() for e in _filter_values(query.get("filter", ""), "email") or []}
        items = [
            {"type": "profile", "id": pid, "attributes": {"email": attrs["email"]}}
            for pid, attrs in self.profiles.items()
            if attrs.get("email", "").lower() in emails
        ]
        return self._page("/api/profiles", query, items, 100)

    def create_job(self, *, query: dict, body: t.Any) -> tuple[int, dict, t.Any]:
        data = body["data"]
        assert data["type"] == "profile-bulk-import-job"
        profiles = data["attributes"]["profiles"]["data"]
        if not profiles:  # like Klaviyo (the target's scope probe)
            return _error(400, "invalid", "At least one profile is required.", pointer="/data/attributes/profiles")
        list_ids = [item["id"] for item in data.get("relationships", {}).get("lists", {}).get("data", [])]
        failed = []
        by_email = {p["email"].lower(): pid for pid, p in self.profiles.items()}
        for profile in profiles:
            attributes = profile["attributes"]
            if attributes["email"] in self.failing_emails:
                failed.append(attributes["email"])
                continue
            profile_id = self._upsert(attributes, by_email)
            for list_id in list_ids:
                self.members.setdefault(list_id, set()).add(profile_id)
        job = Job(id=f"J{next(self._ids):05d}", list_ids=list_ids, total=len(profiles), failed_emails=failed)
        self.jobs[job.id] = job
        return 202, {}, {"data": self._job_resource(job, "queued")}

    def _upsert(self, attributes: dict, by_email: dict[str, str]) -> str:
        profile_id = by_email.get(attributes["email"].lower())
        if profile_id:
            self.profiles[profile_id].update(attributes)
            return profile_id
        profile_id = f"P{next(self._ids):06d}"
        self.profiles[profile_id] = dict(attributes)
        by_email[attributes["email"].lower()] = profile_id
        return profile_id

    def get_job(self, job_id: str, *, query: dict, body: t.Any) -> tuple[int, dict, t.Any]:
        job = self.jobs[job_id]
        job.polls += 1
        done = self.job_polls_to_complete is not None and job.polls >= self.job_polls_to_complete
        return 200, {}, {"data": self._job_resource(job, "complete" if done else "processing")}

    def get_import_errors(self, job_id: str, *, query: dict, body: t.Any) -> tuple[int, dict, t.Any]:
        job = self.jobs[job_id]
        items = [
            {
                "type": "import-error",
                "id": f"E{i}",
                "attributes": {
                    "code": "invalid",
                    "title": "Invalid input",
                    "detail": "The profile could not be imported.",
                    "source": {"pointer": "/data"},
                    "original_payload": {"email": email},
                },
            }
            for i, email in enumerate(job.failed_emails)
        ]
        return self._page(f"/api/profile-bulk-import-jobs/{job_id}/import-errors", query, items, 100)

    def _job_resource(self, job: Job, status: str) -> dict:
        finished = status == "complete"
        failed = len(job.failed_emails) if finished else 0
        return {
            "type": "profile-bulk-import-job",
            "id": job.id,
            "attributes": {
                "status": status,
                "total_count": job.total,
                "completed_count": job.total - failed if finished else 0,
                "failed_count": failed,
            },
        }

    # -- serving -------------------------------------------------------------------------

    def serve(self) -> ThreadingHTTPServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers, document = fake.handle(self.command, self.path, self.headers, raw)
                payload = json.dumps(document).encode() if document is not None else b""
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/vnd.api+json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _answer  # noqa: N815 - http.server's names

            def log_message(self, *args: t.Any) -> None:  # keep test output quiet
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return server


def _filter_values(expression: str, field_name: str) -> list[str] | None:
    """Values of ``equals(field,[...])``/``any(field,[...])`` (scalar or list form), else None."""
    match = _FILTER.match(expression)
    if not match or match.group(2) != field_name:
        return None
    value = json.loads(match.group(3))
    return value if isinstance(value, list) else [value]


def _list_resource(list_id: str, name: str) -> dict:
    return {"type": "list", "id": list_id, "attributes": {"name": name, "created": "2026-01-01T00:00:00+00:00"}}


def _error(status: int, code: str, detail: str, pointer: str | None = None) -> tuple[int, dict, t.Any]:
    error = {"id": "x", "status": status, "code": code, "title": "Error", "detail": detail}
    if pointer:
        error["source"] = {"pointer": pointer}
    return status, {}, {"errors": [error]}
