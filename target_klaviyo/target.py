"""target-klaviyo: put the people of any Singer stream in a Klaviyo list, or take them out."""

from __future__ import annotations

import sys
import typing as t
from functools import cached_property
from pathlib import Path

from singer_sdk import Target
from singer_sdk import typing as th

from klaviyo_core.cli import run_cli
from klaviyo_core.client import KlaviyoConnection
from klaviyo_core.errors import KlaviyoError
from klaviyo_core.settings import (
    CONNECTION_SETTINGS,
    DEFAULT_MAX_CONCURRENCY,
    check_connection_settings,
    config_error,
)
from target_klaviyo.jobs import ImportJobs
from target_klaviyo.lists import check_write_scopes, resolve_list
from target_klaviyo.privacy import private_logger
from target_klaviyo.reader import INPUT_STREAM, TolerantSingerReader
from target_klaviyo.rejects import RowRejected, RunReport
from target_klaviyo.sinks import AddToListSink, KlaviyoListSink, RemoveFromListSink

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

OPERATIONS: dict[str, type[KlaviyoListSink]] = {sink.operation: sink for sink in (AddToListSink, RemoveFromListSink)}

TARGET_SETTINGS = th.PropertiesList(
    th.Property(
        "list_id",
        th.StringType,
        title="List ID",
        description="Id of the Klaviyo list to write to (as in the list's URL). Set this or list_name.",
    ),
    th.Property(
        "list_name",
        th.StringType,
        title="List name",
        description=(
            "Exact name of the Klaviyo list to write to. Set this or list_id. "
            "Several lists with this name is an error that names their ids."
        ),
    ),
    th.Property(
        "create_list_if_missing",
        th.BooleanType,
        default=True,
        title="Create the list if missing",
        description="With list_name: create the list when no list has that name (otherwise fail).",
    ),
    th.Property(
        "operation",
        th.StringType(allowed_values=list(OPERATIONS)),
        default="add",
        title="Operation",
        description=(
            "`add`: upsert each row's profile (needs an `email` column) and add it to the list. "
            "`remove`: take profiles off the list (needs `profile_id` or `email`). "
            "Consent and subscriptions never change."
        ),
    ),
    th.Property(
        "wait_for_completion",
        th.BooleanType,
        default=False,
        title="Wait for import jobs",
        description=(
            "With add: wait until Klaviyo has finished each import job, logging progress, and put "
            "rows Klaviyo could not import in the rejects file."
        ),
    ),
    th.Property(
        "wait_timeout_seconds",
        th.IntegerType(minimum=300, maximum=86_400),
        default=1800,
        title="Wait timeout (seconds)",
        description="How long each import job may take when waiting (300 to 86400).",
    ),
    th.Property(
        "rejects_file",
        th.StringType,
        default="klaviyo-rejects.jsonl",
        title="Rejects file",
        description=(
            "JSONL file for rows that were not written, one `{stream, row, reason}` per line. "
            "Created (replaced) only when a row is rejected."
        ),
    ),
    th.Property(
        "fail_on_rejects",
        th.BooleanType,
        default=False,
        title="Fail on rejects",
        description="Exit non-zero when any row was rejected (after writing all the others).",
    ),
)


