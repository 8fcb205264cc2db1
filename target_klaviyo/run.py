"""What every sink of one target run shares: the connection, the list, the job and request pipelines.

The target builds one ``TargetRun`` from its config and hands it to each sink class
(``KlaviyoListSink.for_run``), so sinks never reach back into the target, and every
request of the run (list look-up and creation included) goes through one connection
and so one set of rate limiters: Klaviyo's limits are per account and endpoint.

The list is resolved (and, by name, maybe created) when the first batch is written,
not when a sink is built: a stream whose SCHEMA cannot feed the operation fails
before any request, and building a sink never touches the network.
"""

from __future__ import annotations

import logging
import threading
import typing as t
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property

from klaviyo_core.client import KlaviyoConnection
from klaviyo_core.settings import DEFAULT_MAX_CONCURRENCY
from target_klaviyo.jobs import ImportJobs
from target_klaviyo.lists import check_write_scopes, find_lists_by_name, resolve_list, write_scopes_for
from target_klaviyo.operations import Options
from target_klaviyo.privacy import private_logger
from target_klaviyo.profiles import ColumnRules
from target_klaviyo.rejects import RunReport
from target_klaviyo.sender import BatchSender

#: The list id a dry run reports when a real run would create the list.
NEW_LIST = "(new list)"


class TargetRun:
    """One run's shared state, built from the target's validated config."""

    def __init__(self, config: t.Mapping[str, t.Any], logger: logging.Logger) -> None:
        self.config = config
        self.logger = logger
        self.operation = str(config.get("operation") or "add")
        self.dry_run = bool(config.get("dry_run"))
        self.max_concurrency = int(config.get("max_concurrency") or DEFAULT_MAX_CONCURRENCY)
        self.wait_for_completion = bool(config.get("wait_for_completion"))
        self.wait_timeout = float(config.get("wait_timeout_seconds") or 1800)
        self.dry_run_plan: dict[str, dict[str, int]] = {}
        self._plan_lock = threading.Lock()
        self._list_lock = threading.Lock()  # sinks drain in parallel: the list is resolved once
        self._list_resolved = False
        self._list_id: str | None = None

    @cached_property
    def connection(self) -> KlaviyoConnection:
        """One connection for every request of the run: Klaviyo's limits are per account and endpoint."""
        return KlaviyoConnection(self.config, logger=private_logger(self.logger))

    @cached_property
    def report(self) -> RunReport:
        return RunReport(self.config.get("rejects_file") or "klaviyo-rejects.jsonl")

    @cached_property
    def import_jobs(self) -> ImportJobs:
        """The run's import jobs: up to max_concurrency uploading or processing at once."""
        return ImportJobs(
            max_concurrency=self.max_concurrency,
            wait_for_completion=self.wait_for_completion,
            timeout=self.wait_timeout,
        )

    @cached_property
    def sender(self) -> BatchSender:
        """The run's consent, suppression and event requests: up to max_concurrency in flight."""
        return BatchSender(
            self.connection, self.report, self.logger,
            max_concurrency=self.max_concurrency,
            wait_for_completion=self.wait_for_completion,
            timeout=self.wait_timeout,
        )  # fmt: skip

    @cached_property
    def executor(self) -> ThreadPoolExecutor:
        """Threads for a batch's own requests (remove's look-ups and removals): max_concurrency in flight.

        Each request is paced by the connection's limiter for its endpoint, so more threads
        never means more than Klaviyo's limit; a batch's write still returns only once every
        request is answered, so no STATE covers a row before Klaviyo has taken it.
        """
        return ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="klaviyo-request")

    @cached_property
    def column_rules(self) -> ColumnRules:
        columns = self.config.get("property_columns")
        return ColumnRules(
            property_columns=frozenset(columns) if columns is not None else None,
            null_clears=bool(self.config.get("null_clears_properties")),
        )

    @cached_property
    def operation_options(self) -> Options:
        channels = self.config.get("consent_channels")
        metric = str(self.config.get("metric_name") or "").strip()
        return Options(
            rules=self.column_rules, channels=tuple(channels) if channels else None, metric_name=metric or None
        )

    def list_id(self) -> str | None:
        """The run's list, resolved when the first batch is written (by name it may create the list).

        None when the run has no list (upsert, suppress, track; subscribe without one). The
        scopes the operation needs are checked first, so a key that cannot write creates
        nothing. A dry run looks the list up but never creates it.
        """
        with self._list_lock:
            if not self._list_resolved:
                self._list_id = self._resolve_list()
                self._list_resolved = True
            return self._list_id

    def _resolve_list(self) -> str | None:
        check_write_scopes(self.connection, write_scopes_for(self.operation))
        if not (self.config.get("list_id") or self.config.get("list_name")):
            return None
        if self.dry_run and not self.config.get("list_id"):
            return self._list_for_dry_run(str(self.config["list_name"]))
        return resolve_list(self.connection, self.config, self.logger)

    def _list_for_dry_run(self, name: str) -> str:
        found = find_lists_by_name(self.connection, name)
        if len(found) == 1:
            self.logger.info("Dry run: writing would go to Klaviyo list %s (%r)", found[0]["id"], name)
            return found[0]["id"]
        if found or not self.config.get("create_list_if_missing", True):  # the one-line error a real run gives
            return resolve_list(self.connection, {**self.config, "create_list_if_missing": False}, self.logger)
        self.logger.info("Dry run: no Klaviyo list is named %r; a real run would create it", name)
        return NEW_LIST

    def plan(self, stream: str, requests: dict[str, int], rows: int) -> None:
        """Dry run: count what would be sent for one batch of valid rows (sinks may drain in threads)."""
        with self._plan_lock:
            counts = self.dry_run_plan.setdefault(stream, {"rows": 0})
            counts["rows"] += rows
            for endpoint, n in requests.items():
                counts[endpoint] = counts.get(endpoint, 0) + n

    def finish(self) -> None:
        """Every job and request handed over so far accepted (and, when waiting, finished).

        Called before each STATE and at the end of the input: a failure raises, so no STATE
        covers rows Klaviyo has not taken.
        """
        if "import_jobs" in self.__dict__:
            self.import_jobs.finish()
        if "sender" in self.__dict__:
            self.sender.finish()
