"""Keep email addresses out of the target's log lines and error messages.

The redaction itself is shared plumbing (:mod:`klaviyo_core.redact`); this gives the
target a child logger whose every message passes through it.
"""

from __future__ import annotations

import logging

from klaviyo_core.redact import RedactingFilter, redact, redact_logger

__all__ = ["RedactingFilter", "private_logger", "redact"]


def private_logger(parent: logging.Logger, name: str = "http") -> logging.Logger:
    """A child logger of ``parent`` whose messages are redacted."""
    return redact_logger(parent.getChild(name))