class TargetKlaviyo(Target):
    """Singer target that adds people to a Klaviyo list or removes them from it."""

    name = "target-klaviyo"
    message_reader_class = TolerantSingerReader  # a bad input line is rejected, not fatal
    package_name = "klaviyo-singer"  # the distribution that ships this target, for --version
    config_jsonschema = th.PropertiesList(
        *CONNECTION_SETTINGS.wrapped.values(), *TARGET_SETTINGS.wrapped.values()
    ).to_dict()

    def __init__(self, *args: t.Any, validate_config: bool = True, **kwargs: t.Any) -> None:
        super().__init__(*args, validate_config=validate_config, **kwargs)
        if validate_config:
            check_connection_settings(self.config)
            check_target_settings(self.config)
        self.message_reader.on_bad_line = self._reject_input_line

    def _reject_input_line(self, number: int, line: str, reason: str, stream: str | None) -> None:
        """A line the reader could not use: in the rejects file with why, never in the log."""
        self.report.received(stream or INPUT_STREAM)
        self.report.reject(stream or INPUT_STREAM, line, RowRejected("unreadable input line", reason))

    @cached_property
    def connection(self) -> KlaviyoConnection:
        """One connection for every sink: Klaviyo's limits are per account and endpoint."""
        return KlaviyoConnection(self.config, logger=private_logger(self.logger))

    @cached_property
    def import_jobs(self) -> ImportJobs:
        """The run's import jobs: up to max_concurrency uploading or processing at once."""
        return ImportJobs(
            max_concurrency=int(self.config.get("max_concurrency") or DEFAULT_MAX_CONCURRENCY),
            wait_for_completion=bool(self.config.get("wait_for_completion")),
            timeout=float(self.config.get("wait_timeout_seconds") or 1800),
        )

    @override
    def _write_state_message(self, state: dict) -> None:
        """A STATE only once Klaviyo has accepted (and, when waiting, finished) every job before it."""
        if "import_jobs" in self.__dict__:
            self.import_jobs.finish()
        super()._write_state_message(state)

    @cached_property
    def list_id(self) -> str:
        """Resolved once, when the first stream's schema arrives (by name it may create the list).

        The scopes the run needs are checked first, so a key that cannot write creates nothing.
        """
        check_write_scopes(self.connection)
        return resolve_list(self.connection, self.config, self.logger)

    @cached_property
    def report(self) -> RunReport:
        return RunReport(self.config.get("rejects_file") or "klaviyo-rejects.jsonl")

    @override
    def get_sink_class(self, stream_name: str) -> type[KlaviyoListSink]:
        return OPERATIONS[self.config.get("operation") or "add"]

    @override
    def process_endofpipe(self) -> None:
        """Drain (the SDK then emits state), summarise, and fail on rejects when asked to."""
        try:
            super().process_endofpipe()
        finally:
            self.report.close()
            self.report.log_summary(self.logger)
        rejected = self.report.rejected_total
        if rejected and self.config.get("fail_on_rejects"):
            rows = "1 row was" if rejected == 1 else f"{rejected} rows were"
            raise KlaviyoError(
                f"{rows} rejected and fail_on_rejects is on: see {self.report.path} for rows and reasons."
            )


def check_target_settings(config: t.Mapping[str, t.Any]) -> None:
    """Rules the JSON schema cannot express, each as a one-line error naming the fix.

    The SDK has already checked the schema (``operation`` is add or remove,
    ``wait_timeout_seconds`` within 300..86400) and reported any violation by name.
    """
    list_id, list_name = (str(config.get(key) or "").strip() for key in ("list_id", "list_name"))
    if bool(list_id) == bool(list_name):
        which = "both are set" if list_id else "neither is set"
        raise config_error(f"Set exactly one of list_id and list_name ({which}).")
    raw_name = str(config.get("list_name") or "")
    if list_name and raw_name != list_name:
        # Klaviyo keeps the spaces, and a name must match exactly: a padded name made a second list.
        raise config_error(
            f"Setting list_name {raw_name!r} starts or ends with spaces: remove them "
            "(names match exactly, so a padded name would create or look for another list)."
        )
    rejects = str(config.get("rejects_file") or "klaviyo-rejects.jsonl")
    if Path(rejects).is_dir():
        raise config_error(f"Setting rejects_file: {rejects} is a folder; give a file path, e.g. {rejects.rstrip('/')}/rejects.jsonl.")
    folder = Path(rejects).resolve().parent
    if not folder.is_dir():
        raise config_error(f"Setting rejects_file: folder {folder} does not exist; create it or choose another path.")


def cli() -> None:
    """Console entry point: the SDK's CLI, with Klaviyo errors shown as one line."""
    run_cli(TargetKlaviyo.cli)
