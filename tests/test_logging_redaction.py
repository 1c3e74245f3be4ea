"""The console filter scrubs token-shaped text, tracebacks included."""

from __future__ import annotations

import io
import logging

from spconnect.logging import RedactSecretsFilter, redact


def test_redact_shapes():
    text = (
        "token Atza|abc.DEF-123 refresh=Atzr|zzz client_secret=amzn1.oa2-cs.v1.deadbeef "
        "body client_secret%3Dhunter2%26x code=ANabcdef path /connect/AbCdEfGhIjKlMnOpQrStUv/start/"
    )
    out = redact(text)
    for secret in ("abc.DEF-123", "Atzr|zzz", "deadbeef", "hunter2", "ANabcdef", "AbCdEfGhIjKlMnOpQrStUv"):
        assert secret not in out


def test_traceback_text_is_scrubbed():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecretsFilter())
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise RuntimeError("refused Atzr|SECRETSECRET")
        except RuntimeError:
            logger.exception("failed with %s", "Atza|alsosecret")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert "RuntimeError" in output
    assert "SECRETSECRET" not in output and "alsosecret" not in output


def test_redact_oauth_state_but_not_words_that_end_in_code():
    out = redact("GET /authflow/callback/?state=S3cr3tState&spapi_oauth_code=ANxyz "
                 "/authflow/login/t/?amazon_state=eyJhbGc&x=1 form%3Fstate%3DencodedState status_code=200")
    for secret in ("S3cr3tState", "ANxyz", "eyJhbGc", "encodedState"):
        assert secret not in out
    assert "status_code=200" in out


def test_every_handler_of_every_logger_redacts():
    """Django configures `django` and `django.server` handlers of its own (runserver's request
    lines, `Not Found: <path>`); none may write without the filter."""
    loggers = [logging.getLogger()] + [logging.getLogger(name) for name in sorted(logging.root.manager.loggerDict)]
    unfiltered = [
        f"{logger.name}: {type(handler).__name__}"
        for logger in loggers
        for handler in getattr(logger, "handlers", [])
        if not isinstance(handler, logging.NullHandler)  # libraries' defaults: they write nothing
        and not type(handler).__module__.startswith("_pytest")  # pytest's own log capture
        and not any(isinstance(f, RedactSecretsFilter) for f in handler.filters)
    ]
    assert unfiltered == []
    # The loggers that did write secrets in the clear, each reaching a filtered handler.
    for name in ("django.request", "django.server", "django-q"):
        logger, reached = logging.getLogger(name), []
        while logger:
            reached += logger.handlers
            logger = logger.parent if logger.propagate else None
        assert any(any(isinstance(f, RedactSecretsFilter) for f in h.filters) for h in reached), name


def test_gunicorn_logger_redacts_access_and_error_lines(tmp_path):
    from datetime import timedelta
    from types import SimpleNamespace

    from gunicorn.config import Config

    from spconnect import gunicorn_conf

    cfg = Config()
    cfg.set("logger_class", gunicorn_conf.logger_class)
    cfg.set("accesslog", str(tmp_path / "access.log"))
    cfg.set("errorlog", str(tmp_path / "error.log"))
    # The most revealing format there is: full request line, query string and Referer.
    cfg.set("access_log_format", '%(r)s %(U)s %(q)s %(f)s %({referer}i)s %({raw_uri}e)s')
    uri = "/connect/InvitationTokenAbcdefghij0123/?state=StateValue123&spapi_oauth_code=ANcode456"
    path, query = uri.split("?")
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": uri, "SERVER_PROTOCOL": "HTTP/1.1", "PATH_INFO": path,
               "QUERY_STRING": query, "HTTP_REFERER": f"https://example.com{uri}"}
    log = cfg.logger_class(cfg)
    try:
        log.access(SimpleNamespace(status="200 OK", sent=10, headers=[]),
                   SimpleNamespace(headers=[("REFERER", environ["HTTP_REFERER"])]), environ, timedelta(seconds=0))
        try:
            raise ValueError(f"broken {uri}")
        except ValueError:
            log.exception("Error handling request %s", uri)
    finally:
        for logger in (log.error_log, log.access_log):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
                handler.close()
    access, error = (tmp_path / "access.log").read_text(), (tmp_path / "error.log").read_text()
    assert access.count("/connect/[redacted]/") == 5 and "Error handling request" in error and "ValueError" in error
    for secret in ("InvitationTokenAbcdefghij0123", "StateValue123", "ANcode456"):
        assert secret not in access and secret not in error
