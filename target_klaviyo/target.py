"""target-klaviyo: write the rows of any Singer stream to Klaviyo.

List membership (add, remove), profile upserts, consent (subscribe, unsubscribe),
suppression (suppress, unsuppress) and events (track); see docs/target.md.
"""

from __future__ import annotations

import sys
import typing as t
from functools import cached_property
from pathlib import Path

from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError

from klaviyo_core.cli import interrupted, interrupted_exit_code, note_interrupted, run_cli
from klaviyo_core.client import KlaviyoConnection
from klaviyo_core.env_config import with_typed_config
from klaviyo_core.errors import KlaviyoError
from klaviyo_core.setting_names import check_setting_names
from klaviyo_core.settings import (
    CONNECTION_SETTINGS,
    check_connection_settings,
    config_error,
    redact_config_errors,
)
from target_klaviyo.jobs import ImportJobs
from target_klaviyo.operations import CHANNELS
from target_klaviyo.reader import INPUT_STREAM, TolerantSingerReader
from target_klaviyo.rejects import RowRejected, RunReport
from target_klaviyo.run import TargetRun
from target_klaviyo.sdk_compat import HookedTarget
from target_klaviyo.sinks import SINKS, KlaviyoListSink

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

OPERATIONS: dict[str, type[KlaviyoListSink]] = SINKS
#: Operations that need a list, and those that may take one.
LIST_REQUIRED = ("add", "remove")
LIST_OPTIONAL = ("subscribe", "unsubscribe")

