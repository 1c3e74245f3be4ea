"""gunicorn settings for bin/serve.sh (`--config python:spconnect.gunicorn_conf`): how it logs.

The access log writes the path, and paths carry invitation tokens (`/connect/<token>/`); the
error log writes request URIs when a request fails. Both go through the same redaction as
Django's loggers (spconnect/logging.py), whatever format or handlers are configured.
"""

from __future__ import annotations

from gunicorn.glogging import Logger, SafeAtoms

from spconnect.logging import RedactSecretsFilter, redact


class RedactedAtoms(SafeAtoms):
    """Access-log atoms, each redacted when the format reads it (`%(r)s`, `%(U)s`, `%({referer}i)s`…)."""

    def __getitem__(self, key):
        value = super().__getitem__(key)
        return redact(value) if isinstance(value, str) else value


class RedactingLogger(Logger):
    """gunicorn's logger with the redaction filter on every handler it sets up (stream, file,
    syslog), again after each reload, and redacted access-log atoms."""

    atoms_wrapper_class = RedactedAtoms

    def setup(self, cfg):
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                if not any(isinstance(f, RedactSecretsFilter) for f in handler.filters):
                    handler.addFilter(RedactSecretsFilter())


logger_class = RedactingLogger
accesslog = "-"
errorlog = "-"
# The path only (%(U)s, redacted), never the query string or the Referer: the callback's query
# carries Amazon's authorization code.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'
