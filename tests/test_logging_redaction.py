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
