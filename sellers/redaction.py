"""Scrubbing anything shaped like an LWA token or secret out of text.

The one definition of what counts as secret-shaped: the log filter (`spconnect/logging.py`),
LWA error texts (`sellers/amazon.py`) and staff notifications use it. It lives in `sellers/`
so that app code never imports from the project package above it.
"""

from __future__ import annotations

import re

# Access and refresh tokens (Atza|, Atzr|), grantless tokens (Atc|), restricted data tokens (Atz.sprdt|).
_TOKEN = re.compile(r"(?:Atz[ar]|Atc|Atz\.sprdt)\|[A-Za-z0-9_\-\.%|+/=:]+")
# LWA client secrets (amzn1.oa2-cs.v1.<hex>).
_CLIENT_SECRET = re.compile(r"amzn1\.oa2-cs\.[A-Za-z0-9._\-]+")
# Form and query fields that carry secrets, plain or URL-encoded (`client_secret%3D…`); `state`
# and `amazon_state` too: with the code, they are what a logged callback line would let anyone
# replay. The name starts a word (or follows an encoded `?`/`&`): `status_code=200` stays.
_FIELD = re.compile(
    r"(?i)((?:(?<![A-Za-z_])|(?<=%3F)|(?<=%26))"
    r"(?:client_secret|refresh_token|access_token|restricted_data_token|restrictedDataToken|spapi_oauth_code|code"
    r"|mws_auth_token|webhook_secret|state|amazon_state)"
    r"[\"']?\s*(?:=|:|%3D)\s*[\"']?)[^&\s\"',}]+"
)
# Invitation links: /connect/<token>/ (Django logs the path of 404s and CSRF failures).
_INVITE = re.compile(r"(/connect/)[A-Za-z0-9_\-]{16,}")
# Whatever follows "Bearer" (an Authorization header: an API key, an access token); 8 characters
# or more, so prose such as "a bearer token" stays.
_BEARER = re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=|%\-]{8,}")
# spconnect API keys (spc_<prefix>_<secret>) anywhere: the public prefix stays, it names the key.
_API_KEY = re.compile(r"(\bspc_[a-z0-9]{8}_)[A-Za-z0-9_\-]{8,}")


def redact(text: str) -> str:
    """`text` with tokens, client secrets, secret-carrying fields, bearer credentials, API keys and
    invitation links replaced."""
    text = _TOKEN.sub("[redacted]", text)
    text = _CLIENT_SECRET.sub("[redacted]", text)
    text = _FIELD.sub(r"\1[redacted]", text)
    text = _BEARER.sub(r"\1[redacted]", text)
    text = _API_KEY.sub(r"\1[redacted]", text)
    return _INVITE.sub(r"\1[redacted]", text)
