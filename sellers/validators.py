"""Where spconnect agrees to send a tenant's webhooks.

A webhook URL is typed by a tenant owner and then fetched by our workers, which sit inside the
agency's network next to PostgreSQL, Redis and cloud metadata endpoints. So the URL must be
https and must not lead to a loopback, private, link-local or otherwise internal address: checked
when it is saved (the host as written) and again before every delivery (every address the name
resolves to, since DNS can change after the save). The delivery then connects to the address it
checked, not to the name (TLS still verifies the name), so DNS cannot point elsewhere between the
check and the connection. Redirects are never followed (`sellers/http.py`).

`SPCONNECT_WEBHOOK_ALLOW_PRIVATE=true` lifts the address rules (and allows http), for a receiver
on the same machine during development.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

# Names that always mean "this machine" or an internal zone, whatever DNS says.
_INTERNAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")

# IPv6 ranges that carry an IPv4 address inside (NAT64, 6to4, Teredo, the IPv4-compatible and
# IPv4-translated forms): a gateway on the way may deliver them to that IPv4 address, private or
# not. Python calls some of them global; no webhook receiver needs them. Also the deprecated
# site-local range, which Python calls global too.
_IPV4_CARRIERS = tuple(
    ipaddress.ip_network(n)
    for n in ("64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32", "::/96", "::ffff:0:0:0/96", "fec0::/10")
)


def _internal_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif any(address in network for network in _IPV4_CARRIERS):
            return True
    # is_global is False for private, loopback, link-local (169.254.x, cloud metadata), shared
    # (100.64/10), reserved and documentation ranges; multicast is global but never a receiver.
    return not address.is_global or address.is_multicast


def _allow_private() -> bool:
    return bool(getattr(settings, "SPCONNECT_WEBHOOK_ALLOW_PRIVATE", False))


def _parse(url: str) -> tuple[str | None, str, int]:
    """(problem, host, port) from the rules that hold without DNS."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "The webhook URL is not a valid URL.", "", 0
    host = (parts.hostname or "").rstrip(".").lower()
    port = port or (443 if parts.scheme == "https" else 80)
    if not host:
        return "The webhook URL has no host.", host, port
    if _allow_private():
        return None, host, port
    if parts.scheme != "https":
        return "The webhook URL must use https.", host, port
    if not host.isascii():
        # Python's resolver and requests encode international names by different IDNA rules
        # (straße → strasse vs xn--strae-oqa): the name checked would not be the name called.
        return "Write an international host name in its ASCII (xn--) form.", host, port
    if parts.username is not None or parts.password is not None:
        return "The webhook URL must not carry a user name or password.", host, port
    if host == "localhost" or host.endswith(_INTERNAL_SUFFIXES):
        return "The webhook URL must point to a public host, not this machine or an internal name.", host, port
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return None, host, port
    if _internal_address(literal):
        return "The webhook URL must point to a public address, not a private, loopback or link-local one.", host, port
    return None, host, port


def webhook_url_problem(url: str) -> str | None:
    """Why spconnect will not POST to `url` (without asking DNS), or None."""
    return _parse(url)[0]


def webhook_destination(url: str) -> tuple[str | None, list[str]]:
    """(problem, addresses): where to connect for `url`, checked now. The caller connects to
    these addresses rather than to the name, so DNS cannot answer differently a moment later."""
    problem, host, port = _parse(url)
    if problem:
        return problem, []
    try:
        return None, [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return f"The webhook host {host} does not resolve.", []
    addresses = list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))
    if not addresses:
        return f"The webhook host {host} does not resolve.", []
    if not _allow_private():
        for address in addresses:
            if _internal_address(ipaddress.ip_address(address)):
                return f"The webhook host {host} resolves to a private, loopback or link-local address.", []
    return None, addresses


def validate_webhook_url(value: str) -> None:
    """Model/form validator: the rules that hold without asking DNS."""
    problem = webhook_url_problem(value) if value else None
    if problem:
        raise ValidationError(problem, code="webhook_url")
