"""Tenant webhooks in the Standard Webhooks format, delivered over real HTTP to a receiver on this
machine and checked with the `standardwebhooks` package's own verifier: one test per event type
(the right type, the API's connection object, never a token), tampering and replays refused,
retries keeping the webhook-id."""

from __future__ import annotations

import ast
import base64
import http.server
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.utils import timezone
from django_q.models import Schedule
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from api.keys import api_key_create
from api.schemas import ConnectionOut
from sellers.models import Event, Grant, IdentityReview, Seller
from sellers.services.grants import grant_mark_revoked
from sellers.services.invitations import invitation_create, reauthorization_link_get_or_create
from sellers.services.renewals import renewals_announce, renewals_expire
from sellers.services.reviews import identity_review_approve, identity_review_reject, identity_reviews_expire
from sellers.services.tokens import RefreshOutcome, access_token_cache_clear, grant_refresh
from sellers.services.webhook_events import WEBHOOK_EVENT_TYPES
from sellers.services.webhooks import webhook_headers, webhook_secret_generate
from sellers.tasks import webhook_deliver

from .conftest import INVENTORY, ORDERS, ROOT, shows_token
from .flow import consent_form, run_flow, sandbox_decide
from .test_identity_review import _callback, _corrupt
from .test_tokens import connected

