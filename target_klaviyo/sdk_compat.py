"""Every use of singer-sdk internals by target-klaviyo, in one place.

Written against singer-sdk 0.54.9 (requirements/lock.txt). The SDK offers no public hook
for these; tests/target/test_sdk_compat.py fails loudly when an upgrade changes any of them.
Everything else in target_klaviyo uses the SDK's public API only.

* ``Target._write_state_message(state)``: the one place the SDK writes a STATE (after
  ``drain_all``, itself final). Import jobs and requests run in the background past a drain,
  so they must be finished here, or a STATE could cover rows Klaviyo has not taken.
* ``PluginBase._handle_termination(signum, frame)``: installed as the SIGINT/SIGTERM handler
  by the SDK's ``__init__``; its own version exits 0 at once, dropping received rows and
  recording an interrupted run as a success.
"""

from __future__ import annotations

import sys
import typing as t

from singer_sdk import Target

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

#: The singer-sdk version this module was written against (the lock file's).
SDK_VERSION = "0.54.9"


class HookedTarget(Target):
    """The SDK's Target with public names for the two private methods target-klaviyo needs."""

    def before_state_message(self) -> None:
        """Called before each STATE is written: raise to keep it from being written."""

    def on_termination_signal(self, signum: int) -> None:
        """SIGINT/SIGTERM arrived (instead of the SDK's exit 0)."""
        raise SystemExit(0)

    @override
    def _write_state_message(self, state: dict) -> None:  # SDK private: no public hook before a STATE
        self.before_state_message()
        super()._write_state_message(state)

    @override
    def _handle_termination(self, signum: int, frame: t.Any) -> None:  # SDK private: the signal handler
        self.on_termination_signal(signum)
