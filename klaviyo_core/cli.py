"""Run a plugin's CLI so that known failures end as one clear line, not a traceback."""

from __future__ import annotations

import logging
import sys
import typing as t

from singer_sdk.exceptions import ConfigValidationError

from klaviyo_core.errors import KlaviyoError


def run_cli(command: t.Callable[..., t.Any]) -> None:
    """Call a click command; a KlaviyoError or bad config exits 1 with its message only."""
    try:
        command()
    except ConfigValidationError as exc:
        for message in exc.errors or [str(exc)]:
            _report(message)
        sys.exit(1)
    except KlaviyoError as exc:
        _report(str(exc))
        sys.exit(1)


def _report(message: str) -> None:
    logging.getLogger("klaviyo").error("%s", message)
    if not logging.getLogger().handlers and not logging.getLogger("klaviyo").handlers:
        print(f"ERROR: {message}", file=sys.stderr)  # noqa: T201 - logging not set up yet
