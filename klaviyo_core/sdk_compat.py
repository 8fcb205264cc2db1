"""Library internals klaviyo_core relies on (for both plugins), in one place.

Written against singer-sdk 0.54.9 and requests 2.x as pinned in requirements/lock.txt;
tests/target/test_sdk_compat.py fails loudly when an upgrade changes any of them.

* requests' ``Response._content`` / ``_content_consumed``: ``Response.content`` reads the
  body 10 KB at a time, with no public way to choose the size; ``read_body`` fills it in
  one read (half the CPU on large pages), through requests' own "not read yet" marker;
  ``filled_response`` builds an answer read without urllib3 (see
  ``klaviyo_core.adapter.DirectGetAdapter``) with its body set the same way.
* singer-sdk's ``"Config validation failed"`` log line (``SingerCommand.invoke``): logged
  after the errors themselves; ``klaviyo_core.cli`` filters it out by its text, as the SDK
  has no option to leave it out and it tells the user nothing the errors did not.
"""

from __future__ import annotations

import typing as t

import requests
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

#: The versions this module was written against (the lock file's).
SDK_VERSION = "0.54.9"
#: The summary line singer-sdk logs after config errors.
CONFIG_FAILED_SUMMARY = "Config validation failed"
#: Answers are read whole: ``iter_content(None)`` (urllib3's ``read()``). ``Response.content``
#: reads 10 KB at a time: a 1 MB page of events then took ~100 reads, each releasing and
#: re-taking the GIL while other threads parse pages, and twice the CPU in requests' read
#: loop. Reads of a fixed size (1 MB) held each page twice while it was read (a buffer per
#: read, then the pieces joined): 2 MB per worker reading a 1.06 MB page, 1 MB read whole.
READ_WHOLE_BODY = None


def read_body(response: requests.Response) -> bytes:
    """``response.content``, read in one go (same errors, same connection reuse)."""
    if response.__dict__.get("_content") is False:  # not read yet (requests' own marker)
        response._content = b"".join(response.iter_content(READ_WHOLE_BODY)) or b""  # noqa: SLF001 - see above
        response._content_consumed = True  # type: ignore[attr-defined]  # noqa: SLF001 - see above
    return response.content


def filled_response(
    request: requests.PreparedRequest,
    status: int,
    reason: str,
    headers: t.Iterable[tuple[str, str]],
    body: bytes,
    adapter: t.Any,
) -> requests.Response:
    """The ``Response`` requests' ``HTTPAdapter.build_response`` makes of an answer, its body read:
    repeated headers joined with ", " as urllib3 joins them, a ``raw`` already read to its end, no
    cookies."""
    response = requests.Response()
    joined: CaseInsensitiveDict[str] = CaseInsensitiveDict()
    for name, value in headers:
        joined[name] = f"{joined[name]}, {value}" if name in joined else value
    response.status_code, response.reason, response.headers = status, reason, joined
    response.encoding = get_encoding_from_headers(joined)
    response.url, response.request, response.connection = request.url or "", request, adapter
    response._content = body  # noqa: SLF001 - see the module's notes
    response._content_consumed = True  # type: ignore[attr-defined]  # noqa: SLF001 - see the module's notes
    response.raw = _Consumed()
    return response


class _Consumed:
    """A ``Response.raw`` already read to its end: what requests' redirect handling and
    ``Response.close`` call on it do nothing."""

    _original_response = None  # requests' cookie extraction skips an answer without one

    def read(self, *args: t.Any, **kwargs: t.Any) -> bytes:
        return b""

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass
