"""What a test scripts into the sandbox: answers for chosen requests, and a record of every request.

    sb.script("POST", "/api/profile-bulk-import-jobs", [(429, {"errors": [...]}, {"Retry-After": "1"})])
    sb.script("GET", r"/api/lists/[^/]+", [(503, None)] * 2)     # the next two list reads fail
    sb.script("GET", "/oauth/authorize", [lambda request: (302, None, {"Location": ...})])
    sb.requests                                                  # Recorded requests (record_requests=True)

A scripted answer replaces the next request that matches (method, a regular expression matching the
whole path, and an optional ``when(recorded)`` predicate), before authentication and everything else,
as a fault on the way to Klaviyo would; the request is still recorded and logged. Each answer is used
once, in order (``itertools.repeat(answer)``: every time). A test that scripts a Klaviyo error should
give Klaviyo's shape (``errors`` array); ``None`` as the body sends the sandbox's generic error for the
status. An answer may be a function of the Recorded request, called outside any lock (it may wait, e.g.
on a barrier); when it returns None the sandbox answers as usual.
"""

from __future__ import annotations

import json
import re
import threading
import time
import typing as t
from dataclasses import dataclass, field
from urllib.parse import parse_qsl


@dataclass
class Recorded:
    """One request as the sandbox received it."""

    method: str
    path: str
    query: dict[str, str]
    raw: bytes
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)
    status: int | None = None  # the status answered, once sent

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


# (status, body) or (status, body, headers); body a JSON-able document, bytes, or None. Or a function
# of the request giving one of those, or None for the sandbox's own answer.
Answer = tuple | t.Callable[[Recorded], tuple | None]


_DONE = object()


class _Entry:
    def __init__(self, method: str, pattern: str, answers: t.Iterable[Answer], when) -> None:
        self.method, self.pattern, self.when = method.upper(), re.compile(pattern), when
        self.answers = iter(answers)  # itertools.repeat(answer): every matching request
        self.upcoming: t.Any = next(self.answers, _DONE)

    def matches(self, method: str, path: str, recorded: Recorded) -> bool:
        if self.upcoming is _DONE or self.method != method or not self.pattern.fullmatch(path):
            return False
        return self.when is None or self.when(recorded)

    def take(self) -> Answer:
        answer, self.upcoming = self.upcoming, next(self.answers, _DONE)
        return answer


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
        entry = _Entry(method, path_pattern, answers, when)
        with self._lock:
            self._entries.append(entry)

    def receive(
        self, method: str, path: str, query: str, raw: bytes, headers: t.Any
    ) -> tuple[Recorded | None, tuple | None]:
        """Record the request (when recording) and take the scripted answer it gets, if any."""
        if not self.record and not self._entries:
            return None, None  # the benchmark's path: nothing to do
        recorded = Recorded(method, path, dict(parse_qsl(query, keep_blank_values=True)), raw, dict(headers.items()))
        answer: Answer | None = None
        with self._lock:
            if self.record:
                self.requests.append(recorded)
            for entry in self._entries:
                if entry.matches(method, path, recorded):
                    answer = entry.take()
                    break
        if callable(answer):
            answer = answer(recorded)
        return recorded, answer
