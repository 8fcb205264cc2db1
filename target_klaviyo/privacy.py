"""Keep email addresses out of log lines and error messages.

The email lookup for ``remove`` puts addresses in a GET query string, and a network
error's text (from urllib3) quotes the full URL. These helpers hide query strings
and anything shaped like an address before such text reaches a log.
"""

from __future__ import annotations

import logging
import re

from typing_extensions import override

_QUERY = re.compile(r"(/api/[^\s?'\"]*)\?[^\s'\")]+")
_EMAIL = re.compile(r"[^\s@\"<>(),;:\[\]]+(@|%40)[^\s@'\"<>(),;:\[\]]+\.[A-Za-z]{2,}")


def redact(text: str) -> str:
    """``text`` with URL query strings and email addresses replaced by placeholders."""
    return _EMAIL.sub("<email>", _QUERY.sub(r"\1?<query>", text))


class RedactingFilter(logging.Filter):
    """A logger filter that redacts each record's final message."""

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def private_logger(parent: logging.Logger, name: str = "http") -> logging.Logger:
    """A child logger of ``parent`` whose messages are redacted."""
    logger = parent.getChild(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    return logger
