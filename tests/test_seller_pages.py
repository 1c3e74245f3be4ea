"""The pages sellers see after the consent page, seen again: a reload, Back and Confirm on Amazon's
page, a link reopened after connecting (fully or in part); and every one keeps the agency's name."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from authflow.outcomes import OUTCOME_SESSION_KEY
from authflow.pages import CALLBACK_PROBLEMS
from sellers.models import Event, Grant, Invitation, Seller
from sellers.services.invitations import invitation_create

from .conftest import INVENTORY, ORDERS, REPORTS
from .flow import _path, consent_form, run_flow, sandbox_decide

pytestmark = pytest.mark.django_db


def brand(html: str) -> str:
    return html.split('<p class="brand">', 1)[1].split("</p>", 1)[0].strip()


def retry_actions(html: str) -> list[str]:
    """Where the page's forms post to, when that starts an invitation again."""
    return re.findall(r'<form method="post" action="(/connect/[^"]+/start/)"', html)


def test_reloading_the_declined_page_shows_it_again_with_its_retry(client, tenant):
    invitation = invitation_create(tenant=tenant, name="Shy Shop")
    consent_path, form = consent_form(client, invitation.url)
    callback = sandbox_decide(client, consent_path, form, decision="deny")

    pages = [client.get(callback), client.get(callback)]  # the page, then a reload

    for page in pages:
        html = page.content.decode()
        assert page.status_code == 200, html[:1000]
        assert "You declined the connection" in html and "already completed" not in html
        assert brand(html) == tenant.name
        assert retry_actions(html) == [f"/connect/{invitation.token}/start/"]
    # The reload recorded nothing more, and the retry it offers still starts.
    assert Event.objects.filter(seller=invitation.seller, kind=Event.Kind.DENIED).count() == 1
    assert client.post(retry_actions(pages[1].content.decode())[0]).status_code == 302


def test_back_and_confirm_after_connecting_shows_the_result_again_not_a_dead_retry(client, tenant):
    invitation = invitation_create(tenant=tenant, name="Done Shop")
    consent_path, form = consent_form(client, invitation.url)
    first = client.get(sandbox_decide(client, consent_path, form, spid="A1DONE"))
    assert first.status_code == 302
    grant = Grant.objects.get(seller=invitation.seller)

    # Back to Amazon's page, Confirm again: the same state comes back with a new code.
    again = client.get(sandbox_decide(client, consent_path, form, spid="A1DONE"))
    assert again.status_code == 302 and again["Location"].endswith("/authflow/result/")
    result = client.get(_path(again["Location"])).content.decode()
    assert "you're all set" in result and retry_actions(result) == []
    assert Grant.objects.get(seller=invitation.seller).refresh_token == grant.refresh_token

    # A session that forgot the outcome: the link is spent, so no "Try again" leading to a 410.
    session = client.session
    del session[OUTCOME_SESSION_KEY]
    session.save()
    third = client.get(sandbox_decide(client, consent_path, form, spid="A1DONE"))
    html = third.content.decode()
    assert "You&#x27;re already connected" in html, html[:1000]
    assert 'class="notice notice-info" role="status"' in html and "notice-error" not in html
    assert retry_actions(html) == [] and brand(html) == tenant.name


def test_a_used_state_of_an_open_link_offers_a_retry_that_starts(client, tenant):
    invitation = invitation_create(tenant=tenant, name="Partial Shop")
    consent_path, form = consent_form(client, invitation.url)
    client.get(sandbox_decide(client, consent_path, form, scopes=[ORDERS], spid="A1PART"))
    session = client.session
    del session[OUTCOME_SESSION_KEY]
    session.save()
    page = client.get(sandbox_decide(client, consent_path, form, scopes=[ORDERS], spid="A1PART"))
    html = page.content.decode()
    assert "This connection attempt was already completed" in html
    [action] = retry_actions(html)
    assert client.post(action).status_code == 302


def test_reopening_a_completed_link_says_already_connected_as_information(client, tenant):
    invitation = invitation_create(tenant=tenant, name="Done Shop")
    run_flow(client, invitation.url, spid="A1DONE")
    # Even once it would have expired: that it connected is what the seller needs to know.
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(days=1))
    page = client.get(_path(invitation.url))
    html = page.content.decode()
    assert page.status_code == 410
    assert "<h1>You&#x27;re already connected</h1>" in html
    assert f"Done Shop was connected to {tenant.name} with this link on" in html
    assert 'class="notice notice-info" role="status"' in html and "notice-error" not in html
    assert brand(html) == tenant.name
    assert client.post(_path(invitation.url) + "start/").status_code == 410

    # Revoked since: not "connected" any more.
    Seller.objects.filter(pk=invitation.seller_id).update(status=Seller.Status.REVOKED)
    html = client.get(_path(invitation.url)).content.decode()
    assert "This link was already used" in html and "already connected" not in html


def test_reopening_after_a_partial_grant_names_what_is_missing(client, tenant):
    invitation = invitation_create(tenant=tenant, name="Half Shop")
    before = client.get(_path(invitation.url)).content.decode()
    assert "did not grant" not in before
    run_flow(client, invitation.url, scopes=[ORDERS, REPORTS], spid="A1HALF")
    html = client.get(_path(invitation.url)).content.decode()
    assert "You connected Half Shop before, but did not grant this required permission:" in html
    assert '<strong class="scope-missing-name">Inventory</strong>' in html.replace("\n", "")
    assert "Continue to Amazon" in html
    assert INVENTORY not in Grant.objects.get(seller=invitation.seller).granted_scopes


def test_problem_pages_keep_the_agencys_name(client, tenant, amazon_calls):
    expired = invitation_create(tenant=tenant, name="Late Shop")
    Invitation.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=1))
    page = client.get(_path(expired.url))
    assert page.status_code == 410 and brand(page.content.decode()) == tenant.name

    amazon_calls.lwa_error("invalid_grant")
    invitation = invitation_create(tenant=tenant, name="Unlucky Shop")
    page = run_flow(client, invitation.url, spid="A1UNLUCKY")
    html = page.content.decode()
    assert page.status_code == 400 and "The connection could not be completed" in html
    assert brand(html) == tenant.name
    # A reload shows the same page, not "already completed".
    assert "could not be completed" in client.get(page.request["PATH_INFO"] + "?" + page.request["QUERY_STRING"]).content.decode()


def test_wrong_method_gets_a_405_page_with_its_allow_header(client, db):
    for method, path, allowed in (
        ("get", "/connect/x/start/", "POST"),
        ("post", "/authflow/callback/", "GET"),
        ("post", "/", "GET"),
    ):
        page = getattr(client, method)(path)
        html = page.content.decode()
        assert page.status_code == 405, path
        assert page["Allow"] == allowed
        assert "<h1>This page cannot be opened this way</h1>" in html, path


def test_no_page_speaks_of_signing_in():
    texts = [text for problem in CALLBACK_PROBLEMS.values() for text in (problem.title, problem.message)]
    assert not [text for text in texts if "sign-in" in text.lower()]



def test_login_uri_problem_pages_keep_the_agencys_name(client, tenant):
    page = client.get(f"/authflow/login/{tenant.public_id}/", {"amazon_callback_uri": "https://evil.example/", "amazon_state": "x"})
    html = page.content.decode()
    assert page.status_code == 400 and "<h1>This request did not come from Amazon</h1>" in html
    assert brand(html) == tenant.name
