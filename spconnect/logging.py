"""Last line of defence: scrub anything shaped like an LWA token or secret from log records.

Services never log tokens on purpose; this filter catches what a library might (an exception
message echoing a request body, a URL with a code in it, a traceback's text).
"""

from __future__ import annotations

import logging
import re

_TOKEN = re.compile(r"Atz[ar]\|[A-Za-z0-9_\-\.%|+/=]+")
# LWA client secrets (amzn1.oa2-cs.v1.<hex>).
_CLIENT_SECRET = re.compile(r"amzn1\.oa2-cs\.[A-Za-z0-9._\-]+")
# Form and query fields that carry secrets, plain or URL-encoded (`client_secret%3D…`); `state`
# and `amazon_state` too: with the code, they are what a logged callback line would let anyone
# replay. The name starts a word (or follows an encoded `?`/`&`): `status_code=200` stays.
_FIELD = re.compile(
    r"(?i)((?:(?<![A-Za-z_])|(?<=%3F)|(?<=%26))"
    r"(?:client_secret|refresh_token|access_token|spapi_oauth_code|code|mws_auth_token|webhook_secret|state|amazon_state)"
    r"[\"']?\s*(?:=|:|%3D)\s*[\"']?)[^&\s\"',}]+"
)
# Invitation links: /connect/<token>/ (Django logs the path of 404s and CSRF failures).
_INVITE = re.compile(r"(/connect/)[A-Za-z0-9_\-]{16,}")


def redact(text: str) -> str:
    text = _TOKEN.sub("[redacted]", text)
    text = _CLIENT_SECRET.sub("[redacted]", text)
    text = _FIELD.sub(r"\1[redacted]", text)
    return _INVITE.sub(r"\1[redacted]", text)


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
