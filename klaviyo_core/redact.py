"""Keep email addresses, keys and tokens out of log lines and error messages.

Lookups by email put addresses in a GET query string, and urllib3 logs every request
URL at DEBUG level (and quotes it in network errors). These helpers hide query
strings, anything shaped like an address, Klaviyo private keys and bearer tokens
before such text reaches a log.
"""

from __future__ import annotations

import logging
import re

from typing_extensions import override

_QUERY = re.compile(r"(/(?:api|oauth)/[^\s?'\"]*)\?[^\s'\")]+")
_EMAIL = re.compile(r"[^\s@\"<>(),;:\[\]]+(@|%40)[^\s@'\"<>(),;:\[\]]+\.[A-Za-z]{2,}")
_KEY = re.compile(r"\bpk_[A-Za-z0-9_]{6,}")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\",]+")

#: Loggers of the HTTP stack that write request URLs (urllib3 at DEBUG: every request).
HTTP_LOGGERS = ("urllib3", "urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry", "requests")


def redact(text: str) -> str:
    """``text`` with URL query strings, email addresses, private keys and bearer tokens replaced."""
    text = _QUERY.sub(r"\1?<query>", text)
    text = _EMAIL.sub("<email>", text)
    text = _KEY.sub("pk_<redacted>", text)
    return _BEARER.sub(r"\1<redacted>", text)


class RedactingFilter(logging.Filter):
    """A logger filter that redacts each record's final message."""

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def redact_logger(logger: logging.Logger) -> logging.Logger:
    """Add a RedactingFilter to ``logger`` once (a logger's filters see only its own records)."""
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    return logger


def redact_http_logs() -> None:
    """Redact what the HTTP stack logs, whatever the log level."""
    for name in HTTP_LOGGERS:
        redact_logger(logging.getLogger(name))
