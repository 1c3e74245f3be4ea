"""The result page after a callback: what the browser's session keeps, and when it offers a retry."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import requests
from django.contrib.sessions.models import Session
from django.utils import timezone

from authflow.views import RESULT_SESSION_KEY
from sellers.models import Invitation
from sellers.services.invitations import invitation_create

from .conftest import ORDERS, parse_form
from .flow import run_flow


def stored_session(session_key: str) -> tuple[str, str]:
    """(the row's raw session_data, its decoded content as JSON text) from the session store."""
    row = Session.objects.get(session_key=session_key)
    return row.session_data, json.dumps(row.get_decoded())


def retry_action(invitation: Invitation) -> str:
    return f'action="/connect/{invitation.token}/start/"'


@pytest.mark.django_db
def test_session_keeps_the_invitation_id_not_its_token(client, tenant):
    invitation = invitation_create(tenant=tenant, name="Shop")
    page = run_flow(client, invitation.url, scopes=[ORDERS])
    assert "some permissions are missing" in page.content.decode()
    assert retry_action(invitation) in page.content.decode()  # the retry button is still there
    raw, decoded = stored_session(client.cookies["sessionid"].value)
    assert invitation.token not in raw and invitation.token not in decoded
    assert client.session[RESULT_SESSION_KEY]["invitation"] == invitation.pk


@pytest.mark.django_db
@pytest.mark.parametrize("spent", ["expired", "completed"])
def test_retry_is_offered_only_while_the_link_can_be_used(client, tenant, spent):
    invitation = invitation_create(tenant=tenant, name="Shop")
    run_flow(client, invitation.url, scopes=[ORDERS])
    if spent == "expired":
        Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    else:
        Invitation.objects.filter(pk=invitation.pk).update(completed_at=timezone.now())
    page = client.get("/authflow/result/")
    html = page.content.decode()
    assert page.status_code == 200 and "some permissions are missing" in html
    assert invitation.token not in html and "Try again" not in html


@pytest.mark.django_db(transaction=True)
def test_session_over_http_holds_no_invitation_token(live_amazon, tenant):
    invitation = invitation_create(tenant=tenant, name="HTTP Shop")
    browser = requests.Session()
    page = browser.get(invitation.url, timeout=10)
    csrf = [v for n, v, *_ in parse_form(page.text)["fields"] if n == "csrfmiddlewaretoken"][0]
    consent = browser.post(invitation.url + "start/", data={"csrfmiddlewaretoken": csrf}, timeout=10)
    assert consent.status_code == 200 and "Local sandbox" in consent.text
    form = parse_form(consent.text)
    data = {n: v for n, v, kind, _ in form["fields"] if kind != "checkbox"}
    data.update(decision="approve", scope=[ORDERS], selling_partner_id="A1HTTPRESULT")
    result = browser.post(consent.url.split("?")[0], data=data, timeout=20)
    assert result.url == f"{live_amazon}/authflow/result/" and "some permissions are missing" in result.text
    raw, decoded = stored_session(browser.cookies["sessionid"])
    assert invitation.token not in raw and invitation.token not in decoded
