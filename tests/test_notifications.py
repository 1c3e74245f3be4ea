"""Staff notifications: who gets the email, and the signed webhook (never carrying a token)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta

import pytest
import requests
from django.core import mail
from django.utils import timezone
from django_q.models import Schedule

from sellers.models import Event, TenantMembership
from sellers.services.events import event_record
from sellers.services.notifications import WebhookDeliveryFailed, notify_staff, webhook_deliver

from .conftest import make_seller
from .test_tokens import connected, staff

pytestmark = pytest.mark.django_db

HOOK = "http://127.0.0.1:9/hooks/spconnect"


@pytest.fixture
def local_hooks(settings):
    """The tests below post to a receiver on this machine, as in development."""
    settings.SPCONNECT_WEBHOOK_ALLOW_PRIVATE = True


def test_email_goes_to_owners_and_managers_of_the_tenant_only(tenant, other_tenant, make_user, django_capture_on_commit_callbacks):
    staff(make_user, tenant, "owner")
    staff(make_user, tenant, "manager", role=TenantMembership.Role.MANAGER)
    staff(make_user, tenant, "viewer", role=TenantMembership.Role.VIEWER)
    staff(make_user, other_tenant, "stranger")
    make_user("noemail", tenant=tenant)  # an owner without an address is skipped
    seller = make_seller(tenant, "Shop", spid="A1SHOP")
    event = event_record(seller=seller, kind=Event.Kind.REVOKED, detail="LWA said invalid_grant.")
    with django_capture_on_commit_callbacks(execute=True):
        notify_staff(tenant=tenant, subject="Shop is revoked", body="Shop revoked access.", event=event)
    assert sorted(m.to[0] for m in mail.outbox) == ["manager@agency.example", "owner@agency.example"]
    message = mail.outbox[0]
    assert message.subject == f"[spconnect] {tenant.name}: Shop is revoked"
    assert "Shop revoked access." in message.body and "A1SHOP" in message.body and "Revoked at" in message.body


def test_nothing_leaves_before_the_transaction_commits(tenant, make_user, django_capture_on_commit_callbacks):
    staff(make_user, tenant, "owner")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        notify_staff(tenant=tenant, subject="s", body="b")
    assert mail.outbox == [] and len(callbacks) == 1


def test_webhook_goes_through_django_q_signed_and_never_carries_a_token(
    local_hooks, tenant, monkeypatch, django_capture_on_commit_callbacks
):
    tenant.webhook_url, tenant.webhook_secret = HOOK, "whsec-test-0123456789"
    tenant.save()
    seller, grant = connected(tenant, spid="A1HOOKED")
    posted = []

    def fake_post(*, url, body, headers):
        posted.append({"url": url, "body": body, "headers": dict(headers)})
        return 200

    monkeypatch.setattr("sellers.amazon.webhook_post", fake_post)
    # Services never put tokens in history or messages; if one ever did, it is scrubbed on the way out.
    event = event_record(seller=seller, kind=Event.Kind.REVOKED, detail=f"leaked {grant.refresh_token}", data={"from": "active"})
    with django_capture_on_commit_callbacks(execute=True):
        notify_staff(tenant=tenant, subject="Shop is revoked", body=f"oops {grant.access_token}", event=event)
    [sent] = posted
    assert sent["url"] == HOOK
    signed = f"{sent['headers']['X-Spconnect-Timestamp']}.".encode() + sent["body"]
    expected = hmac.new(b"whsec-test-0123456789", signed, hashlib.sha256).hexdigest()
    assert sent["headers"]["X-Spconnect-Signature"] == f"sha256={expected}"
    payload = json.loads(sent["body"])
    assert payload["type"] == "revoked" and payload["seller"]["selling_partner_id"] == "A1HOOKED"
    assert payload["tenant"] == {"slug": "acme", "name": tenant.name} and payload["event"]["data"] == {"from": "active"}
    assert "Atz" not in sent["body"].decode() and "[redacted]" in sent["body"].decode()


def test_failed_webhook_is_retried_through_django_q_then_given_up(local_hooks, tenant, amazon_calls):
    tenant.webhook_url, tenant.webhook_secret = HOOK, "whsec-test-0123456789"
    tenant.save()
    amazon_calls.script(url_contains="/hooks/", status=500)
    with pytest.raises(WebhookDeliveryFailed, match="attempt 2"):
        webhook_deliver(tenant_id=tenant.pk, body='{"type":"notice"}')
    retry = Schedule.objects.get(func="sellers.tasks.webhook_deliver")
    assert retry.schedule_type == Schedule.ONCE and retry.args.endswith(", 2)")  # (tenant, body, attempt 2)
    assert retry.next_run > timezone.now() + timedelta(seconds=50)
    amazon_calls.script(url_contains="/hooks/", exc=requests.ConnectionError("refused"))
    with pytest.raises(WebhookDeliveryFailed, match="gave up"):
        webhook_deliver(tenant_id=tenant.pk, body='{"type":"notice"}', attempt=5)
    assert Schedule.objects.filter(func="sellers.tasks.webhook_deliver").count() == 1


def test_webhook_without_a_secret_is_not_sent(local_hooks, tenant, amazon_calls, django_capture_on_commit_callbacks):
    tenant.webhook_url = HOOK
    tenant.save()
    with django_capture_on_commit_callbacks(execute=True):
        notify_staff(tenant=tenant, subject="s", body="b")
    assert amazon_calls.calls == []


# --- Where webhooks may go ------------------------------------------------------------------


def _public_dns(monkeypatch, address: str):
    def getaddrinfo(host, port, *args, **kwargs):
        return [(2, 1, 6, "", (address, port))]

    monkeypatch.setattr("sellers.validators.socket.getaddrinfo", getaddrinfo)


@pytest.mark.parametrize(
    "url",
    [
        HOOK,  # http, loopback
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://[::1]/hook",
        "https://[::ffff:10.0.0.5]/hook",
        "https://169.254.169.254/latest/meta-data/",  # cloud metadata
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://redis.internal/hook",
        "https://user:pw@hooks.example/hook",
        "https://straße.example/hook",  # resolved as strasse.example, called as xn--strae-oqa.example
        "https://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 to 169.254.169.254
        "https://[2002:a9fe:a9fe::]/hook",  # 6to4
        "https://[::7f00:1]/hook",  # IPv4-compatible 127.0.0.1
    ],
)
def test_internal_webhook_urls_are_refused_at_delivery_without_a_request(tenant, amazon_calls, url):
    tenant.webhook_url, tenant.webhook_secret = url, "whsec-test-0123456789"
    tenant.save()
    with pytest.raises(WebhookDeliveryFailed, match="refused"):
        webhook_deliver(tenant_id=tenant.pk, body='{"type":"notice"}')
    assert amazon_calls.calls == []
    assert not Schedule.objects.filter(func="sellers.tasks.webhook_deliver").exists()


def test_a_public_name_that_now_resolves_inside_is_refused(tenant, amazon_calls, monkeypatch):
    _public_dns(monkeypatch, "172.16.5.4")
    tenant.webhook_url, tenant.webhook_secret = "https://hooks.example/x", "whsec-test-0123456789"
    tenant.save()
    with pytest.raises(WebhookDeliveryFailed, match="resolves to a private"):
        webhook_deliver(tenant_id=tenant.pk, body='{"type":"notice"}')
    assert amazon_calls.calls == []


def test_a_public_https_receiver_gets_the_post(tenant, amazon_calls, monkeypatch):
    _public_dns(monkeypatch, "93.184.215.14")
    tenant.webhook_url, tenant.webhook_secret = "https://hooks.example/x", "whsec-test-0123456789"
    tenant.save()
    amazon_calls.script(url_contains="hooks.example", status=204)
    assert webhook_deliver(tenant_id=tenant.pk, body='{"type":"notice"}') == "delivered (attempt 1)"
    assert [c.url for c in amazon_calls.calls] == ["https://hooks.example/x"]
