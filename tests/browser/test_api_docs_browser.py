"""The API's docs page (/api/v1/docs) renders in Chromium with its Content-Security-Policy
enforced and nothing fetched from outside: Swagger UI comes from our static files."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_docs_page_renders_every_operation_offline_under_its_policy(strict_page, shots, live_amazon):
    page = strict_page
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    outside: list[str] = []
    page.on("request", lambda request: None if request.url.startswith(live_amazon) else outside.append(request.url))

    response = page.goto(f"{live_amazon}/api/v1/docs")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_selector(".opblock-summary-path", timeout=15_000)
    shots.take(page, "api-docs")
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert {p.replace("\u200b", "") for p in paths} == {
        "/api/v1/connections",
        "/api/v1/connections/{id}",
        "/api/v1/connections/{id}/access-token",
        "/api/v1/connections/{id}/reauthorization-link",
        "/api/v1/connections/{id}/restricted-data-token",
        "/api/v1/connections/{id}/proxy/{path}",
        "/api/v1/grantless-token",
        "/api/v1/invitations",
    }
    assert "spconnect API" in page.title()
    assert violations == [] and outside == []
