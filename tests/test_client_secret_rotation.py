"""LWA client secret rotation: `set_client_secret`, Amazon's notifications, and refreshes that keep
working through a rotation with no seller touched."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.utils import timezone

from sellers import amazon
from sellers.models import Event, Grant, Seller, Tenant, TenantMembership
from sellers.services.credentials import tenant_lwa_call
from sellers.services.invitations import invitation_create
from sellers.services.tokens import RefreshOutcome, access_token_cache_clear, grant_refresh

from .flow import run_flow

pytestmark = pytest.mark.django_db

OLD = "secret-acme-0123456789"  # make_tenant's secret
NEW = "amzn1.oa2-cs.v1.NEW-secret-from-amazon-42"


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    access_token_cache_clear()


@pytest.fixture
def owner(tenant, make_user):
    user = make_user("olive", tenant=tenant, role=TenantMembership.Role.OWNER)
    user.email = "olive@agency.example"
    user.save()
    return user


def set_secret(*args, stdin: str | io.StringIO = "") -> str:
    stream = stdin if isinstance(stdin, io.StringIO) else io.StringIO(stdin)
    out = io.StringIO()
    call_command("set_client_secret", *args, stdin=stream, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def ingest(document, *, via_stdin: bool = False, tmp_path=None) -> str:
    out = io.StringIO()
    text = document if isinstance(document, str) else json.dumps(document)
    if via_stdin:
        call_command("ingest_notification", "-", stdin=io.StringIO(text), stdout=out)
    else:
        path = tmp_path / "notification.json"
        path.write_text(text)
        call_command("ingest_notification", str(path), stdout=out)
    return out.getvalue()


def new_secret_notification(client_id: str, secret: str = NEW, *, old_days: float = 7, new_days: float = 180) -> dict:
    now = timezone.now()
    return {
        "notificationVersion": "1.0",
        "notificationType": "APPLICATION_OAUTH_CLIENT_NEW_SECRET",
        "payloadVersion": "2023-11-30",
        "eventTime": now.isoformat(),
        "payload": {
            "applicationOAuthClientNewSecret": {
                "clientId": client_id,
                "newClientSecret": secret,
                "newClientSecretExpiryTime": (now + timedelta(days=new_days)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "oldClientSecretExpiryTime": (now + timedelta(days=old_days)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            }
        },
        "notificationMetadata": {
            "applicationId": "amzn1.sp.solution.test",
            "subscriptionId": "sub-1",
            "publishTime": now.isoformat(),
            "notificationId": "n-1",
        },
    }


def expiry_notification(client_id: str, *, days: float = 30) -> dict:
    when = timezone.now() + timedelta(days=days)
    return {
        "notificationVersion": "1.0",
        "notificationType": "APPLICATION_OAUTH_CLIENT_SECRET_EXPIRY",
        "payloadVersion": "2023-11-30",
        "eventTime": timezone.now().isoformat(),
        "payload": {
            "applicationOAuthClientSecretExpiry": {
                "clientId": client_id,
                "clientSecretExpiryTime": when.strftime("%Y-%m-%dT%H:%M:%S.224Z"),
                "clientSecretExpiryReason": "PERIODIC_ROTATION",
            }
        },
        "notificationMetadata": {"applicationId": "amzn1.sp.solution.test", "notificationId": "n-2"},
    }


def no_secret_in(*texts: str) -> None:
    for text in texts:
        assert NEW not in text and OLD not in text


# --- set_client_secret ---------------------------------------------------------------------------


def test_set_client_secret_reads_stdin_and_keeps_the_old_one_as_previous(tenant, owner, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        out = set_secret("--tenant", "acme", "--previous-valid-days", "3", stdin=NEW + "\n")
    tenant.refresh_from_db()
    assert tenant.client_secret == NEW and tenant.previous_client_secret == OLD
    left = tenant.previous_client_secret_expires_at - timezone.now()
    assert timedelta(days=2, hours=23) < left <= timedelta(days=3)
    assert timedelta(days=179) < tenant.client_secret_expires_at - timezone.now() <= timedelta(days=180)
    event = Event.objects.get(tenant=tenant, kind=Event.Kind.SECRET_ROTATED)
    assert event.actor == "command:set_client_secret" and event.data["source"] == "set_client_secret"
    assert "New client secret installed for Acme Agency" in out
    assert [m.to for m in mail.outbox] == [["olive@agency.example"]]
    no_secret_in(out, event.detail, json.dumps(event.data), mail.outbox[0].subject, mail.outbox[0].body)


def test_set_client_secret_asks_without_echo_on_a_terminal(tenant, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    prompts = []
    monkeypatch.setattr("getpass.getpass", lambda prompt: prompts.append(prompt) or NEW)
    set_secret("--tenant", "acme", stdin=Terminal(""))
    assert prompts and "not echoed" in prompts[0]
    assert Tenant.objects.get(pk=tenant.pk).client_secret == NEW


def test_the_secret_cannot_be_given_as_an_argument(tenant):
    with pytest.raises((CommandError, TypeError)):
        call_command("set_client_secret", "--tenant", "acme", "--secret", NEW)
    assert Tenant.objects.get(pk=tenant.pk).client_secret == OLD


@pytest.mark.parametrize(
    "stdin, message",
    [("", "empty"), ("\n\n", "empty"), (f"{NEW}\nsecond line\n", "more than one line"), ("with space", "without spaces")],
)
def test_set_client_secret_refuses_bad_input(tenant, stdin, message):
    with pytest.raises(CommandError, match=message) as info:
        set_secret("--tenant", "acme", stdin=stdin)
    no_secret_in(str(info.value))
    assert Tenant.objects.get(pk=tenant.pk).client_secret == OLD
    assert not Event.objects.filter(kind=Event.Kind.SECRET_ROTATED).exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--expires-at", "2026-02-30T00:00:00Z"], "not an ISO 8601 time"),
        (["--expires-at", "soon"], "not an ISO 8601 time"),
        (["--previous-valid-days", "1e300"], "between 0 and 30"),
        (["--previous-valid-days", "nan"], "between 0 and 30"),
        (["--previous-valid-days", "-1"], "between 0 and 30"),
    ],
)
def test_set_client_secret_refuses_bad_options(tenant, args, message):
    with pytest.raises(CommandError, match=message):
        set_secret("--tenant", "acme", *args, stdin=NEW)
    assert Tenant.objects.get(pk=tenant.pk).client_secret == OLD


def test_setting_the_current_secret_again_changes_nothing(tenant):
    out = set_secret("--tenant", "acme", stdin=OLD)
    assert "already the current client secret" in out
    assert Tenant.objects.get(pk=tenant.pk).previous_client_secret == ""
    with pytest.raises(CommandError, match="Unknown tenant 'nope'"):
        set_secret("--tenant", "nope", stdin=NEW)


# --- ingest_notification -------------------------------------------------------------------------


def test_new_secret_notification_installs_it_for_the_matching_tenant_only(tenant, other_tenant, tmp_path):
    doc = new_secret_notification(tenant.client_id, old_days=2)
    out = ingest(doc, tmp_path=tmp_path)
    tenant.refresh_from_db()
    other_tenant.refresh_from_db()
    assert tenant.client_secret == NEW and tenant.previous_client_secret == OLD
    expected_old = doc["payload"]["applicationOAuthClientNewSecret"]["oldClientSecretExpiryTime"]
    assert tenant.previous_client_secret_expires_at.strftime("%Y-%m-%dT%H:%M:%S.000Z") == expected_old
    assert tenant.client_secret_expires_at > timezone.now() + timedelta(days=179)
    assert other_tenant.client_secret == "secret-globex-0123456789" and other_tenant.previous_client_secret == ""
    assert "APPLICATION_OAUTH_CLIENT_NEW_SECRET: new client secret installed for acme" in out
    event = Event.objects.get(kind=Event.Kind.SECRET_ROTATED)
    assert event.tenant == tenant and event.actor == "amazon"
    no_secret_in(out, event.detail, json.dumps(event.data))

    # Amazon delivers at least once: the same notification again changes nothing.
    again = ingest(doc, via_stdin=True)
    assert "already current; nothing changed" in again
    assert Tenant.objects.get(pk=tenant.pk).previous_client_secret == OLD
    assert Event.objects.filter(kind=Event.Kind.SECRET_ROTATED).count() == 1


def test_notification_inside_an_sqs_message_is_read_too(tenant):
    out = ingest({"Records": [{"messageId": "m1", "body": json.dumps(new_secret_notification(tenant.client_id))}]}, via_stdin=True)
    assert "new client secret installed for acme" in out
    assert Tenant.objects.get(pk=tenant.pk).client_secret == NEW


def test_expiry_notification_records_the_date_and_warns_owners(tenant, owner, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        out = ingest(expiry_notification(tenant.client_id, days=30), via_stdin=True)
    tenant.refresh_from_db()
    assert timedelta(days=29) < tenant.client_secret_expires_at - timezone.now() < timedelta(days=30, seconds=1)
    assert tenant.client_secret == OLD  # nothing to install yet
    event = Event.objects.get(kind=Event.Kind.SECRET_EXPIRY_NOTICE)
    assert event.data["reason"] == "PERIODIC_ROTATION"
    assert "owners warned" in out
    (message,) = mail.outbox
    assert message.to == ["olive@agency.example"]
    assert "expires on" in message.subject and "set_client_secret --tenant acme" in message.body
    no_secret_in(message.body)


@pytest.mark.parametrize(
    "document, message",
    [
        ("{not json", "not valid JSON"),
        ({"hello": "world"}, "not an SP-API notification"),
        ({"notificationType": "ANY_OFFER_CHANGED", "payload": {}}, "Unsupported notification type 'ANY_OFFER_CHANGED'"),
        ({"notificationType": "APPLICATION_OAUTH_CLIENT_NEW_SECRET", "payload": {}}, "applicationOAuthClientNewSecret is missing"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (json.dumps({"Records": [{"Records": [{"Records": [{"Records": [{"Records": [{"Records": []}]}]}]}]}]}), "too many envelopes"),
        ("x" * 300_000, "more than 256 KiB"),
        (
            {"notificationType": "APPLICATION_OAUTH_CLIENT_SECRET_EXPIRY", "payload": {"applicationOAuthClientSecretExpiry": {
                "clientId": "amzn1.application-oa2-client.acme", "clientSecretExpiryTime": "2026-02-30T00:00:00Z"}}},
            "clientSecretExpiryTime is not an ISO 8601 time",
        ),
    ],
)
def test_bad_notifications_are_clear_errors(tenant, document, message):
    with pytest.raises(CommandError, match=message):
        ingest(document, via_stdin=True)
    assert Tenant.objects.get(pk=tenant.pk).client_secret == OLD


def test_unknown_client_id_is_an_error_that_does_not_echo_the_secret(tenant, tmp_path):
    with pytest.raises(CommandError, match="No tenant has the LWA client id amzn1.application-oa2-client.unknown") as info:
        ingest(new_secret_notification("amzn1.application-oa2-client.unknown"), tmp_path=tmp_path)
    no_secret_in(str(info.value))
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("ingest_notification", str(tmp_path / "missing.json"))


# --- Refreshes through a rotation ----------------------------------------------------------------


def connected(client, tenant, spid: str) -> Grant:
    invitation = invitation_create(tenant=tenant, name=f"Shop {spid}")
    run_flow(client, invitation.url, spid=spid)
    return Grant.objects.get(seller=invitation.seller)


def test_rotation_by_notification_keeps_refreshes_working_and_revokes_nobody(client, tenant, amazon_calls):
    grants = [connected(client, tenant, "A1ROT1"), connected(client, tenant, "A1ROT2")]
    ingest(new_secret_notification(tenant.client_id), via_stdin=True)

    for grant in grants:
        result = grant_refresh(grant=grant, force=True)
        assert result.outcome == RefreshOutcome.REFRESHED
    assert [c.data["client_secret"] for c in amazon_calls.token_calls[-2:]] == [NEW, NEW]

    # Amazon retires the old secret: it is refused now, and nothing depends on it any more.
    Tenant.objects.filter(pk=tenant.pk).update(previous_client_secret_expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(amazon.LwaInvalidClient):
        amazon.lwa_refresh(client_id=tenant.client_id, client_secret=OLD, refresh_token=Grant.objects.get(pk=grants[0].pk).refresh_token)
    access_token_cache_clear()
    for grant in grants:
        assert grant_refresh(grant=grant, force=True).outcome == RefreshOutcome.REFRESHED

    assert set(Seller.objects.filter(tenant=tenant).values_list("status", flat=True)) == {Seller.Status.ACTIVE}
    assert not Event.objects.filter(kind__in=[Event.Kind.REVOKED, Event.Kind.CREDENTIALS_INVALID]).exists()
    assert Tenant.objects.get(pk=tenant.pk).credentials_failing_since is None


def test_while_amazon_does_not_accept_the_new_secret_yet_the_previous_one_is_used(client, tenant, amazon_calls):
    grant = connected(client, tenant, "A1EARLY")
    ingest(new_secret_notification(tenant.client_id), via_stdin=True)
    amazon_calls.lwa_error("invalid_client", status=401, description="Client authentication failed", grant_type="refresh_token")
    result = grant_refresh(grant=grant, force=True)
    assert result.outcome == RefreshOutcome.REFRESHED
    assert [c.data["client_secret"] for c in amazon_calls.token_calls[-2:]] == [NEW, OLD]
    assert Seller.objects.get(pk=grant.seller_id).status == Seller.Status.ACTIVE
    assert Tenant.objects.get(pk=tenant.pk).credentials_failing_since is None


def test_tenant_lwa_call_stops_trying_an_expired_previous_secret(tenant):
    set_secret("--tenant", "acme", "--previous-valid-days", "0", stdin=NEW)
    tried = []

    def call(secret):
        tried.append(secret)
        raise amazon.LwaInvalidClient("invalid_client", "", 401)

    with pytest.raises(amazon.LwaInvalidClient):
        tenant_lwa_call(tenant=Tenant.objects.get(pk=tenant.pk), call=call)
    assert tried == [NEW]
