"""Every outbound HTTP request leaves through `send()`: Login with Amazon, SP-API and webhooks.

`send()` owns the shared `requests.Session` (a request pinned to checked addresses gets a
short-lived one of its own) and always passes a timeout (`requests` has none by default) and
never follows redirects. Tests and the local sandbox switch behaviour here and nowhere else:
callers look `send` up on this module at call time (`http.send(...)`), so patching it here
reaches every caller.

Nothing in this module logs or raises with a request body, header value or token in it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from django.conf import settings
from requests.adapters import HTTPAdapter

_session = requests.Session()
# The form SP-API asks for ("AppName/Version (Language=…)"); webhooks get the same one.
_session.headers["User-Agent"] = "spconnect/0.1 (Language=Python)"

# Exceptions that mean "we never got a usable answer" (timeouts, refused connections, broken
# chunked bodies, bad headers, …); always transient.
NETWORK_ERRORS = (requests.RequestException,)


def session() -> requests.Session:
    return _session


class _PinnedAddressAdapter(HTTPAdapter):
    """Connects to one address chosen (and checked) beforehand instead of resolving the URL's
    host again; the Host header, TLS server name and certificate check keep the host name."""

    def __init__(self, address: str):
        self.address = address
        super().__init__(max_retries=0)

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        name = host_params["host"]
        host_params["host"] = self.address
        if host_params["scheme"] == "https":
            pool_kwargs["server_hostname"] = name
            pool_kwargs["assert_hostname"] = name
        return host_params, pool_kwargs

    def send(self, request, *args, **kwargs):
        request.headers["Host"] = urlsplit(request.url).netloc.rsplit("@", 1)[-1]
        return super().send(request, *args, **kwargs)


def _never_connected(exc: requests.ConnectionError) -> bool:
    """True when the request did not reach the server at all (safe to try another address)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def send(method: str, url: str, *, pin_addresses: Sequence[str] | None = None, **kwargs: Any) -> requests.Response:
    """Send one request through the shared session, with the configured timeout.

    `pin_addresses`: connect to these addresses, in order, not to whatever the URL's host
    resolves to now (webhooks, whose addresses were checked a moment ago); the next one is tried
    only when a connection could not be made. When a proxy is configured for the URL
    (`HTTPS_PROXY`, …) the request goes through it unpinned: the proxy resolves the name, and is
    the deployment's egress control.
    """
    kwargs.setdefault("timeout", settings.SPAPI_HTTP_TIMEOUT)
    kwargs.setdefault("allow_redirects", False)
    if not pin_addresses or requests.utils.get_environ_proxies(url):
        return _session.request(method, url, **kwargs)
    # The pinned session ignores the environment (it must not pick up a proxy); keep its CA bundle.
    kwargs.setdefault("verify", os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True)
    failure: requests.ConnectionError | None = None
    for address in pin_addresses:
        with requests.Session() as pinned:
            pinned.trust_env = False
            pinned.headers.update(_session.headers)
            adapter = _PinnedAddressAdapter(address)
            pinned.mount("http://", adapter)
            pinned.mount("https://", adapter)
            try:
                return pinned.request(method, url, **kwargs)
            except requests.ConnectionError as exc:
                if not _never_connected(exc):
                    raise
                failure = exc
    assert failure is not None
    raise failure