TARGET_SETTINGS = th.PropertiesList(
    th.Property(
        "list_id",
        th.StringType,
        title="List ID",
        description=(
            "Id of the Klaviyo list to write to (as in the list's URL). add and remove need this or "
            "list_name; subscribe and unsubscribe may take one; the other operations none."
        ),
    ),
    th.Property(
        "list_name",
        th.StringType,
        title="List name",
        description=(
            "Exact name of the Klaviyo list to write to (instead of list_id). "
            "Several lists with this name is an error that names their ids."
        ),
    ),
    th.Property(
        "create_list_if_missing",
        th.BooleanType,
        default=True,
        title="Create the list if missing",
        description=(
            "With list_name and operation `add`: create the list when no list has that name "
            "(otherwise fail). `remove` never creates a list: a missing name is an error."
        ),
    ),
    th.Property(
        "operation",
        th.StringType(allowed_values=list(OPERATIONS)),
        default="add",
        title="Operation",
        description=(
            "`add`: upsert each row's profile and add it to the list. `remove`: take profiles off the list. "
            "`upsert`: upsert profiles, no list. `subscribe` / `unsubscribe`: change consent (the only "
            "operations that do). `suppress` / `unsuppress`: email suppression. `track`: one event a row. "
            "Column names: docs/target.md."
        ),
    ),
    th.Property(
        "consent_channels",
        th.ArrayType(th.StringType(allowed_values=list(CHANNELS))),
        title="Consent channels",
        description=(
            "subscribe/unsubscribe: the channels to change (email_marketing, sms_marketing, "
            "sms_transactional). Default: each channel the row has an identifier for (email marketing "
            "for an email, SMS marketing for a phone number). A `channels` column overrides it per row."
        ),
    ),
    th.Property(
        "metric_name",
        th.StringType,
        title="Metric name",
        description="track: the event's metric (e.g. `Placed Order`) when the stream has no `metric_name` column.",
    ),
    th.Property(
        "property_columns",
        th.ArrayType(th.StringType),
        title="Property columns",
        description=(
            "Columns that may become custom properties (profile properties; event properties with track). "
            "Default: every column that is not a Klaviyo attribute, identifier or operation column."
        ),
    ),
    th.Property(
        "null_clears_properties",
        th.BooleanType,
        default=False,
        title="Null clears properties",
        description=(
            "add/upsert: a null in a property column removes that custom property in Klaviyo. Off: nulls and "
            "empty cells never change what Klaviyo holds (standard attributes are never cleared)."
        ),
    ),
    th.Property(
        "dry_run",
        th.BooleanType,
        default=False,
        title="Dry run",
        description=(
            "Check every row (rejects file as usual), resolve the list without creating it, and log "
            "the requests that would be sent; nothing is written to Klaviyo."
        ),
    ),
    th.Property(
        "wait_for_completion",
        th.BooleanType,
        default=False,
        title="Wait for import jobs",
        description=(
            "add/upsert/suppress/unsuppress: wait until Klaviyo has finished each job, logging progress; "
            "import rows Klaviyo could not take go to the rejects file. (subscribe, unsubscribe and track "
            "create no job Klaviyo lets anyone follow.)"
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


class TargetKlaviyo(HookedTarget):
    """Singer target that writes list membership, profiles, consent, suppressions or events to Klaviyo."""

    name = "target-klaviyo"
    message_reader_class = TolerantSingerReader  # a bad input line is rejected, not fatal
    package_name = "klaviyo-singer"  # the distribution that ships this target, for --version
    config_jsonschema = th.PropertiesList(
        *CONNECTION_SETTINGS.wrapped.values(), *TARGET_SETTINGS.wrapped.values()
    ).to_dict()

    def __init__(self, *args: t.Any, validate_config: bool = True, **kwargs: t.Any) -> None:
        try:
            super().__init__(*args, validate_config=validate_config, **with_typed_config(type(self), kwargs))
        except ConfigValidationError as exc:
            raise redact_config_errors(exc) from None  # the SDK's messages quote the values
        if validate_config:
            check_setting_names(self.config, type(self))
            check_connection_settings(self.config)
            check_target_settings(self.config)
        t.cast(TolerantSingerReader, self.message_reader).on_bad_line = self._reject_input_line

    #: SDK settings that mean nothing here: list membership has no load method, and the
    #: `_sdc_*` metadata columns the SDK would add are dropped before anything is sent.
    MEANINGLESS_SDK_SETTINGS = ("load_method", "add_record_metadata")

    @override
    @classmethod
    def append_builtin_config(cls, config_jsonschema: dict) -> None:
        """The SDK's built-in settings (stream maps, flattening...), less the meaningless ones."""
        super().append_builtin_config(config_jsonschema)
        for name in cls.MEANINGLESS_SDK_SETTINGS:
            config_jsonschema["properties"].pop(name, None)

    def _reject_input_line(self, number: int, line: str, reason: str, stream: str | None) -> None:
        """A line the reader could not use: in the rejects file with why, never in the log."""
        self.report.received(stream or INPUT_STREAM)
        self.report.reject(stream or INPUT_STREAM, line, RowRejected("unreadable input line", reason))

    @override
    def on_termination_signal(self, signum: int) -> None:
        """SIGINT/SIGTERM: read no more input, drain what was received, emit its STATE, exit 130/143.

        The SDK's handler exits 0 at once, dropping rows not yet written and recording the run
        as a success (see sdk_compat.py); tests/faults/test_signals.py sends real signals. A
        second signal stops at once.
        """
        if interrupted():
            self.logger.warning("Second signal: stopping now, without draining.")
            raise SystemExit(interrupted_exit_code(signum))
        note_interrupted(signum, self.logger, "reading no more input and writing the rows received")
        reader = getattr(self, "message_reader", None)  # None: the signal came while the target was being built
        if reader is None:
            raise SystemExit(interrupted_exit_code(signum))
        reader.stop_reading()

    @cached_property
    def run(self) -> TargetRun:
        """What the run's sinks share: connection, list, job and request pipelines."""
        return TargetRun(self.config, self.logger)

    @property
    def connection(self) -> KlaviyoConnection:
        """The run's one connection (its rate limiters are per account and endpoint)."""
        return self.run.connection

    @property
    def import_jobs(self) -> ImportJobs:
        return self.run.import_jobs

    @property
    def dry_run(self) -> bool:
        return self.run.dry_run

    @override
    def before_state_message(self) -> None:
        """A STATE only once Klaviyo has accepted (and, when waiting, finished) every job before it."""
        self.run.finish()

    @property
    def report(self) -> RunReport:
        return self.run.report

    @cached_property
    def sink_class(self) -> type[KlaviyoListSink]:
        """The configured operation's sink class, bound to this run."""
        return OPERATIONS[self.config.get("operation") or "add"].for_run(self.run)

    @override
    def get_sink_class(self, stream_name: str) -> type[KlaviyoListSink]:
        return self.sink_class

    @override
    def process_endofpipe(self) -> None:
        """Drain (the SDK then emits state), summarise, and fail on rejects when asked to."""
        try:
            super().process_endofpipe()
        finally:
            self.report.close()
            self.report.log_summary(self.logger)
            self._log_dry_run()
        rejected = self.report.rejected_total
        if rejected and self.config.get("fail_on_rejects"):
            rows = "1 row was" if rejected == 1 else f"{rejected} rows were"
            raise KlaviyoError(
                f"{rows} rejected and fail_on_rejects is on: see {self.report.path} for rows and reasons."
            )

    def _log_dry_run(self) -> None:
        if not self.dry_run:
            return
        operation = self.config.get("operation") or "add"
        for stream, counts in sorted(self.run.dry_run_plan.items()):
            requests = ", ".join(f"{n} x {endpoint}" for endpoint, n in counts.items() if endpoint != "rows")
            self.logger.info("Dry run, stream '%s': %s would send %d rows in %s", stream, operation,
                             counts["rows"], requests or "no requests")  # fmt: skip
        self.logger.info("Dry run: nothing was written to Klaviyo")


def check_target_settings(config: t.Mapping[str, t.Any]) -> None:
    """Rules the JSON schema cannot express, each as a one-line error naming the fix.

    The SDK has already checked the schema (``operation`` is one of OPERATIONS,
    ``wait_timeout_seconds`` within 300..86400) and reported any violation by name.
    """
    operation = str(config.get("operation") or "add")
    list_id, list_name = (str(config.get(key) or "").strip() for key in ("list_id", "list_name"))
    if operation in LIST_REQUIRED and bool(list_id) == bool(list_name):
        which = "both are set" if list_id else "neither is set"
        raise config_error(f"Set exactly one of list_id and list_name ({which}).")
    raw_name = str(config.get("list_name") or "")
    if list_name and raw_name != list_name:
        # Klaviyo keeps the spaces, and a name must match exactly: a padded name made a second list.
        raise config_error(
            f"Setting list_name {raw_name!r} starts or ends with spaces: remove them "
            "(names match exactly, so a padded name would create or look for another list)."
        )
    if list_id and list_name:
        raise config_error("Set at most one of list_id and list_name (both are set).")
    if operation not in (*LIST_REQUIRED, *LIST_OPTIONAL) and (list_id or list_name):
        setting = "list_id" if list_id else "list_name"
        raise config_error(
            f"Setting {setting}: operation {operation} takes no list; remove {setting} "
            "(or use operation add to upsert profiles into a list)."
        )
    if config.get("metric_name") and operation != "track":
        raise config_error(f"Setting metric_name is only for operation track (operation is {operation}); remove it.")
    if config.get("consent_channels") and operation not in ("subscribe", "unsubscribe"):
        raise config_error(
            f"Setting consent_channels is only for subscribe and unsubscribe (operation is {operation}); remove it."
        )
    rejects = str(config.get("rejects_file") or "klaviyo-rejects.jsonl")
    if Path(rejects).is_dir():
        raise config_error(
            f"Setting rejects_file: {rejects} is a folder; give a file path, e.g. {rejects.rstrip('/')}/rejects.jsonl."
        )
    folder = Path(rejects).resolve().parent
    if not folder.is_dir():
        raise config_error(f"Setting rejects_file: folder {folder} does not exist; create it or choose another path.")


def cli() -> None:
    """Console entry point: the SDK's CLI, with Klaviyo errors shown as one line."""
    run_cli(TargetKlaviyo.cli)
