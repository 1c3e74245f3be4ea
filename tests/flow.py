"""Drive the consent flow as a seller's browser would, in-process or over real HTTP."""

from __future__ import annotations

from urllib.parse import urlparse

from .conftest import parse_form


def _path(url: str) -> str:
    parsed = urlparse(url)
    return parsed.path + (f"?{parsed.query}" if parsed.query else "")


def consent_form(client, invite_url: str):
    """Open the invitation, press Continue, and return (consent_path, form) from the sandbox."""
    page = client.get(_path(invite_url))
    assert page.status_code == 200, page.status_code
    started = client.post(_path(invite_url) + "start/")
    assert started.status_code == 302, started.status_code
    consent_url = started["Location"]
    consent = client.get(_path(consent_url))
    assert consent.status_code == 200, consent.content[:500]
    return _path(consent_url), parse_form(consent.content.decode())


def sandbox_decide(client, consent_path: str, form: dict, *, decision: str = "approve", scopes=None, spid: str | None = None):
    """Submit the sandbox consent form; returns the redirect back to our callback (a path)."""
    data: dict[str, list[str]] = {}
    for name, value, kind, _checked in form["fields"]:
        if kind == "checkbox":
            continue
        data.setdefault(name, []).append(value)
    offered = [value for name, value, kind, _ in form["fields"] if kind == "checkbox" and name == "scope"]
    data["scope"] = list(offered if scopes is None else scopes)
    if spid is not None:
        data["selling_partner_id"] = [spid]
    data["decision"] = [decision]
    answer = client.post(consent_path, data)
    assert answer.status_code == 302, answer.content[:500]
    return _path(answer["Location"])


def run_flow(client, invite_url: str, **decide):
    """Invitation to result: returns the final response (result page or error page)."""
    consent_path, form = consent_form(client, invite_url)
    callback = sandbox_decide(client, consent_path, form, **decide)
    response = client.get(callback)
    if response.status_code == 302:
        response = client.get(_path(response["Location"]))
    return response
