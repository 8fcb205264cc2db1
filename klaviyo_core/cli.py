"""Run a plugin's CLI so that known failures end as one clear line, not a traceback."""

from __future__ import annotations

import json
import logging
import signal
import sys
import typing as t
from pathlib import Path

from singer_sdk.exceptions import ConfigValidationError
from typing_extensions import override

from klaviyo_core.errors import KlaviyoError


def run_cli(command: t.Callable[..., t.Any]) -> None:
    """Call a click command; a KlaviyoError or bad config exits 1 with its message only."""
    logger = getattr(command, "logger", None)  # the SDK's command logs a summary after the errors
    if isinstance(logger, logging.Logger) and not any(isinstance(f, _NoSummary) for f in logger.filters):
        logger.addFilter(_NoSummary())
    try:
        check_input_files(sys.argv[1:])
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


def check_input_files(argv: t.Sequence[str]) -> None:
    """A missing or unparsable --config/--state/--catalog file as one line (the SDK shows a traceback).

    The message gives the position of the problem, never the file's content: it may hold secrets.
    """
    for index, arg in enumerate(argv):
        option, _, value = arg.partition("=")
        if option not in _INPUT_FILES:
            continue
        path = value if value else (argv[index + 1] if index + 1 < len(argv) else "")
        if not path or path == "ENV":
            continue
        what, fix = _INPUT_FILES[option]
        try:
            document = json.loads(Path(path).read_bytes())
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


def argv_option(option: str, argv: t.Sequence[str] | None = None) -> str | None:
    """The value given to ``option`` on the command line (``--x value`` or ``--x=value``), else None.

    For CLI callbacks that run before click has parsed the later options.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    for index, arg in enumerate(args):
        name, sep, value = arg.partition("=")
        if name == option:
            return value if sep else (args[index + 1] if index + 1 < len(args) else None)
    return None


class _NoSummary(logging.Filter):
    """Drop the SDK's "Config validation failed" line: the errors before it say what to fix."""

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "Config validation failed"


def _report(message: str) -> None:
    logging.getLogger("klaviyo").error("%s", message)
    if not logging.getLogger().handlers and not logging.getLogger("klaviyo").handlers:
        print(f"ERROR: {message}", file=sys.stderr)  # noqa: T201 - logging not set up yet
