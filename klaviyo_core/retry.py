"""How long to wait before retrying: exactly what Klaviyo says, else back off with jitter."""

from __future__ import annotations

import random
import typing as t

import requests
from singer_sdk.exceptions import RetriableAPIError

#: Failures worth another try: transient answers and network trouble.
RETRIABLE_EXCEPTIONS: tuple[type[Exception], ...] = (
    RetriableAPIError,
    ConnectionError,  # includes ConnectionResetError
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)

DEFAULT_MAX_TRIES = 8


#: One generator for every request's jitter: seeding a ``random.Random()`` per request cost
#: 2% of a profiles sync's CPU.
_JITTER = random.Random()


def wait_generator(
    base: float = 1.0,
    cap: float = 60.0,
    rng: random.Random | None = None,
) -> t.Generator[float, BaseException | None, None]:
    """A wait generator that is sent each failure before it answers (see ``KlaviyoConnection._retry``).

    A 429 carrying ``Retry-After`` waits exactly that long (Klaviyo's windows
    reset then, and waiting less only earns another 429). Anything else waits a
    random time up to ``base * 2**attempt`` seconds, capped ("full jitter"), so
    parallel workers do not retry in lock-step.
    """
    rng = rng or _JITTER  # jitter, not cryptography
    attempt = 0
    failure = yield  # type: ignore[misc]  # primed with next()
    while True:
        retry_after = getattr(failure, "retry_after", None)
        if retry_after is not None:
            wait = float(retry_after)
        else:
            ceiling = min(cap, base * 2**attempt)
            wait = ceiling / 2 + rng.uniform(0, ceiling / 2)
        attempt += 1
        failure = yield wait
