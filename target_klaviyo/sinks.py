"""Sinks: one per input stream, writing its rows with the configured operation.

Checks run in two places on purpose. The stream's SCHEMA is checked when the sink is
created, so a stream without the needed column fails before any request is made.
Each row is checked as it arrives; a bad row goes to the rejects report and the run
goes on. Writes happen in ``process_batch`` (the SDK's drain), and any failure there
raises, so the SDK never emits a STATE message covering rows that were not written.
"""

from __future__ import annotations

import abc
import copy
import sys
import typing as t

from singer_sdk.exceptions import InvalidRecord
from singer_sdk.sinks import BatchSink
from singer_sdk.sinks.core import JSONSchemaValidator

from klaviyo_core.errors import KlaviyoError
from target_klaviyo.jobs import JOBS_PATH, BulkImporter, ImportJob, split_for_jobs
from target_klaviyo.membership import find_profile_ids, remove_from_list
from target_klaviyo.operations import OPERATIONS, Track, split
from target_klaviyo.profiles import ID_COLUMNS, IDENTIFIERS, check_email, identity_key, is_blank, prepare_profile
from target_klaviyo.reader import reject_undecodable
from target_klaviyo.rejects import RowRejected
from target_klaviyo.sender import Batch

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    from singer_sdk.target_base import Target

    from target_klaviyo.operations import Item, Operation
    from target_klaviyo.profiles import PreparedProfile
    from target_klaviyo.run import TargetRun

#: Klaviyo's bulk import takes 10,000 profiles a job; a bigger batch gains nothing.
MAX_BATCH_ROWS = 10_000


class MissingColumnError(KlaviyoError):
    """The stream cannot feed this operation at all."""


class PendingBatch:
    """Rows waiting for the next drain. Its repr shows counts only: the SDK logs batch contexts."""

    def __init__(self) -> None:
        self.items: list[t.Any] = []

    @override
    def __repr__(self) -> str:
        return f"PendingBatch({len(self.items)} rows)"


class KlaviyoListSink(BatchSink):
    """What every operation shares: column check, row accounting, the list id (if any), dry runs.

    A sink gets what the run shares (connection, list, pipelines) from ``run``, set on the
    class by ``for_run``: the SDK builds each sink from its class and the target alone.
    Building a sink sends nothing; the list is resolved when the first batch is written.
    """

    operation: t.ClassVar[str]
    run: t.ClassVar[TargetRun]

    @classmethod
    def for_run(cls, run: TargetRun) -> type[KlaviyoListSink]:
        """This operation's sink class, bound to one run (what ``Target.get_sink_class`` returns)."""
        return type(cls.__name__, (cls,), {"run": run, "__doc__": cls.__doc__, "__module__": cls.__module__})

    def __init__(self, target: Target, stream_name: str, schema: dict, key_properties: t.Any) -> None:
        self.check_columns(stream_name, set((schema or {}).get("properties") or {}))
        super().__init__(target, stream_name, schema, key_properties)
        # Dates stay the text the tap sent: Klaviyo takes text, and a date the SDK
        # cannot parse would otherwise stop the whole run instead of one row.
        self.schema = without_date_formats(self.schema)
        self._row_validator = JSONSchemaValidator(self.schema) if self.validate_schema else None
        self.report = self.run.report

    @property
    def list_id(self) -> str | None:
        """The run's list (resolved, maybe created, by the first batch that needs it); None without one."""
        return self.run.list_id()

    @abc.abstractmethod
    def check_columns(self, stream_name: str, columns: set[str]) -> None:
        """Raise MissingColumnError when the stream lacks what the operation needs."""

    @property
    @override
    def max_size(self) -> int:
        return min(MAX_BATCH_ROWS, super().max_size)

    @override
    def get_validator(self) -> None:
        """Rows are validated in ``process_record``, where a bad row is rejected rather than fatal."""
        return None

    @override
    def process_record(self, record: dict, context: dict) -> None:
        self.report.received(self.stream_name)
        try:
            reject_undecodable(record)  # bytes that were not UTF-8 on the input
            item = self.check_row(record)
            if self._row_validator is not None:
                self._row_validator.validate(record)
        except RowRejected as rejected:
            self.reject(record, rejected)
            return
        except InvalidRecord as invalid:
            reason = f"does not match the stream's schema: {invalid.error_message}"
            self.reject(record, RowRejected("schema mismatch", reason))
            return
        context.setdefault("batch", PendingBatch()).items.append(item)

    @abc.abstractmethod
    def check_row(self, record: dict) -> t.Any:
        """What ``process_batch`` needs from this row; raises RowRejected."""

    def reject(self, row: t.Any, rejected: RowRejected, *, was_sent: bool = False) -> None:
        self.report.reject(self.stream_name, row, rejected, was_sent=was_sent)

    @override
    def process_batch(self, context: dict) -> None:
        batch = context.get("batch")
        if batch is not None and batch.items:
            if self.run.dry_run:
                self.run.plan(self.stream_name, self.planned(batch.items), len(batch.items))
            else:
                self.write(batch.items)

    @abc.abstractmethod
    def write(self, items: list[t.Any]) -> None:
        """Send one batch of checked rows; raise on failure so no STATE covers them."""

    @abc.abstractmethod
    def planned(self, items: list[t.Any]) -> dict[str, int]:
        """Dry run: the requests ``write`` would send for these rows, by endpoint."""


