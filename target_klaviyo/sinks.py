"""Sinks: one per input stream, adding its rows to the list or removing them from it.

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
from target_klaviyo.jobs import BulkImporter, ImportJob, split_for_jobs
from target_klaviyo.membership import find_profile_ids, remove_from_list
from target_klaviyo.profiles import check_email, is_blank, prepare_profile
from target_klaviyo.reader import reject_undecodable
from target_klaviyo.rejects import RowRejected

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    from target_klaviyo.profiles import PreparedProfile
    from target_klaviyo.target import TargetKlaviyo

#: Klaviyo's bulk import takes 10,000 profiles a job; a bigger batch gains nothing.
MAX_BATCH_ROWS = 10_000


class MissingColumnError(KlaviyoError):
    """The stream cannot feed this operation at all."""


class PendingBatch:
    """Rows waiting for the next drain. Its repr shows counts only: the SDK logs batch contexts."""

    def __init__(self) -> None:
        self.items: list[t.Any] = []

    def __repr__(self) -> str:
        return f"PendingBatch({len(self.items)} rows)"


class KlaviyoListSink(BatchSink):
    """What adding and removing share: column check, row accounting, the list id."""

    operation: t.ClassVar[str]

    def __init__(self, target: TargetKlaviyo, stream_name: str, schema: dict, key_properties: t.Any) -> None:
        self.target = target
        self.check_columns(stream_name, set((schema or {}).get("properties") or {}))
        super().__init__(target, stream_name, schema, key_properties)
        # Dates stay the text the tap sent: Klaviyo takes text, and a date the SDK
        # cannot parse would otherwise stop the whole run instead of one row.
        self.schema = without_date_formats(self.schema)
        self._row_validator = JSONSchemaValidator(self.schema) if self.validate_schema else None
        self.report = target.report
        self.list_id = target.list_id  # resolved (maybe created) only once the columns are known to fit

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
            self.write(batch.items)

    @abc.abstractmethod
    def write(self, items: list[t.Any]) -> None:
        """Send one batch of checked rows; raise on failure so no STATE covers them."""


class AddToListSink(KlaviyoListSink):
    """Upserts profiles with bulk import jobs that attach the list."""

    operation = "add"

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.importer = BulkImporter(self.target.connection, self.list_id, self.logger)

    @override
    def check_columns(self, stream_name: str, columns: set[str]) -> None:
        if "email" not in columns:
            raise MissingColumnError(_missing("email", stream_name, columns, f"{self.operation} needs it"))

    @override
    def check_row(self, record: dict) -> PreparedProfile:
        return prepare_profile(record)

    @override
    def write(self, items: list[PreparedProfile]) -> None:
        """Hand the batch's jobs to the run's job pipeline and return while they upload.

        The target finishes every job (see ``TargetKlaviyo.import_jobs``) before it
        writes a STATE and at the end of the input, so a failure still fails the run
        before any STATE covers these rows.
        """
        for group in split_for_jobs(items, self.list_id):
            self.target.import_jobs.submit(self.importer, group, self.job_finished)
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
        self.target.import_jobs.finish()
        super().clean_up()

    def reject_import_errors(self, profiles: t.Sequence[t.Any], errors: list[dict]) -> None:
        """Put each of Klaviyo's import errors in the rejects report, with the row when it can be found."""
        by_email: dict[str, list[dict]] = {}
        for profile in profiles:
            by_email.setdefault(profile.email.lower(), []).append(profile.row)
        for error in errors:
            attributes = error.get("attributes") or {}
            payload = attributes.get("original_payload")
            rows = by_email.get(_payload_email(payload).lower()) or []
            reason = attributes.get("detail") or attributes.get("title") or "no detail given"
            rejection = RowRejected("Klaviyo import error", f"Klaviyo import error: {reason}")
            self.reject(rows.pop(0) if rows else payload, rejection, was_sent=True)
        if errors:
            self.logger.warning("Klaviyo reported %d import errors for stream '%s'", len(errors), self.stream_name)


class RemoveFromListSink(KlaviyoListSink):
    """Removes list membership by profile id, or by email looked up to a profile id."""

    operation = "remove"

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
    def write(self, items: list[tuple[str, str, dict]]) -> None:
        rows_by_id = self.rows_by_profile_id(items)
        refused = remove_from_list(self.target.connection, self.list_id, list(rows_by_id), self.logger)
        removed = {id(row) for pid, rows in rows_by_id.items() if pid not in refused for row in rows}
        refused_rows = {id(row): (row, reason) for pid, reason in refused.items() for row in rows_by_id[pid]}
        for key, (row, reason) in refused_rows.items():
            if key not in removed:
                self.reject(row, RowRejected("profile_id refused by Klaviyo", reason))
        self.report.sent(self.stream_name, len(removed))

    def rows_by_profile_id(self, items: list[tuple[str, str, dict]]) -> dict[str, list[dict]]:
        """The rows behind each profile id; emails are looked up, and one without a profile is rejected."""
        emails = [value for kind, value, _ in items if kind == "email"]
        found = find_profile_ids(self.target.connection, emails) if emails else {}
        rows_by_id: dict[str, list[dict]] = {}
        for kind, value, row in items:
            ids = [value] if kind == "id" else found.get(value.lower(), [])
            if not ids:
                self.reject(row, RowRejected("no profile with this email", "no Klaviyo profile has this email"))
            for profile_id in ids:
                rows_by_id.setdefault(profile_id, []).append(row)
        return rows_by_id


def _missing(column: str, stream_name: str, columns: set[str], need: str) -> str:
    near = sorted(c for c in columns if c.lower().replace(" ", "_") == column)
    hint = f" (it has `{near[0]}`)" if near else ""
    return (
        f"Stream '{stream_name}' has no `{column}` column{hint}: operation {need}. "
        "Rename the column or map it with stream_maps."
    )


def _payload_email(payload: t.Any) -> str:
    """The email in an import error's ``original_payload`` (a profile resource or its attributes)."""
    if not isinstance(payload, dict):
        return ""
    attributes = payload.get("attributes") if isinstance(payload.get("attributes"), dict) else payload
    email = attributes.get("email")
    return email.strip() if isinstance(email, str) else ""


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
