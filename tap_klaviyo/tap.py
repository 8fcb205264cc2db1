"""tap-klaviyo: Klaviyo campaigns, events, flows, lists, metrics, profiles, reviews, segments."""

from __future__ import annotations

import datetime as dt
import typing as t
from functools import cached_property

import pendulum
from singer_sdk import Tap
from singer_sdk import typing as th

from klaviyo_core.cli import run_cli
from klaviyo_core.client import KlaviyoConnection
from klaviyo_core.settings import CONNECTION_SETTINGS, check_connection_settings, config_error
from tap_klaviyo.streams import STREAM_TYPES

if t.TYPE_CHECKING:
    from tap_klaviyo.client import KlaviyoStream

TAP_SETTINGS = th.PropertiesList(
    th.Property(
        "start_date",
        th.DateTimeType,
        title="Start date",
        description="Earliest record to sync on a first run (UTC when no offset is given). Default: everything.",
    ),
    th.Property(
        "end_date",
        th.DateTimeType,
        title="End date",
        description="Stop incremental streams at this moment (exclusive); bounds a backfill. Default: now.",
    ),
    th.Property(
        "include_predictive_analytics",
        th.BooleanType,
        default=False,
        title="Include predictive analytics",
        description=(
            "Add `predictive_analytics` (CLV, churn...) to profiles. Klaviyo then allows "
            "profile reads at 10/s instead of 75/s, so profiles sync more slowly."
        ),
    ),
)


class TapKlaviyo(Tap):
    """Singer tap for Klaviyo."""

    name = "tap-klaviyo"
    config_jsonschema = th.PropertiesList(*CONNECTION_SETTINGS.wrapped.values(), *TAP_SETTINGS.wrapped.values()).to_dict()

    def __init__(self, *args: t.Any, validate_config: bool = True, **kwargs: t.Any) -> None:
        super().__init__(*args, validate_config=validate_config, **kwargs)
        if validate_config:
            check_connection_settings(self.config)
            self._check_dates()

    def _check_dates(self) -> None:
        start, end = (self._parse_setting(key) for key in ("start_date", "end_date"))
        if start and end and end <= start:
            raise config_error("Setting end_date must be after start_date: move it later, or remove it.")

    def _parse_setting(self, key: str) -> dt.datetime | None:
        value = self.config.get(key)
        if not value:
            return None
        try:
            return pendulum.parse(str(value), tz="UTC")  # type: ignore[return-value]
        except (ValueError, pendulum.parsing.exceptions.ParserError):
            raise config_error(
                f"Setting {key} is not a date: use ISO 8601, e.g. 2024-01-31 or 2024-01-31T00:00:00Z."
            ) from None

    @cached_property
    def end_date(self) -> dt.datetime | None:
        return self._parse_setting("end_date")

    @cached_property
    def connection(self) -> KlaviyoConnection:
        """The one connection every stream shares (limiters are per account and endpoint)."""
        return KlaviyoConnection(self.config, logger=self.logger)

    def discover_streams(self) -> list[KlaviyoStream]:
        return [stream_type(self) for stream_type in STREAM_TYPES]

    def run_connection_test(self) -> bool:
        """Check the credentials with one cheap call, as Klaviyo suggests (GET /api/accounts)."""
        account = (self.connection.get("/api/accounts").get("data") or [{}])[0]
        self.logger.info("Connected to Klaviyo account %s", account.get("id", "(unknown)"))
        return True


def cli() -> None:
    """Console entry point: the SDK's CLI, with Klaviyo errors shown as one line."""
    run_cli(TapKlaviyo.cli)
