"""Run a plugin's CLI so that known failures end as one clear line, not a traceback."""

from __future__ import annotations

import json
import logging
import signal
import sys
import typing as t
from pathlib import Path

import click
import msgspec
from singer_sdk.exceptions import ConfigValidationError
from typing_extensions import override

from klaviyo_core.errors import KlaviyoError
from klaviyo_core.sdk_compat import CONFIG_FAILED_SUMMARY


def run_cli(command: t.Callable[..., t.Any]) -> None:
    """Call a click command; a KlaviyoError or bad config exits 1 with its message only."""
    logger = getattr(command, "logger", None)  # the SDK's command logs a summary after the errors
    if isinstance(logger, logging.Logger) and not any(isinstance(f, _NoSummary) for f in logger.filters):
        logger.addFilter(_NoSummary())
    if isinstance(command, click.Command):
        check_input_file_options(command)
    try:
        command()
    except SystemExit as exc:
        # The SDK (click) ends a run with exit code 0 even when a signal stopped it early.
        if _interrupted_by and exc.code in (0, None):
            sys.exit(interrupted_exit_code(_interrupted_by[-1]))
        raise
    except ConfigValidationError as exc:
        for message in exc.errors or [str(exc)]:
            _report(message)
        sys.exit(1)
    except KlaviyoError as exc:
        _report(str(exc))
        sys.exit(1)


#: Signals that stopped this run early (set by the plugins' signal handlers).
_interrupted_by: list[int] = []


def interrupted_exit_code(signum: int) -> int:
    """What a shell reports for a process a signal stopped: 130 for Ctrl-C, 143 for SIGTERM.

    A scheduler (cron, Kubernetes, Airflow, Dagster) must see an interrupted run as failed.
    """
    return 128 + signum


def note_interrupted(signum: int, logger: logging.Logger, doing: str) -> None:
    """Remember that a signal stopped the run (its exit code is then not 0), and log what happens next."""
    _interrupted_by.append(signum)
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    logger.warning("Received %s: %s, then exiting with code %d.", name, doing, interrupted_exit_code(signum))


def interrupted() -> bool:
    return bool(_interrupted_by)


#: The JSON files a plugin reads, and what to do when one is broken.
_INPUT_FILES = {
    "--config": ("Config file", "fix the file"),
    "--state": ("State file", "fix it, or leave out --state to sync everything again"),
    "--catalog": ("Catalog file", "fix it, or run --discover to make a new one"),
}


def check_input_file_options(command: click.Command) -> click.Command:
    """Check each --config/--state/--catalog file as click parses the option (the SDK shows a traceback).

    Uses click's public parameter callbacks: the option's own callback (the SDK's config
    parser for --config) still runs, after the check.
    """
    for param in command.params:
        option = next((name for name in param.opts if name in _INPUT_FILES), None)
        if option is not None and not getattr(param.callback, "checks_input_files", False):
            param.callback = _checking_callback(option, param.callback)
    return command


def _checking_callback(option: str, callback: t.Callable[..., t.Any] | None) -> t.Callable[..., t.Any]:
    def check_then_parse(ctx: click.Context, param: click.Parameter, value: t.Any) -> t.Any:
        for given in value if isinstance(value, (tuple, list)) else [value]:
            path = getattr(given, "name", given)  # --state and --catalog are files click has opened
            if path and path != "ENV":
                check_input_file(option, str(path))
        return callback(ctx, param, value) if callback is not None else value

    check_then_parse.checks_input_files = True  # type: ignore[attr-defined]  # wrap once, however often run
    return check_then_parse


def check_input_file(option: str, path: str) -> None:
    """A missing or unparsable input file as one line.

    The message gives the position of the problem, never the file's content: it may hold secrets.
    """
    what, fix = _INPUT_FILES[option]
    try:
        data = Path(path).read_bytes()
        if _is_json_object(data):
            return
        document = json.loads(data)
    except FileNotFoundError:
        raise KlaviyoError(f"{what} {path} does not exist: check the {option} path.") from None
    except OSError as exc:
        raise KlaviyoError(f"{what} {path} cannot be read ({exc.strerror}): check the {option} path.") from None
    except UnicodeDecodeError:
        raise KlaviyoError(f"{what} {path} is not UTF-8 text: save it as UTF-8 JSON.") from None
    except ValueError as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "not JSON"
        raise KlaviyoError(f"{what} {path} is not valid JSON ({detail}{where}): {fix}.") from None
    if not isinstance(document, dict):
        raise KlaviyoError(f"{what} {path} must hold a JSON object, not a {type(document).__name__}: {fix}.")


def _is_json_object(data: bytes) -> bool:
    """Whether ``data`` is UTF-8 JSON holding an object, checked without building it: a catalog
    with a stream per list and segment is ~10 MB, ~100 MB as Python objects. Any doubt (msgspec
    refuses a lone surrogate escape that JSON allows) is left to ``json``, which says where."""
    try:
        data.decode()
        msgspec.json.decode(data, type=dict[str, msgspec.Raw])
    except (UnicodeDecodeError, msgspec.DecodeError, msgspec.ValidationError):
        return False
    return True


class _NoSummary(logging.Filter):
    """Drop the SDK's "Config validation failed" line: the errors before it say what to fix."""

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != CONFIG_FAILED_SUMMARY


def _report(message: str) -> None:
    logging.getLogger("klaviyo").error("%s", message)
    if not logging.getLogger().handlers and not logging.getLogger("klaviyo").handlers:
        print(f"ERROR: {message}", file=sys.stderr)  # noqa: T201 - logging not set up yet