pytestmark = pytest.mark.django_db


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records each POST and answers the next scripted status."""

    server: http.server.HTTPServer
    received: list[Delivery] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/spconnect"


def _receiver() -> Receiver:
    box: dict[str, Receiver] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            receiver = box["r"]
            body = self.rfile.read(int(self.headers["Content-Length"]))
            receiver.received.append(Delivery({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(receiver.statuses.pop(0) if receiver.statuses else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    box["r"] = receiver = Receiver(http.server.HTTPServer(("127.0.0.1", 0), Handler))
    threading.Thread(target=receiver.server.serve_forever, daemon=True).start()
    return receiver


@pytest.fixture
def hook(tenant, settings):
    """The tenant's webhook points at a local receiver (allowed as in development) with a fresh
    whsec_ secret."""
    settings.SPCONNECT_WEBHOOK_ALLOW_PRIVATE = True
    receiver = _receiver()
    tenant.webhook_url, tenant.webhook_secret = receiver.url, webhook_secret_generate()
    tenant.save()
    access_token_cache_clear()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def verified(hook: Receiver, tenant) -> list[dict]:
    """Every message received, checked by the stock verifier; and never a token in any."""
    tenant.refresh_from_db()
    payloads = []
    for delivery in hook.received:
        text = delivery.body.decode()
        assert not shows_token(text) and tenant.webhook_secret not in text and tenant.client_secret not in text
        payloads.append(Webhook(tenant.webhook_secret).verify(delivery.body, delivery.headers))
    return payloads


def types(payloads: list[dict]) -> list[str]:
    return [p["type"] for p in payloads]


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- Signing --------------------------------------------------------------------------------


def test_a_delivered_webhook_verifies_and_carries_the_apis_connection_object(
    tenant, hook, client, django_capture_on_commit_callbacks
):
    seller, grant = connected(tenant, spid="A1HOOKED")
    with django_capture_on_commit_callbacks(execute=True):
        assert grant_mark_revoked(seller=seller, reason="Revoked in Seller Central.", actor="amazon")
    [delivery] = hook.received
    assert re.fullmatch(r"msg_[0-9a-f]{32}", delivery.headers["webhook-id"])
    assert abs(int(delivery.headers["webhook-timestamp"]) - datetime.now(UTC).timestamp()) < 300
    assert delivery.headers["webhook-signature"].startswith("v1,")
    assert delivery.headers["content-type"] == "application/json"
    [payload] = verified(hook, tenant)
    assert set(payload) == {"type", "timestamp", "data"} and payload["type"] == "connection.revoked"
    event = Event.objects.get(seller=seller, kind=Event.Kind.REVOKED)
    assert abs(_instant(payload["timestamp"]) - event.created_at) < timedelta(milliseconds=1)
    # The same object, to the byte, as the agency API answers for this connection.
    key = api_key_create(tenant=tenant, name="reader", permissions=["connections:read"], actor="test")[1]
    answer = client.get(f"/api/v1/connections/{seller.public_id}", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert answer.status_code == 200 and payload["data"] == answer.json()
    assert payload["data"]["status"] == "revoked" and payload["data"]["access_token_expires_at"] is None
    assert grant.refresh_token not in delivery.body.decode()


def test_a_tampered_body_an_old_timestamp_or_another_secret_is_refused_by_the_verifier(
    tenant, hook, django_capture_on_commit_callbacks
):
    seller, _ = connected(tenant)
    with django_capture_on_commit_callbacks(execute=True):
        grant_mark_revoked(seller=seller, reason="r", actor="amazon")
    [delivery] = hook.received
    verifier = Webhook(tenant.webhook_secret)
    verifier.verify(delivery.body, delivery.headers)  # as delivered: accepted
    tampered = delivery.body.replace(b'"status":"revoked"', b'"status":"active"')
    assert tampered != delivery.body
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        verifier.verify(tampered, delivery.headers)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        verifier.verify(delivery.body, {**delivery.headers, "webhook-id": "msg_other"})
    # A replay ten minutes later, even correctly signed for its time, is too old.
    old = datetime.now(UTC) - timedelta(minutes=10)
    replay = webhook_headers(secret=tenant.webhook_secret, message_id=delivery.headers["webhook-id"], body=delivery.body.decode(), now=old)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verifier.verify(delivery.body, replay)
    with pytest.raises(WebhookVerificationError):
        Webhook(webhook_secret_generate()).verify(delivery.body, delivery.headers)


def test_a_secret_saved_before_whsec_secrets_signs_as_whsec_of_its_base64(
    tenant, hook, django_capture_on_commit_callbacks
):
    older = "an-older-webhook-secret-4242"
    tenant.webhook_secret = older
    tenant.save()
    seller, _ = connected(tenant)
    with django_capture_on_commit_callbacks(execute=True):
        grant_mark_revoked(seller=seller, reason="r", actor="amazon")
    [delivery] = hook.received
    as_whsec = "whsec_" + base64.b64encode(older.encode()).decode()
    assert Webhook(as_whsec).verify(delivery.body, delivery.headers)["type"] == "connection.revoked"


def test_a_failed_delivery_is_retried_with_the_same_webhook_id_and_a_fresh_signature(
    tenant, hook, django_capture_on_commit_callbacks
):
    hook.statuses = [503]
    seller, _ = connected(tenant)
    with django_capture_on_commit_callbacks(execute=True):
        grant_mark_revoked(seller=seller, reason="r", actor="amazon")
    retry = Schedule.objects.get(func="sellers.tasks.webhook_deliver")
    assert retry.next_run > timezone.now() + timedelta(seconds=50)
    # What the schedule will run, run now (django-q2 would, a minute later).
    assert webhook_deliver(*ast.literal_eval(retry.args)) == "delivered (attempt 2)"
    first, second = hook.received
    assert first.body == second.body and first.headers["webhook-id"] == second.headers["webhook-id"]
    assert (first.headers["x-spconnect-delivery-attempt"], second.headers["x-spconnect-delivery-attempt"]) == ("1", "2")
    assert types(verified(hook, tenant)) == ["connection.revoked", "connection.revoked"]


def test_a_webhook_secret_no_key_decrypts_never_stops_the_change_being_announced(
    tenant, hook, django_capture_on_commit_callbacks
):
    from sellers.models import Tenant

    seller, grant = connected(tenant)
    Grant.objects.filter(pk=grant.pk).update(authorized_at=timezone.now() - timedelta(days=366))
    Seller.objects.filter(pk=seller.pk).update(status=Seller.Status.ACTIVE)
    _corrupt(Tenant, tenant.pk, "webhook_secret")
    with django_capture_on_commit_callbacks(execute=True):
        assert renewals_expire() == 1
    assert Seller.objects.get(pk=seller.pk).status == Seller.Status.EXPIRED
    assert Event.objects.filter(seller=seller, kind=Event.Kind.EXPIRED).count() == 1
    assert hook.received == []  # nothing can be signed: nothing is sent, and no retry is scheduled
    assert not Schedule.objects.filter(func="sellers.tasks.webhook_deliver").exists()


# --- One test per event type ----------------------------------------------------------------


def _connect(client, tenant, name: str = "Shop", *, spid: str = "A1SHOP", scopes=None) -> Seller:
    invitation = invitation_create(tenant=tenant, name=name)
    page = run_flow(client, invitation.url, spid=spid, **({"scopes": scopes} if scopes is not None else {}))
    assert page.status_code == 200
    return Seller.objects.get(pk=invitation.seller.pk)


def test_connection_created_then_reauthorized(tenant, hook, client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        seller = _connect(client, tenant)
        link, _ = reauthorization_link_get_or_create(seller=seller)
        assert run_flow(client, link.url, spid="A1SHOP").status_code == 200
    created, reauthorized = verified(hook, tenant)
    assert (created["type"], reauthorized["type"]) == ("connection.created", "connection.reauthorized")
    for payload in (created, reauthorized):
        data = payload["data"]
        assert data["id"] == str(seller.public_id) and data["selling_partner_id"] == "A1SHOP" and data["status"] == "active"
        assert set(data["granted_scopes"]) >= {ORDERS, INVENTORY} and data["missing_scopes"] == []
    assert _instant(reauthorized["data"]["authorized_at"]) >= _instant(created["data"]["authorized_at"])


def test_connection_partial(tenant, hook, client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        seller = _connect(client, tenant, scopes=[ORDERS])
    [payload] = verified(hook, tenant)
    assert payload["type"] == "connection.partial"
    assert payload["data"]["id"] == str(seller.public_id) and payload["data"]["status"] == "partial"
    assert payload["data"]["missing_scopes"] == [INVENTORY]


@pytest.mark.parametrize("kind", [Event.Kind.REVOKED, Event.Kind.MARKED_REVOKED])
def test_connection_revoked_by_amazon_or_by_staff(tenant, hook, django_capture_on_commit_callbacks, kind):
    seller, _ = connected(tenant)
    with django_capture_on_commit_callbacks(execute=True):
        grant_mark_revoked(seller=seller, reason="gone", actor="staff:olga", kind=kind)
    [payload] = verified(hook, tenant)
    assert payload["type"] == "connection.revoked" and payload["data"]["id"] == str(seller.public_id)
    assert payload["data"]["status"] == "revoked"


def test_connection_expiring_once_when_the_renewal_comes_within_the_window(
    tenant, hook, settings, django_capture_on_commit_callbacks
):
    settings.SPCONNECT_RENEWAL_WINDOW_DAYS = 30
    seller, grant = connected(tenant)
    not_yet, _ = connected(tenant, name="Not Yet")
    Grant.objects.filter(pk=grant.pk).update(authorized_at=timezone.now() - timedelta(days=340))
    with django_capture_on_commit_callbacks(execute=True):
        assert renewals_announce() == 1
        assert renewals_announce() == 0  # once per authorization
        assert renewals_expire() == 0
    [payload] = verified(hook, tenant)
    assert payload["type"] == "connection.expiring"
    assert payload["data"]["id"] == str(seller.public_id) and payload["data"]["status"] == "active"
    assert datetime.now(UTC) < _instant(payload["data"]["renewal_due_at"]) < datetime.now(UTC) + timedelta(days=30)
    event = Event.objects.get(kind=Event.Kind.RENEWAL_DUE)
    grant.refresh_from_db()
    assert event.seller_id == seller.pk and event.data["authorized_at"] == grant.authorized_at.isoformat()
    assert not Event.objects.filter(seller=not_yet, kind=Event.Kind.RENEWAL_DUE).exists()

    # The seller authorizes again: the new authorization is announced a year later, not before.
    Grant.objects.filter(pk=grant.pk).update(authorized_at=timezone.now())
    assert renewals_announce() == 0
    assert renewals_announce(now=timezone.now() + timedelta(days=340)) == 2


def test_connection_expired_when_amazons_365_days_are_reached(tenant, hook, django_capture_on_commit_callbacks):
    seller, grant = connected(tenant)
    Grant.objects.filter(pk=grant.pk).update(authorized_at=timezone.now() - timedelta(days=366))
    Seller.objects.filter(pk=seller.pk).update(status=Seller.Status.ACTIVE)  # as before the hourly sweep
    with django_capture_on_commit_callbacks(execute=True):
        assert renewals_expire() == 1
        assert renewals_expire() == 0  # announced once
    [payload] = verified(hook, tenant)
    assert payload["type"] == "connection.expired"
    assert payload["data"]["id"] == str(seller.public_id) and payload["data"]["status"] == "expired"
    assert _instant(payload["data"]["renewal_due_at"]) < datetime.now(UTC)


def test_connection_refresh_failing_then_recovered(tenant, hook, amazon_calls, settings, django_capture_on_commit_callbacks):
    settings.SPCONNECT_FAILING_THRESHOLD = 2
    seller, grant = connected(tenant, expires_in=600)
    amazon_calls.lwa_error("server_error", status=503, times=3)
    for _ in range(3):  # the second failure starts the streak; the third is part of it
        with django_capture_on_commit_callbacks(execute=True):
            assert grant_refresh(grant=Grant.objects.get(pk=grant.pk)).outcome == RefreshOutcome.TRANSIENT_FAILURE
        Grant.objects.filter(pk=grant.pk).update(next_attempt_at=None)  # time passes
    with django_capture_on_commit_callbacks(execute=True):
        assert grant_refresh(grant=Grant.objects.get(pk=grant.pk)).outcome == RefreshOutcome.REFRESHED
    failing, recovered = verified(hook, tenant)
    assert (failing["type"], recovered["type"]) == ("connection.refresh_failing", "connection.refresh_recovered")
    assert failing["data"]["id"] == recovered["data"]["id"] == str(seller.public_id)
    assert (failing["data"]["status"], recovered["data"]["status"]) == ("failing", "active")


def test_app_credentials_rejected_names_the_tenant(tenant, hook, amazon_calls, django_capture_on_commit_callbacks):
    _, grant = connected(tenant, expires_in=60)
    _, other = connected(tenant, "Two", expires_in=60)
    amazon_calls.lwa_error("invalid_client", status=401, description="Client authentication failed", times=None)
    with django_capture_on_commit_callbacks(execute=True):
        assert grant_refresh(grant=grant).outcome == RefreshOutcome.CREDENTIALS_FAILED
        assert grant_refresh(grant=other).outcome == RefreshOutcome.CREDENTIALS_FAILED  # flagged once
    [payload] = verified(hook, tenant)
    assert payload["type"] == "app.credentials_rejected"
    data = payload["data"]
    assert data["tenant"] == {"id": str(tenant.public_id), "slug": tenant.slug, "name": tenant.name}
    assert data["error"].startswith("invalid_client") and _instant(data["failing_since"]) <= datetime.now(UTC)


def _open_review(client, tenant) -> tuple[Seller, IdentityReview]:
    """A connected seller's link used by another Amazon account claiming its id: held for review."""
    seller = _connect(client, tenant)
    link, _ = reauthorization_link_get_or_create(seller=seller)
    consent_path, form = consent_form(client, link.url)
    back = sandbox_decide(client, consent_path, form, spid="A1OTHER")
    parts = urlsplit(back)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | {"selling_partner_id": "A1SHOP"}
    assert client.get(f"{parts.path}?{urlencode(query)}").status_code == 200
    return seller, IdentityReview.objects.get(seller=seller)