class AddToListSink(KlaviyoListSink):
    """Upserts profiles with bulk import jobs that attach the list."""

    operation = "add"

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.jobs = self.run.import_jobs  # made here, in the reader's thread: drains may run in parallel
        self._importer: BulkImporter | None = None

    @property
    def importer(self) -> BulkImporter:
        if self._importer is None:
            self._importer = BulkImporter(self.run.connection, self.list_id, self.logger)
        return self._importer

    @override
    def check_columns(self, stream_name: str, columns: set[str]) -> None:
        if not {*IDENTIFIERS, *ID_COLUMNS} & columns:
            need = f"{self.operation} needs it (or `phone_number`, `external_id` or `profile_id`)"
            raise MissingColumnError(_missing("email", stream_name, columns, need))

    @override
    def check_row(self, record: dict) -> PreparedProfile:
        return prepare_profile(record, self.run.column_rules)

    @override
    def planned(self, items: list[PreparedProfile]) -> dict[str, int]:
        return {f"POST {JOBS_PATH}": len(split_for_jobs(items, self.list_id))}

    @override
    def write(self, items: list[PreparedProfile]) -> None:
        """Hand the batch's jobs to the run's job pipeline and return while they upload.

        The run finishes every job (see ``TargetRun.finish``) before the target
        writes a STATE and at the end of the input, so a failure still fails the run
        before any STATE covers these rows.
        """
        for group in split_for_jobs(items, self.list_id):
            self.jobs.submit(self.importer, group, self.job_finished)
            self.report.sent(self.stream_name, len(group))

    def job_finished(self, job: ImportJob) -> None:
        """With wait_for_completion: Klaviyo's import errors of one finished job go to the rejects file."""
        self.reject_import_errors(job.profiles, job.errors)
        if job.failed > len(job.errors):
            self.logger.warning(
                "Klaviyo import job %s counted %d failed profiles but listed %d import errors",
                job.id, job.failed, len(job.errors),
            )  # fmt: skip

    @override
    def clean_up(self) -> None:
        """End of the input: every job submitted (and finished, when waiting) before the last STATE."""
        self.jobs.finish()
        super().clean_up()

    def reject_import_errors(self, profiles: t.Sequence[t.Any], errors: list[dict]) -> None:
        """Put each of Klaviyo's import errors in the rejects report, with the row when it can be found."""
        by_key: dict[str, list[dict]] = {}
        for profile in profiles:
            by_key.setdefault(profile.key, []).append(profile.row)
        for error in errors:
            attributes = error.get("attributes") or {}
            payload = attributes.get("original_payload")
            rows = by_key.get(_payload_key(payload)) or []
            reason = attributes.get("detail") or attributes.get("title") or "no detail given"
            rejection = RowRejected("Klaviyo import error", f"Klaviyo import error: {reason}")
            self.reject(rows.pop(0) if rows else payload, rejection, was_sent=True)
        if errors:
            self.logger.warning("Klaviyo reported %d import errors for stream '%s'", len(errors), self.stream_name)


