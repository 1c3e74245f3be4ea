"""The Content-Security-Policy, enforced by Chromium, blocks inline script and nothing the
consent flow needs: stylesheet, forms, the redirect to the consent page and back."""

from __future__ import annotations

import pytest

from sellers.models import Grant
from sellers.services.invitations import invitation_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ACCENT = "rgb(11, 92, 173)"  # --accent in static/spconnect/site.css


def watch_violations(page) -> list[str]:
    seen: list[str] = []
    page.on("console", lambda msg: seen.append(msg.text) if "Content Security Policy" in msg.text else None)
    return seen


def test_consent_flow_works_under_the_enforced_policy(strict_page, shots, tenant):
    page = strict_page
    violations = watch_violations(page)
    invitation = invitation_create(tenant=tenant, name="Strict Shop")

    page.goto(invitation.url)
    assert page.evaluate("() => !!document.querySelector('meta[name=referrer]')")
    button = page.get_by_role("button", name="Continue to Amazon")
    assert button.evaluate("b => getComputedStyle(b).backgroundColor") == ACCENT  # the stylesheet loaded
    shots.take(page, "invite-strict")
    button.click()  # a form post answered by a redirect to the consent host: form-action allows it
    page.wait_for_url("**/sandbox/na/apps/authorize/consent?**")
    page.get_by_label("Selling partner ID (merchant token)").fill("A1STRICT")
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url("**/authflow/result/")
    shots.take(page, "result-strict")
    assert "you're all set" in page.get_by_role("heading", level=1).inner_text()
    assert Grant.objects.filter(seller__selling_partner_id="A1STRICT").exists()
    assert violations == []


def test_inline_script_is_refused(strict_page, shots, tenant):
    page = strict_page
    violations = watch_violations(page)
    response = page.goto(invitation_create(tenant=tenant, name="Script Shop").url)
    assert "default-src 'none'" in response.headers["content-security-policy"]
    # Not even a request from the page's own script context: connect-src falls back to 'none'.
    assert page.evaluate("() => fetch(location.href).then(() => 'fetched', () => 'refused')") == "refused"
    try:
        page.add_script_tag(content="window.__injected = true;")
    except Exception:  # noqa: BLE001 - Playwright may report the blocked script itself
        pass
    assert page.evaluate("() => window.__injected === undefined")
    assert any("script" in v.lower() for v in violations), violations
