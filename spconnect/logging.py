"""Last line of defence: scrub anything shaped like an LWA token or secret from log records.

Services never log tokens on purpose; this filter catches what a library might (an exception
message echoing a request body, a URL with a code in it).
"""

from __future__ import annotations

import logging
import re

_PATTERNS = [
    # LWA access and refresh tokens.
    re.compile(r"Atz[ar]\|[A-Za-z0-9_\-\.%|+/=]+"),
    # Form and query fields that carry secrets.
    re.compile(
        r"(?i)((?:client_secret|refresh_token|access_token|spapi_oauth_code|code|mws_auth_token)[\"']?\s*[=:]\s*[\"']?)[^&\s\"',}]+"
    ),
]


def redact(text: str) -> str:
    text = _PATTERNS[0].sub("[redacted]", text)
    return _PATTERNS[1].sub(r"\1[redacted]", text)


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the logger's problem, not ours
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