class RemoveFromListSink(KlaviyoListSink):
    """Removes list membership by profile id, or by email looked up to a profile id."""

    operation = "remove"

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.executor = self.run.executor  # made here, in the reader's thread: drains may run in parallel

    @override
    def check_columns(self, stream_name: str, columns: set[str]) -> None:
        if not {"profile_id", "email"} & columns:
            raise MissingColumnError(
                _missing("profile_id", stream_name, columns, f"{self.operation} needs it (or an `email` column)")
            )

    @override
    def check_row(self, record: dict) -> tuple[str, str, dict]:
        """``("id", profile_id, row)`` or ``("email", email, row)``; the id wins when both are set."""
        profile_id = record.get("profile_id")
        if not is_blank(profile_id):
            if not isinstance(profile_id, (str, int)) or isinstance(profile_id, bool):
                raise RowRejected("invalid profile_id", f"profile_id must be text, not {type(profile_id).__name__}")
            return ("id", str(profile_id).strip(), record)
        if not is_blank(record.get("email")):
            return ("email", check_email(record["email"]), record)
        columns = self.schema["properties"]
        if "profile_id" not in columns:
            raise RowRejected("missing email", "email is empty or missing")
        if "email" not in columns:
            raise RowRejected("missing profile_id", "profile_id is empty or missing")
        raise RowRejected("missing profile_id", "profile_id and email are both empty or missing")

    @override
    def planned(self, items: list[tuple[str, str, dict]]) -> dict[str, int]:
        """Emails are not looked up in a dry run (a read, but of people's data for nothing)."""
        emails = sum(1 for kind, _, _ in items if kind == "email")
        ids = len({value for kind, value, _ in items if kind == "id"}) + emails
        plan = {f"DELETE /api/lists/{self.list_id}/relationships/profiles": -(-ids // 1000)}
        if emails:
            plan["GET /api/profiles (email look-ups)"] = -(-emails // 100)
        return plan

    @override
    def write(self, items: list[tuple[str, str, dict]]) -> None:
        list_id = t.cast(str, self.list_id)  # first: the scope check and list look-up come before any other request
        rows_by_id = self.rows_by_profile_id(items)
        refused = remove_from_list(self.run.connection, list_id, list(rows_by_id), self.logger, self.executor)
        removed = {id(row) for pid, rows in rows_by_id.items() if pid not in refused for row in rows}
        refused_rows = {id(row): (row, reason) for pid, reason in refused.items() for row in rows_by_id[pid]}
        for key, (row, reason) in refused_rows.items():
            if key not in removed:
                self.reject(row, RowRejected("profile_id refused by Klaviyo", reason))
        self.report.sent(self.stream_name, len(removed))

    def rows_by_profile_id(self, items: list[tuple[str, str, dict]]) -> dict[str, list[dict]]:
        """The rows behind each profile id; emails are looked up, and one without a profile is rejected."""
        emails = [value for kind, value, _ in items if kind == "email"]
        found = find_profile_ids(self.run.connection, emails, self.executor) if emails else {}
        rows_by_id: dict[str, list[dict]] = {}
        for kind, value, row in items:
            ids = [value] if kind == "id" else found.get(value.lower(), [])
            if not ids:
                self.reject(row, RowRejected("no profile with this email", "no Klaviyo profile has this email"))
            for profile_id in ids:
                rows_by_id.setdefault(profile_id, []).append(row)
        return rows_by_id


class UpsertSink(AddToListSink):
    """Upserts profiles with bulk import jobs, no list: properties kept in step, membership untouched."""

    operation = "upsert"


class BulkOperationSink(KlaviyoListSink):
    """subscribe, unsubscribe, suppress, unsuppress, track: checked rows, sent by the run's BatchSender."""

    operation_class: t.ClassVar[type[Operation]]

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        self.op = self.operation_class(self.run.operation_options)
        super().__init__(*args, **kwargs)
        self.sender = self.run.sender  # made here, in the reader's thread: drains may run in parallel

    @override
    def check_columns(self, stream_name: str, columns: set[str]) -> None:
        needs = self.op.needs_one_of
        if not set(needs) & columns:
            others = ", ".join(f"`{c}`" for c in needs[1:])
            need = f"{self.operation} needs it" + (f" (or {others})" if others else "")
            raise MissingColumnError(_missing(needs[0], stream_name, columns, need))
        if isinstance(self.op, Track) and "metric_name" not in columns and not self.op.options.metric_name:
            raise MissingColumnError(
                f"Stream '{stream_name}' has no `metric_name` column and the metric_name setting is not set: "
                "operation track needs one of them. Set metric_name, or add the column."
            )

    @override
    def check_row(self, record: dict) -> Item:
        return self.op.prepare(record)

    @override
    def planned(self, items: list[Item]) -> dict[str, int]:
        return {f"POST {self.op.path}": len(split(items, self.op, self.list_id))}

    @override
    def write(self, items: list[Item]) -> None:
        """Queue the batch's requests and return while they are sent (finished before any STATE)."""
        for group, requests in split(items, self.op, self.list_id):
            self.sender.submit(Batch(self.stream_name, self.op, group, requests, self.list_id))

    @override
    def clean_up(self) -> None:
        self.sender.finish()
        super().clean_up()


def _bulk_sink(operation: type[Operation]) -> type[BulkOperationSink]:
    return type(f"{operation.__name__}Sink", (BulkOperationSink,), {
        "operation": operation.name, "operation_class": operation, "__doc__": operation.__doc__,
    })  # fmt: skip


_SINK_TYPES: tuple[type[KlaviyoListSink], ...] = (
    AddToListSink,
    RemoveFromListSink,
    UpsertSink,
    *(_bulk_sink(op) for op in OPERATIONS.values()),
)
SINKS: dict[str, type[KlaviyoListSink]] = {sink.operation: sink for sink in _SINK_TYPES}


def _missing(column: str, stream_name: str, columns: set[str], need: str) -> str:
    near = sorted(c for c in columns if c.lower().replace(" ", "_") == column)
    hint = f" (it has `{near[0]}`)" if near else ""
    return (
        f"Stream '{stream_name}' has no `{column}` column{hint}: operation {need}. "
        "Rename the column or map it with stream_maps."
    )


def _payload_key(payload: t.Any) -> str:
    """The identity key of an import error's ``original_payload`` (a profile resource or its attributes)."""
    if not isinstance(payload, dict):
        return ""
    attributes = payload["attributes"] if isinstance(payload.get("attributes"), dict) else payload
    return identity_key(attributes, payload.get("id"))


def without_date_formats(schema: dict) -> dict:
    """A copy of ``schema`` without date/time ``format``s, so the SDK leaves date text alone."""
    schema = copy.deepcopy(schema)
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("format") in ("date-time", "date", "time"):
                del node["format"]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return schema