def _review_checked(payload: dict, review: IdentityReview, seller: Seller, status: str) -> None:
    data = payload["data"]
    assert data["id"] == str(review.public_id) and data["status"] == status and data["reason"] == review.reason
    assert data["selling_partner_id"] == "A1SHOP" and data["region"] == "na" and data["holder"] is None
    assert data["connection"]["id"] == str(seller.public_id)


def test_identity_review_opened_then_rejected(tenant, hook, client, django_capture_on_commit_callbacks):
    # One block per request: each message is built when its own transaction commits.
    with django_capture_on_commit_callbacks(execute=True):
        seller, review = _open_review(client, tenant)
    with django_capture_on_commit_callbacks(execute=True):
        identity_review_reject(review=review, actor="staff:olga")
    created, opened, rejected = verified(hook, tenant)
    assert types([created, opened, rejected]) == ["connection.created", "identity_review.opened", "identity_review.rejected"]
    _review_checked(opened, review, seller, "open")
    assert opened["data"]["decided_at"] is None and _instant(opened["data"]["expires_at"]) > datetime.now(UTC)
    _review_checked(rejected, review, seller, "rejected")
    assert rejected["data"]["decided_at"] is not None


def test_identity_review_approved_and_the_connection_reauthorized(tenant, hook, client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        seller, review = _open_review(client, tenant)
    with django_capture_on_commit_callbacks(execute=True):
        identity_review_approve(review=review, actor="staff:olga")
    payloads = verified(hook, tenant)
    assert types(payloads) == ["connection.created", "identity_review.opened", "connection.reauthorized", "identity_review.approved"]
    _review_checked(payloads[-1], review, seller, "approved")
    assert payloads[-1]["data"]["connection"]["status"] == "active"


def test_identity_review_expired(tenant, hook, client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        seller, review = _open_review(client, tenant)
    with django_capture_on_commit_callbacks(execute=True):
        assert identity_reviews_expire(now=timezone.now() + timedelta(days=8)) == 1
    payloads = verified(hook, tenant)
    assert types(payloads) == ["connection.created", "identity_review.opened", "identity_review.expired"]
    _review_checked(payloads[-1], review, seller, "expired")


def test_one_review_is_announced_once_with_the_connection_holding_the_id(tenant, hook, client, django_capture_on_commit_callbacks):
    """Held for review as a squatted id: the holder's copy of the history event and a repeated
    attempt of the same account send nothing more; approval names the holder, which gave the id up."""
    with django_capture_on_commit_callbacks(execute=True):
        squat = invitation_create(tenant=tenant, name="Squatter Ltd")
        assert "all set" in _callback(client, squat.url, account="A1ATTACKER", claim="A1GENUINE").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        owner = invitation_create(tenant=tenant, name="Genuine Owner")
        _callback(client, owner.url, account="A1GENUINE")
    with django_capture_on_commit_callbacks(execute=True):
        _callback(client, owner.url, account="A1GENUINE")  # the same account again: same review
    review = IdentityReview.objects.get(seller=owner.seller)
    assert review.holder_id == squat.seller.pk
    assert Event.objects.filter(kind=Event.Kind.IDENTITY_REVIEW_OPENED).count() == 3  # seller, holder, attempt
    with django_capture_on_commit_callbacks(execute=True):
        identity_review_approve(review=review, actor="staff:olga")
    payloads = verified(hook, tenant)
    assert types(payloads) == ["connection.created", "identity_review.opened", "connection.created", "identity_review.approved"]
    opened, approved = payloads[1]["data"], payloads[3]["data"]
    assert opened["connection"]["id"] == str(owner.seller.public_id) and opened["connection"]["selling_partner_id"] is None
    assert opened["holder"]["id"] == str(squat.seller.public_id) and opened["holder"]["selling_partner_id"] == "A1GENUINE"
    assert approved["connection"]["selling_partner_id"] == "A1GENUINE" and approved["connection"]["status"] == "active"
    assert approved["holder"]["id"] == str(squat.seller.public_id) and approved["holder"]["selling_partner_id"] is None


def _webhooks_section() -> str:
    return (ROOT / "docs" / "api.md").read_text().split("\n## Webhooks\n", 1)[1].split("\n## ", 1)[0]


def test_every_event_type_is_documented_with_its_payload():
    documented = set(re.findall(r"^#### `([a-z_]+\.[a-z_]+)`", _webhooks_section(), re.MULTILINE))
    assert documented == set(WEBHOOK_EVENT_TYPES.values())
    # with an example each, valid JSON of the documented type
    section = _webhooks_section()
    examples = [json.loads(e) for e in re.findall(r"```json\n(.*?)```", section, re.DOTALL)]
    assert sorted(e["type"] for e in examples) == sorted(set(WEBHOOK_EVENT_TYPES.values()))
    for example in examples:
        assert set(example) == {"type", "timestamp", "data"}
        data = example["data"]
        connection = data if example["type"].startswith("connection.") else data.get("connection")
        if connection is not None:  # the API's object, field for field
            assert set(connection) == set(ConnectionOut.model_fields)


def test_the_docs_receiver_example_verifies_a_real_delivery(tenant, hook, django_capture_on_commit_callbacks):
    """The Python receiver shown in docs/api.md, run against a delivered message."""
    seller, _ = connected(tenant)
    with django_capture_on_commit_callbacks(execute=True):
        grant_mark_revoked(seller=seller, reason="r", actor="amazon")
    [delivery] = hook.received
    section = _webhooks_section()
    [code] = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    namespace: dict = {}
    exec(compile(code, "docs/api.md", "exec"), namespace)  # noqa: S102 - the project's own docs
    handle = namespace["handle"]
    assert handle(delivery.body, delivery.headers, secret=tenant.webhook_secret) == ("connection.revoked", str(seller.public_id))
    with pytest.raises(WebhookVerificationError):
        handle(delivery.body + b" ", delivery.headers, secret=tenant.webhook_secret)

