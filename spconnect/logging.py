"""Last line of defence: scrub anything shaped like an LWA token or secret from log records.

Services never log tokens on purpose; this filter catches what a library might (an exception
message echoing a request body, a URL with a code in it, a traceback's text). What counts as
secret-shaped is `sellers.redaction.redact`; `redact` is importable from here too.
"""

from __future__ import annotations

import logging

from sellers.redaction import redact

__all__ = ["RedactSecretsFilter", "redact"]


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the logger's problem, not ours
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            # Formatters render the traceback after filters run: render it now so it is
            # scrubbed too (logging.Formatter reuses a cached exc_text).
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
