"""What a test scripts into the sandbox: answers for chosen requests, and a record of every request.

    sb.script("POST", "/api/profile-bulk-import-jobs", [(429, {"errors": [...]}, {"Retry-After": "1"})])
    sb.script("GET", r"/api/lists/[^/]+", [(503, None)] * 2)     # the next two list reads fail
    sb.requests                                                  # Recorded requests (record_requests=True)

A scripted answer replaces the next request that matches (method, a regular expression matching the
whole path, and an optional ``when(recorded)`` predicate), before authentication and everything else,
as a fault on the way to Klaviyo would; the request is still recorded and logged. Each entry is used
once, in order. A test that scripts a Klaviyo error should give Klaviyo's shape (``errors`` array);
``None`` as the body sends the sandbox's generic error for the status.
"""

from __future__ import annotations

import json
import re
import threading
import time
import typing as t
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

# (status, body) or (status, body, headers); body a JSON-able document, bytes, or None.
Answer = tuple


@dataclass
class Recorded:
    """One request as the sandbox received it."""

    method: str
    path: str
    query: dict[str, str]
    raw: bytes
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)

    @property
    def body(self) -> t.Any:
        """The JSON body, or None for an empty or non-JSON one (form posts: see ``form``)."""
        try:
            return json.loads(self.raw) if self.raw else None
        except ValueError:
            return None

    @property
    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.raw.decode("utf-8", "replace")))

    @property
    def raw_size(self) -> int:
        return len(self.raw)

    @property
    def content_type(self) -> str | None:
        return self.headers.get("Content-Type")


@dataclass
class _Entry:
    method: str
    pattern: re.Pattern
    answers: list
    when: t.Callable[[Recorded], bool] | None


class Script:
    """Scripted answers and the request record of one sandbox (thread-safe: the server is threaded)."""

    def __init__(self, record: bool) -> None:
        self.record = record
        self.requests: list[Recorded] = []
        self._entries: list[_Entry] = []
        self._lock = threading.Lock()

    def add(
        self,
        method: str,
        path_pattern: str,
        answers: t.Iterable[Answer],
        when: t.Callable[[Recorded], bool] | None = None,
    ) -> None:
        entry = _Entry(method.upper(), re.compile(path_pattern), list(answers), when)
        with self._lock:
            self._entries.append(entry)

    def receive(self, method: str, path: str, query: str, raw: bytes, headers: t.Any) -> Answer | None:
        """Record the request (when recording) and take the scripted answer it gets, if any."""
        if not self.record and not self._entries:
            return None  # the benchmark's path: nothing to do
        recorded = Recorded(method, path, dict(parse_qsl(query, keep_blank_values=True)), raw, dict(headers.items()))
        with self._lock:
            if self.record:
                self.requests.append(recorded)
            for entry in self._entries:
                matches = entry.method == method and entry.pattern.fullmatch(path) and entry.answers
                if matches and (entry.when is None or entry.when(recorded)):
                    return entry.answers.pop(0)
        return None

    @property
    def pending(self) -> int:
        """Scripted answers not yet given (a test may check that all were used)."""
        with self._lock:
            return sum(len(e.answers) for e in self._entries)
